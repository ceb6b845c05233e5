"""The rules on pair views, with storage truth from the real Ceph captures."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from captured_pair import DATA, SITE, T, failed, fired, judge_all, k8s, probe, volume
from hypothesis import given, settings
from hypothesis import strategies as st

from auditd.config import Config, parse_config
from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.rules.engine import RuleEngine
from auditd.rules.model import UNKNOWN, Finding
from auditd.sim import objects
from auditd.sources.rbd.parse import parse_pool_status
from auditd.sources.rbd.probe import ProbeResult


def config(**rules: Any) -> Config:
    return parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [{"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"]}],
            "rules": rules,
        }
    )


def evaluate(
    items: list[Any], cfg: Config | None = None, now: datetime | None = None
) -> dict[tuple[str, str], Any]:
    return judge_all(items, cfg or config(), now)


# ------------------------------------------------------------------ scenarios


def test_healthy_pair_has_no_violation() -> None:
    v = evaluate([*volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy")])
    assert fired(v) == {}
    assert v[("split-brain", "p/replicapool/csi-vol-0001")] is None


def test_pvc_on_the_storage_truth_secondary_fires_with_evidence() -> None:
    v = evaluate(
        [*volume("dr1"), *volume("dr2")[:2], probe("dr1", "healthy"), probe("dr2", "healthy")]
    )
    f = fired(v)
    assert f["pvc-on-secondary"] == ["dr2/PersistentVolumeClaim/app/data"]
    assert f["pv-on-secondary"] == ["dr2/PersistentVolume/pv-dr2-csi-vol-0001"]
    assert f["k8s-objects-on-both"] == ["p/replicapool/csi-vol-0001"]
    finding = v[("pvc-on-secondary", "dr2/PersistentVolumeClaim/app/data")]
    assert finding.summary.endswith("where its image is non-primary")
    assert finding.evidence["dr2.image"] == "up+replaying primary=false"


def test_roles_follow_storage_truth_after_failover_not_the_config() -> None:
    # After the failover, dr2 (configured secondary) is primary: its PVC is right, dr1's is not.
    v = evaluate(
        [
            *volume("dr2"),
            *volume("dr1")[:2],
            probe("dr1", "failover-2-promoted-site-b"),
            probe("dr2", "failover-2-promoted-site-b"),
        ]
    )
    assert fired(v).get("pvc-on-secondary") == ["dr1/PersistentVolumeClaim/app/data"]


def test_relocate_window_both_demoted_is_not_a_violation() -> None:
    v = evaluate(
        [
            *volume("dr1"),
            probe("dr1", "failover-1-demoted-site-a"),
            probe("dr2", "failover-1-demoted-site-a"),
        ]
    )
    # The pool summary is WARNING while both images are up+unknown: explained by the window
    # (a relocate of many volumes can keep it so for longer than the rule's 2 minutes).
    assert fired(v) == {}


def test_daemon_down_fires_replaying_and_pool_rules() -> None:
    v = evaluate(
        [
            *volume("dr1"),
            probe("dr1", "mirror-daemon-down-t65s"),
            probe("dr2", "mirror-daemon-down-t65s"),
        ]
    )
    f = fired(v)
    assert "p/replicapool/csi-vol-0001" in f["secondary-not-replaying"]
    assert set(f["pool-mirroring-unhealthy"]) == {
        "dr1/RbdPool/replicapool",
        "dr2/RbdPool/replicapool",
    }


def test_split_brain_is_critical_and_resync_resolves_it() -> None:
    v = evaluate(
        [
            *volume("dr1"),
            probe("dr1", "split-brain-1-force-promoted-site-b"),
            probe("dr2", "split-brain-1-force-promoted-site-b"),
        ]
    )
    sb = v[("split-brain", "p/replicapool/csi-vol-0001")]
    assert (
        isinstance(sb, Finding)
        and sb.severity == "critical"
        and "both images are primary" in sb.summary
    )
    v = evaluate(
        [
            *volume("dr1"),
            probe("dr1", "split-brain-2-demoted-site-a"),
            probe("dr2", "split-brain-1-force-promoted-site-b"),
        ]
    )
    assert "dr1 reports split-brain" in v[("split-brain", "p/replicapool/csi-vol-0001")].summary
    v = evaluate(
        [
            *volume("dr1"),
            probe("dr1", "split-brain-3-resynced"),
            probe("dr2", "split-brain-1-force-promoted-site-b"),
        ]
    )
    assert v[("split-brain", "p/replicapool/csi-vol-0001")] is None


def test_image_missing_on_peer() -> None:
    v = evaluate(
        [probe("dr1", "multi-image"), probe("dr2", "disable-delete-1-disabled-on-primary")]
    )
    missing = fired(v).get("image-missing-on-peer", [])
    assert missing and all(s.startswith("p/replicapool/") for s in missing)


def test_a_failing_probe_makes_dependent_verdicts_unknown() -> None:
    v = evaluate(
        [
            *volume("dr1"),
            *volume("dr2")[:2],
            probe("dr1", "healthy"),
            probe("dr2", "healthy"),
            failed("dr2"),
        ]
    )
    assert v[("secondary-not-replaying", "p/replicapool/csi-vol-0001")] is UNKNOWN
    assert v[("pvc-on-secondary", "dr2/PersistentVolumeClaim/app/data")] is UNKNOWN
    assert v[("pool-mirroring-unhealthy", "dr2/RbdPool/replicapool")] is UNKNOWN


def test_without_probes_the_configured_role_decides() -> None:
    v = evaluate([*volume("dr1"), k8s("dr2", "PersistentVolumeClaim", objects.pvc("stray", "app"))])
    assert fired(v) == {"pvc-on-secondary": ["dr2/PersistentVolumeClaim/app/stray"]}


def test_ramen_secondary_vr_during_cleanup_is_not_a_violation() -> None:
    vr = objects.vr("data", "app", "data", state="secondary")
    v = evaluate(
        [
            *volume("dr1"),
            *volume("dr2")[:2],
            k8s("dr2", "VolumeReplication", vr),
            probe("dr1", "healthy"),
            probe("dr2", "healthy"),
        ]
    )
    assert v[("vr-on-secondary", "dr2/VolumeReplication/app/data")] is None


def test_rule_config_disables_scopes_and_overrides() -> None:
    items = [
        *volume("dr1"),
        k8s("dr2", "PersistentVolumeClaim", objects.pvc("a", "team-a")),
        k8s("dr2", "PersistentVolumeClaim", objects.pvc("b", "team-b")),
    ]
    v = evaluate(
        items, config(**{"pvc-on-secondary": {"namespaces": ["team-a"], "severity": "critical"}})
    )
    assert fired(v) == {"pvc-on-secondary": ["dr2/PersistentVolumeClaim/team-a/a"]}
    assert v[("pvc-on-secondary", "dr2/PersistentVolumeClaim/team-a/a")].severity == "critical"
    v = evaluate(items, config(**{"pvc-on-secondary": {"enabled": False}}))
    assert fired(v) == {}


def test_one_change_reevaluates_one_volume() -> None:
    inv, engine = Inventory(), RuleEngine(config())
    for i in range(50):
        for ev in volume("dr1", image=f"img-{i}", ns=f"ns{i}"):
            inv.apply(ev)
    engine.evaluate(inv, set(inv.objects), T)
    delta = inv.apply(
        k8s("dr2", "PersistentVolume", objects.pv("pv-x", "ns7", "data", "img-7"), rv=9)
    )
    verdicts = engine.evaluate(inv, delta.touched, T)
    volume_subjects = {s for (_, s) in verdicts if s.startswith("p/")}
    assert volume_subjects == {"p/replicapool/img-7"}


# ---------------------------------------------------------------- properties

ITEMS = [
    *volume("dr1"),
    *volume("dr2")[:2],
    probe("dr1", "split-brain-1-force-promoted-site-b"),
    probe("dr2", "split-brain-1-force-promoted-site-b"),
    k8s("dr2", "PersistentVolumeClaim", objects.pvc("x", "other")),
]
BASELINE = {k: (v.summary if isinstance(v, Finding) else v) for k, v in evaluate(ITEMS).items()}


@settings(max_examples=40, deadline=None)
@given(st.permutations(ITEMS))
def test_order_of_evaluation_does_not_change_verdicts(items: list[Any]) -> None:
    got = {k: (v.summary if isinstance(v, Finding) else v) for k, v in evaluate(items).items()}
    assert got == BASELINE


def test_views_key_on_pool_and_image_confirmed_by_global_id() -> None:
    inv, engine = Inventory(), RuleEngine(config())
    for item in [*volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy")]:
        d = (
            inv.apply_probe(item, timedelta(days=3650))
            if isinstance(item, ProbeResult)
            else inv.apply(item)
        )
        engine.evaluate(inv, d.touched, T)
    [vid] = engine.correlator.volumes()
    view = engine.correlator.view(inv, vid)
    a, b = view.sides
    assert a.pvc == ObjectKey("dr1", "PersistentVolumeClaim", "app", "data") and a.vr is not None
    assert (
        a.image is not None and b.image is not None and a.image["global_id"] == b.image["global_id"]
    )
    assert view.primary_cluster == "dr1"


# ------------------------------------------------- lag, VR conditions, protection

SYNCED = datetime.fromtimestamp(1795686480, UTC)  # the healthy capture's local_snapshot_timestamp
VRC = {
    "metadata": {"name": "rbd-volumereplicationclass"},
    "spec": {
        "provisioner": "rook-ceph.rbd.csi.ceph.com",
        "parameters": {"schedulingInterval": "1m"},
    },
}


def test_rpo_exceeded_warns_at_2x_and_is_critical_at_3x_the_interval() -> None:
    items = [
        *volume("dr1"),
        k8s("dr1", "VolumeReplicationClass", VRC),
        probe("dr1", "healthy"),
        probe("dr2", "healthy"),
    ]
    key = ("rpo-exceeded", "p/replicapool/csi-vol-0001")
    assert evaluate(items, now=SYNCED + timedelta(seconds=90))[key] is None
    warn = evaluate(items, now=SYNCED + timedelta(seconds=150))[key]
    assert (
        isinstance(warn, Finding)
        and warn.severity == "warning"
        and warn.evidence["lag_seconds"] == 150
    )
    crit = evaluate(items, now=SYNCED + timedelta(seconds=200))[key]
    assert (
        isinstance(crit, Finding)
        and crit.severity == "critical"
        and "3 x schedulingInterval" in crit.summary
    )
    # A configured RPO fires even without a VRC interval.
    no_vrc = [*volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy")]
    assert evaluate(no_vrc, now=SYNCED + timedelta(hours=1))[key] is None
    rpo = evaluate(
        no_vrc, config(**{"rpo-exceeded": {"rpo": "15m"}}), now=SYNCED + timedelta(minutes=20)
    )[key]
    assert isinstance(rpo, Finding) and "configured RPO" in rpo.summary


def test_lag_disagreement_between_vr_and_ceph() -> None:
    vr = objects.vr("data", "app", "data")
    vr["status"] = {
        "state": "Primary",
        "lastSyncTime": (SYNCED - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
    }
    items = [
        *volume("dr1")[:2],
        k8s("dr1", "VolumeReplication", vr),
        k8s("dr1", "VolumeReplicationClass", VRC),
        probe("dr1", "healthy"),
        probe("dr2", "healthy"),
    ]
    v = evaluate(items, now=SYNCED + timedelta(seconds=30))
    assert isinstance(v[("lag-disagreement", "p/replicapool/csi-vol-0001")], Finding)
    vr["status"]["lastSyncTime"] = SYNCED.isoformat().replace("+00:00", "Z")
    items[2] = k8s("dr1", "VolumeReplication", vr)
    assert evaluate(items, now=SYNCED)[("lag-disagreement", "p/replicapool/csi-vol-0001")] is None


def test_vr_degraded_only_on_the_primary() -> None:
    degraded = objects.vr("data", "app", "data")
    degraded["status"] = {
        "conditions": [
            {"type": "Degraded", "status": "True", "reason": "VolumeDegraded"},
            {"type": "Completed", "status": "True", "reason": "Promoted"},
        ]
    }
    on_primary = [
        *volume("dr1")[:2],
        k8s("dr1", "VolumeReplication", degraded),
        probe("dr1", "healthy"),
        probe("dr2", "healthy"),
    ]
    assert isinstance(evaluate(on_primary)[("vr-degraded", "p/replicapool/csi-vol-0001")], Finding)
    # A secondary VR resyncing is Degraded=True by design: not flagged.
    on_secondary = [
        *volume("dr1"),
        *volume("dr2")[:2],
        k8s("dr2", "VolumeReplication", degraded),
        probe("dr1", "healthy"),
        probe("dr2", "healthy"),
    ]
    assert evaluate(on_secondary)[("vr-degraded", "p/replicapool/csi-vol-0001")] is None


def test_unprotected_volume() -> None:
    v = evaluate([*volume("dr1")[:2], probe("dr1", "healthy"), probe("dr2", "healthy")])
    f = v[("unprotected-volume", "p/replicapool/csi-vol-0001")]
    assert isinstance(f, Finding) and "has no VolumeReplication" in f.summary
    assert (
        evaluate([*volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy")])[
            ("unprotected-volume", "p/replicapool/csi-vol-0001")
        ]
        is None
    )


def test_ramen_vrg_and_drpc_join_the_view_and_a_failing_over_drpc_is_a_window() -> None:
    drpc = {
        "metadata": {"name": "app-drpc", "namespace": "app"},
        "spec": {"action": "Failover"},
        "status": {"phase": "FailingOver", "progression": "FailingOverToCluster"},
    }
    vrg = {
        "metadata": {"name": "app-vrg", "namespace": "app"},
        "spec": {"replicationState": "primary"},
    }
    items = [
        *volume("dr1"),
        k8s("dr1", "VolumeReplicationGroup", vrg),
        *volume("dr2")[:2],
        probe("dr1", "healthy"),
        probe("dr2", "healthy"),
        k8s("dr1", "DRPlacementControl", drpc),
    ]
    inv, engine = Inventory(), RuleEngine(config())
    for item in items:
        d = (
            inv.apply_probe(item, timedelta(days=3650))
            if isinstance(item, ProbeResult)
            else inv.apply(item)
        )
        verdicts = engine.evaluate(inv, d.touched, T)
    [vid] = engine.correlator.volumes()
    view = engine.correlator.view(inv, vid)
    assert view.drpc_phases == ("FailingOver",)
    assert view.side("dr1").vrg == ObjectKey("dr1", "VolumeReplicationGroup", "app", "app-vrg")
    # The DRPC says a failover is in progress: dr2's new PVC is expected, not a violation.
    assert verdicts[("pvc-on-secondary", "dr2/PersistentVolumeClaim/app/data")] is None
    assert engine.windows.open[vid].trigger == "drpc FailingOver"


def test_primary_not_stopped() -> None:
    import json as _json

    raw = _json.loads((DATA / "healthy" / "site-a-mirror-pool-status-verbose.json").read_text())
    raw["images"][0]["state"] = "up+stopping_replay"  # seen after forced failovers (ceph-csi #3268)
    status = parse_pool_status(_json.dumps(raw))
    at = probe("dr1", "healthy").at
    odd = ProbeResult("dr1", "replicapool", "status", at, 0.1, status=status)
    v = evaluate([*volume("dr1"), odd, probe("dr2", "healthy")])
    f = v[("primary-not-stopped", "p/replicapool/csi-vol-0001")]
    assert isinstance(f, Finding) and "up+stopping_replay, not up+stopped" in f.summary


def test_same_name_different_global_id_is_not_the_same_image() -> None:
    import json as _json

    raw = _json.loads((DATA / "healthy" / "site-b-mirror-pool-status-verbose.json").read_text())
    raw["images"][0]["global_id"] = "00000000-0000-0000-0000-000000000000"
    other = ProbeResult(
        "dr2",
        "replicapool",
        "status",
        probe("dr2", "healthy").at,
        0.1,
        status=parse_pool_status(_json.dumps(raw)),
    )
    v = evaluate([*volume("dr1"), *volume("dr2")[:1], probe("dr1", "healthy"), other])
    vid = "p/replicapool/csi-vol-0001"
    for rule in (
        "split-brain",
        "secondary-not-replaying",
        "image-missing-on-peer",
        "primary-not-stopped",
    ):
        assert v[(rule, vid)] is UNKNOWN, rule


def test_pvc_of_a_mirrored_class_never_enabled_for_mirroring_is_unprotected() -> None:
    cfg = parse_config(
        {
            "clusters": [{"name": "dr1", "role": "primary"}, {"name": "dr2", "role": "secondary"}],
            "pairs": [
                {
                    "name": "p",
                    "clusters": ["dr1", "dr2"],
                    "pools": ["replicapool"],
                    "mirrored_storage_classes": ["rook-ceph-block"],
                }
            ],
        }
    )
    # csi-vol-0005 exists on site-a but was never mirrored: no probe lists it.
    v = evaluate(
        [
            *volume("dr1", image="csi-vol-0005")[:2],
            probe("dr1", "multi-image"),
            probe("dr2", "multi-image"),
        ],
        cfg,
    )
    f = v[("unprotected-volume", "p/replicapool/csi-vol-0005")]
    assert (
        isinstance(f, Finding)
        and "has no VolumeReplication and its image is not mirrored" in f.summary
    )
    assert (
        evaluate(
            [
                *volume("dr1", image="csi-vol-0005")[:2],
                probe("dr1", "multi-image"),
                probe("dr2", "multi-image"),
            ]
        )[("unprotected-volume", "p/replicapool/csi-vol-0005")]
        is None
    )  # class not declared mirrored


def _judged_once(cfg: Config, items: list[Any], now: datetime) -> tuple[Inventory, RuleEngine]:
    """The items taken in, and everything held judged once, as after a start."""
    inv, engine = Inventory(), RuleEngine(cfg)
    for item in items:
        if isinstance(item, ProbeResult):
            inv.apply_probe(item, timedelta(days=3650))
            engine.record_probe(item)
        else:
            inv.apply(item)
    engine.evaluate(inv, set(inv.objects), now)
    return inv, engine


def test_a_lag_refresh_alone_is_judged_by_the_lag_rules_only() -> None:
    from auditd.rules.catalogue import LAG_RULES

    # Its application's DRPC too: Ramen's word on the last sync is weighed against the lag.
    app = {"metadata": {"name": "app", "namespace": "app"}, "status": {"phase": "Deployed"}}
    drpc = k8s("dr1", "DRPlacementControl", app)
    inv, engine = _judged_once(
        config(**{"rpo-exceeded": {"rpo": "1m"}}),
        [*volume("dr1"), drpc, probe("dr1", "healthy"), probe("dr2", "healthy")],
        T,
    )
    [vid] = engine.correlator.volumes()
    later = probe("dr2", "healthy").at + timedelta(hours=2)  # nothing synced for two hours
    verdicts = engine.evaluate(inv, (), later, lag_only={vid})
    assert {rule for rule, _ in verdicts} == LAG_RULES
    assert isinstance(verdicts[("rpo-exceeded", str(vid))], Finding)


def test_a_probe_out_of_turn_judges_lag_at_most_twice_an_interval() -> None:
    """A probe asked for out of turn (a PVC just created) within half an interval of the pool's
    last judged lag refreshes no lag: at 10,000 images each lag cycle holds the writer for a
    second. The regular probe after it judges every volume's lag again, and a batch taken in
    again after a failed commit is judged again."""
    inv, engine = Inventory(), RuleEngine(config())
    for item in [*volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy")]:
        if isinstance(item, ProbeResult):
            inv.apply_probe(item, timedelta(days=3650))
        else:
            inv.apply(item)
    engine.evaluate(inv, set(inv.objects), T)
    [vid] = engine.correlator.volumes()
    regular = probe("dr2", "healthy")
    assert engine.config.probe.interval == timedelta(seconds=60)

    def at(seconds: float) -> ProbeResult:
        return replace(regular, at=regular.at + timedelta(seconds=seconds))

    assert engine.record_probe(at(0)) == {vid}
    assert engine.record_probe(at(0)) == {vid}  # the same batch again, after a failed commit
    assert engine.record_probe(at(10)) == set()  # out of turn: nothing to judge
    assert engine.record_probe(at(29)) == set()
    assert engine.record_probe(at(30)) == {vid}  # half an interval on: judged
    assert engine.record_probe(at(90)) == {vid}  # the next regular probe
    # Another site's probes have their own turn.
    other = probe("dr1", "healthy")
    assert engine.record_probe(replace(other, at=regular.at + timedelta(seconds=95))) == {vid}
    # Regular probes jittered by up to 40 s of a 60 s interval may come 20 s apart: all judged.
    cfg = config()
    jittery = RuleEngine(
        cfg.model_copy(
            update={"probe": cfg.probe.model_copy(update={"jitter": timedelta(seconds=40)})}
        )
    )
    jittery.index(inv)
    assert [
        jittery.record_probe(replace(regular, at=regular.at + timedelta(seconds=s)))
        for s in (0, 20, 39, 41)
    ] == [{vid}, {vid}, set(), {vid}]


def test_after_a_switch_lag_counts_from_when_the_new_primary_can_first_snapshot() -> None:
    """dr2 was primary and is demoted (failback to dr1). Nothing newer than the demotion can
    reach it before dr1's schedule takes its first snapshot, one schedulingInterval later: lag
    counts from then. A real stall after the switch still fires, one interval later."""
    vrc = k8s("dr1", "VolumeReplicationClass", objects.vrc(interval="1m"))
    before = [
        *volume("dr1"),
        vrc,
        probe("dr1", "failover-2-promoted-site-b"),
        probe("dr2", "failover-2-promoted-site-b"),
    ]
    after = [probe("dr1", "healthy"), probe("dr2", "healthy")]
    demoted = after[1].at - timedelta(seconds=5)  # dr2's first record as secondary
    key = ("rpo-exceeded", "p/replicapool/csi-vol-0001")
    v = evaluate(before + after, now=demoted + timedelta(seconds=130))
    assert v[key] is None  # 130 s after the demotion, 70 s after the first snapshot was due
    v = evaluate(before + after, now=demoted + timedelta(seconds=200))
    assert isinstance(v[key], Finding) and v[key].severity == "warning"


# ------------------------------------------------------ last-known is not current


def _primary_vr(**status: Any) -> dict[str, Any]:
    vr = objects.vr("data", "app", "data")
    vr["status"] = status
    return vr


def _unlisted(cluster: str) -> ProbeResult:
    """A healthy probe of a pool whose mirror status lists no image at all."""
    from dataclasses import replace

    r = probe(cluster, "healthy")
    assert r.status is not None
    return replace(r, status=replace(r.status, images=[]))


NOW = SYNCED + timedelta(seconds=30)
HEALTHY = [probe("dr1", "healthy"), probe("dr2", "healthy")]
# Each rule that reads a cluster's Kubernetes objects, in a world where it holds, and the
# cluster whose objects it holds on: lose that cluster's watch and the verdict is UNKNOWN.
LAST_KNOWN_CASES: dict[str, tuple[list[Any], str]] = {
    "pvc-on-secondary": ([*volume("dr1"), *volume("dr2")[:1], *HEALTHY], "dr2"),
    "pv-on-secondary": ([*volume("dr1"), *volume("dr2")[1:2], *HEALTHY], "dr2"),
    "vr-on-secondary": ([*volume("dr1"), *volume("dr2"), *HEALTHY], "dr2"),
    "k8s-objects-on-both": ([*volume("dr1"), *volume("dr2"), *HEALTHY], "dr1"),
    "unprotected-volume": ([*volume("dr1")[:2], *HEALTHY], "dr1"),
    "vr-degraded": (
        [
            *volume("dr1")[:2],
            k8s(
                "dr1",
                "VolumeReplication",
                _primary_vr(conditions=[{"type": "Degraded", "status": "True"}]),
            ),
            *HEALTHY,
        ],
        "dr1",
    ),
    "lag-disagreement": (
        [
            *volume("dr1")[:2],
            k8s(
                "dr1",
                "VolumeReplication",
                _primary_vr(
                    state="Primary",
                    lastSyncTime=(SYNCED - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
                ),
            ),
            k8s("dr1", "VolumeReplicationClass", VRC),
            *HEALTHY,
        ],
        "dr1",
    ),
    "image-not-mirrored": (
        [
            *volume("dr1"),
            k8s(
                "dr1",
                "PersistentVolumeClaim",
                objects.pvc("data", "app", volume="pv-dr1-csi-vol-0001", phase="Bound"),
                rv=2,
            ),
            _unlisted("dr1"),
            _unlisted("dr2"),
        ],
        "dr1",
    ),
}


def _lose(items: list[Any], cluster: str, state: str) -> list[Any]:
    from auditd.daemon.items import HealthReport
    from auditd.sources.kube.health import StreamHealth

    since = {"reconnecting": NOW - timedelta(seconds=30), "blind": NOW - timedelta(hours=1)}[state]
    streams = []
    for c in ("dr1", "dr2"):
        h = StreamHealth(c, "PersistentVolumeClaim", connected=c != cluster, synced=True)
        h.disconnected_since = since if c == cluster else None
        streams.append(h.snapshot())
    return [*items, HealthReport(NOW, streams)]


def _evaluate_with_health(items: list[Any], cfg: Config | None = None) -> dict[Any, Any]:
    from auditd.daemon.items import HealthReport

    inv, engine = Inventory(), RuleEngine(cfg or config())
    for item in items:
        if isinstance(item, ProbeResult):
            delta = inv.apply_probe(item, timedelta(days=3650))
            engine.record_probe(item)
        elif isinstance(item, HealthReport):
            delta = inv.apply_health(item.streams, item.at, timedelta(minutes=5),
                                     timedelta(seconds=10))  # fmt: skip
        else:
            delta = inv.apply(item)
        engine.evaluate(inv, delta.touched, NOW)
    return engine.evaluate(inv, set(inv.objects), NOW)


@pytest.mark.parametrize("state", ["reconnecting", "blind"])
@pytest.mark.parametrize("rule", sorted(LAST_KNOWN_CASES))
def test_a_cluster_not_watched_now_makes_its_objects_unknown_never_present(
    rule: str, state: str
) -> None:
    items, cluster = LAST_KNOWN_CASES[rule]
    holds = {s: v for (r, s), v in _evaluate_with_health(items).items() if r == rule}
    assert any(isinstance(v, Finding) for v in holds.values()), holds
    lost = _evaluate_with_health(_lose(items, cluster, state))
    after = {s: v for (r, s), v in lost.items() if r == rule}
    for subject, verdict in holds.items():
        if isinstance(verdict, Finding):
            assert after[subject] is UNKNOWN, (subject, after[subject])


def test_split_brain_from_both_vrs_needs_both_clusters_seen_now() -> None:
    """Unprobed: the VRs are the only evidence. A lost cluster's last-known Primary VR, against
    the survivor's new one, is not a split brain (the day a site is lost, that is a failover)."""
    both = [
        *volume("dr1")[:2],
        k8s("dr1", "VolumeReplication", _primary_vr(state="Primary")),
        *volume("dr2")[:2],
        k8s("dr2", "VolumeReplication", _primary_vr(state="Primary")),
    ]
    subject = ("split-brain", "p/replicapool/csi-vol-0001")
    assert isinstance(_evaluate_with_health(both)[subject], Finding)
    for state in ("reconnecting", "blind"):
        assert _evaluate_with_health(_lose(both, "dr1", state))[subject] is UNKNOWN


