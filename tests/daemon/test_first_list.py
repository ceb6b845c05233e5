"""Nothing is judged on a cluster before each of its kinds has been listed.

Found by bench/watch_scale.py: at a first start the three kinds of the primary are listed side
by side, and a third to a half of 10,000 volumes (3,540 to 6,200 in four starts) had their PVC
and PV taken in before their VolumeReplication's page. Each was judged unprotected (a pending
episode written, then ended as inactive) in the history of a healthy pair, and would have
fired wherever the rule's `for` is shorter than the slowest list.

The real pipeline in one process: fake API servers -> the kubernetes client -> watchers ->
ingest -> SQLite, the VolumeReplication list answering seconds after the others.
"""

from __future__ import annotations

from typing import Any

from helpers import history, wait_until
from sqlalchemy import select

from auditd.daemon.runner import Daemon
from auditd.sim import objects
from auditd.sources.kube.health import AUDIT_STREAM
from auditd.sources.kube.kinds import PV, PVC, VR
from auditd.store.models import TransitionRow, ViolationRow

PROTECTED = 12


def test_a_volume_is_not_judged_unprotected_while_its_vr_list_is_still_coming(
    make_config: Any, clusters: dict[str, Any], tmp_path: Any
) -> None:
    dr1 = clusters["dr1"]
    for i in range(PROTECTED):
        dr1.create(PVC, objects.pvc(f"data-{i}", "app", volume=f"pvc-{i}"))
        dr1.create(PV, objects.pv(f"pvc-{i}", "app", f"data-{i}", f"csi-vol-{i}"))
        dr1.create(VR, objects.vr(f"data-{i}", "app", f"data-{i}"))
    # One volume truly without a VolumeReplication: it must still be found, once listed.
    dr1.create(PVC, objects.pvc("lone", "app", volume="pvc-lone"))
    dr1.create(PV, objects.pv("pvc-lone", "app", "lone", "csi-vol-lone"))
    dr1.stall_next_list(3.0, plural=VR.plural)
    url = f"sqlite:///{tmp_path / 'first.db'}"
    # `for` 0: a volume judged unprotected for a moment would fire, not merely pend.
    config = make_config(database_url=url, rules={"unprotected-volume": {"for": "0s"}})
    daemon = Daemon(config)
    daemon.start()
    try:
        assert daemon.wait_synced(30)

        def episodes() -> list[tuple[str, str]]:
            with history(url) as s:
                rows = s.execute(
                    select(ViolationRow.subject, ViolationRow.state).where(
                        ViolationRow.rule == "unprotected-volume"
                    )
                ).all()
            return sorted((str(subject), str(state)) for subject, state in rows)

        wait_until(lambda: episodes() != [], timeout=20)
        found = episodes()
        assert len(found) == 1 and found[0][0].endswith("/csi-vol-lone"), found
        assert found[0][1] == "firing"
        with history(url) as s:
            stream = s.execute(
                select(TransitionRow.old, TransitionRow.new)
                .where(
                    TransitionRow.kind == AUDIT_STREAM,
                    TransitionRow.cluster == "dr1",
                    TransitionRow.name == VR.kind,
                )
                .order_by(TransitionRow.id)
            ).all()
        # Its first state, listing, is the baseline; the list's end is history.
        assert [tuple(r) for r in stream] == [("listing", "ok")]
    finally:
        daemon.stop()