@pytest.mark.parametrize("release", ["reef-18.2.7", "tentacle-20.2.4"])
def test_verdicts_are_the_same_on_newer_releases(release: str) -> None:
    def newer(cluster: str) -> ProbeResult:
        path = DATA / "versions" / release / f"{SITE[cluster]}-mirror-pool-status-verbose.json"
        r = probe(cluster, "healthy")
        return ProbeResult(cluster, "replicapool", "status", r.at, 0.1,
                           status=parse_pool_status(path.read_text()))  # fmt: skip

    assert fired(evaluate([*volume("dr1"), newer("dr1"), newer("dr2")])) == {}
    stray = fired(evaluate([*volume("dr1"), *volume("dr2")[:1], newer("dr1"), newer("dr2")]))
    assert stray["pvc-on-secondary"] == ["dr2/PersistentVolumeClaim/app/data"]


def _in_error(cluster: str) -> ProbeResult:
    """The healthy capture with its image in error and the summary WARNING: no switch."""
    import json

    path = DATA / "healthy" / f"{SITE[cluster]}-mirror-pool-status-verbose.json"
    doc = json.loads(path.read_text())
    doc["summary"].update(health="WARNING", image_health="WARNING")
    doc["images"][0].update(state="up+error", description="failed to open local image")
    r = probe(cluster, "healthy")
    return ProbeResult(cluster, "replicapool", "status", r.at + timedelta(seconds=1), 0.1,
                       status=parse_pool_status(json.dumps(doc)))  # fmt: skip


def test_a_pool_warning_explained_by_volumes_mid_switch_is_not_a_fault() -> None:
    """The pool summary says WARNING while its images are mid-switch (up+unknown): with every
    unhealthy image in a DR window that is a relocate of many volumes, not a fault; the same
    summary with no switch under way is one."""
    subject = ("pool-mirroring-unhealthy", "dr1/RbdPool/replicapool")
    demoted = [probe("dr1", "failover-1-demoted-site-a"), probe("dr2", "failover-1-demoted-site-a")]
    in_window = evaluate([*volume("dr1"), *HEALTHY, *demoted])
    assert in_window[subject] is None
    assert isinstance(evaluate([*volume("dr1"), *HEALTHY, _in_error("dr1")])[subject], Finding)
    # A peer's rbd-mirror down shows as WARNING on the primary with every local image healthy:
    # never explained away.
    down = [probe("dr1", "mirror-daemon-down-t65s"), probe("dr2", "mirror-daemon-down-t65s")]
    assert isinstance(evaluate([*volume("dr1"), *HEALTHY, *down])[subject], Finding)


def _health(cluster_states: dict[str, str], at: datetime) -> Any:
    """A health sample: each cluster's PVC stream ok, reconnecting or blind at ``at``."""
    from auditd.daemon.items import HealthReport
    from auditd.sources.kube.health import StreamHealth

    since = {
        "ok": None,
        "reconnecting": at - timedelta(seconds=30),
        "blind": at - timedelta(hours=1),
    }
    streams = []
    for cluster, state in cluster_states.items():
        h = StreamHealth(cluster, "PersistentVolumeClaim", connected=state == "ok", synced=True)
        h.disconnected_since = since[state]
        streams.append(h.snapshot())
    return HealthReport(at, streams)


@pytest.mark.parametrize(("probed", "claim"), [(True, "data"), (False, "data"), (False, "lonely")])
def test_an_unlinked_pvc_judged_unknown_while_blind_is_judged_when_the_cluster_is_back(
    probed: bool, claim: str
) -> None:
    """Issue 20's first miss: a PVC created on the secondary while its cluster is blind (no PV
    yet, joined by claim) was UNKNOWN then, and nothing judged it again when the stream
    recovered: only linked objects were re-evaluated. One of the volume's claim is judged
    against the volume; one of a claim no volume holds ("lonely", unprobed: secondary by
    configuration) is reached by no volume at all, only as an object no view holds."""
    stray = k8s("dr2", "PersistentVolumeClaim", objects.pvc(claim, "app", phase="Pending"))
    items = [*volume("dr1"), *(HEALTHY if probed else [])]
    items += [_health({"dr1": "ok", "dr2": "blind"}, NOW), stray]
    subject = ("pvc-on-secondary", f"dr2/PersistentVolumeClaim/app/{claim}")
    inv, engine = Inventory(), RuleEngine(config())
    verdicts: dict[Any, Any] = {}
    for item in [*items, _health({"dr1": "ok", "dr2": "ok"}, NOW + timedelta(seconds=5))]:
        if isinstance(item, ProbeResult):
            delta = inv.apply_probe(item, timedelta(days=3650))
            engine.record_probe(item)
        elif hasattr(item, "streams"):
            delta = inv.apply_health(item.streams, item.at, timedelta(minutes=5),
                                     timedelta(seconds=10))  # fmt: skip
        else:
            delta = inv.apply(item)
        verdicts = engine.evaluate(inv, delta.touched, NOW)
        if item is stray:
            assert verdicts[subject] is UNKNOWN, verdicts.get(subject)
    assert isinstance(verdicts.get(subject), Finding), verdicts.get(subject)


def test_a_pair_is_judged_again_when_what_its_views_read_of_streams_and_pools_changes_only() -> (
    None
):
    """A pool's state counts move with every image created or switched, and a stream's first
    report says what was assumed: judging every volume of the pair again for either cost 0.7 s
    at 10,000 volumes, in the middle of a watch burst (bench/watch_scale.py). A stream going
    blind and back, or a hub's stream (a fence may be unseen), is judged on every volume."""
    cfg = parse_config(
        {
            "clusters": [
                {"name": "dr1", "role": "primary"},
                {"name": "dr2", "role": "secondary"},
                {"name": "hub", "role": "hub"},
            ],
            "pairs": [
                {"name": "p", "clusters": ["dr1", "dr2"], "pools": ["replicapool"], "hub": "hub"}
            ],
        }
    )
    inv, engine = _judged_once(cfg, [*volume("dr1"), *HEALTHY], NOW)
    volume_subject = ("split-brain", "p/replicapool/csi-vol-0001")

    def judged(item: Any) -> bool:
        if isinstance(item, ProbeResult):
            delta = inv.apply_probe(item, timedelta(days=3650))
        else:
            delta = inv.apply_health(item.streams, item.at, timedelta(minutes=5),
                                     timedelta(seconds=10))  # fmt: skip
        return volume_subject in engine.evaluate(inv, delta.touched, NOW)

    assert not judged(_health({"dr1": "ok", "dr2": "ok", "hub": "ok"}, NOW))  # first reports
    # The pool's summary alone (what rbd-mirror's health says of other images) changed.
    counts = replace(HEALTHY[0], status=replace(HEALTHY[0].status, health="WARNING"))
    assert not judged(counts)
    assert inv.objects[ObjectKey("dr1", "RbdPool", "", "replicapool")].facts["health"] == "WARNING"
    assert judged(_health({"dr2": "blind"}, NOW))
    assert not judged(_health({"dr2": "blind"}, NOW + timedelta(seconds=5)))  # still blind
    assert judged(_health({"dr2": "ok"}, NOW + timedelta(seconds=10)))
    assert judged(_health({"hub": "blind"}, NOW + timedelta(seconds=15)))
    assert judged(_health({"hub": "ok"}, NOW + timedelta(seconds=20)))
    assert judged(failed("dr1"))  # storage no longer known there
    # A new engine has judged nothing under any surroundings: the first evaluation judges all.
    engine = RuleEngine(cfg)
    engine.index(inv)
    assert judged(_health({"dr1": "ok"}, NOW + timedelta(seconds=25)))


def test_an_unlinked_pvc_due_at_its_for_deadline_is_judged_on_its_peers_view() -> None:
    """A PVC on the secondary that no view of its own cluster holds (its volumeName's PV
    claims another PVC) is judged against the volume of the same claim on the peer. When its
    `for` passes, the timer judges its key alone (`RuleEngine.judged`): that peer view must be
    built for it, not only its volumeName's, or the verdict is UNKNOWN and the violation never
    fires (a miss the random world found, seed 1)."""
    stray = k8s("dr2", "PersistentVolumeClaim", objects.pvc("data", "app", volume="pv-other"))
    other = k8s("dr2", "PersistentVolume", objects.pv("pv-other", "app", "other", "csi-vol-0002"))
    inv, engine = _judged_once(
        config(**{"pvc-on-secondary": {"for": "1m"}}),
        [*volume("dr1"), *HEALTHY, other, stray],
        NOW,
    )
    subject = "dr2/PersistentVolumeClaim/app/data"
    keys, volumes = engine.judged([subject])
    assert keys == {ObjectKey("dr2", "PersistentVolumeClaim", "app", "data")} and not volumes
    verdicts = engine.evaluate(inv, keys, NOW + timedelta(minutes=1))
    assert isinstance(verdicts.get(("pvc-on-secondary", subject)), Finding), verdicts
