"""Months of relists leave no garbage behind: after each relist the writer freezes what it
holds (the inventory, long-lived and acyclic, so that the cyclic GC stops rescanning it), and
what is frozen is never collected again, so a freeze thaws and collects everything first, at
most once per THAW_EVERY (a start's lists end seconds apart), else what was made since the
last freeze."""

from __future__ import annotations

import gc
import weakref
from datetime import datetime, timedelta
from pathlib import Path

from captured_pair import volume
from pipeline import T0, Pipeline

from auditd.daemon.collector import THAW_EVERY
from auditd.daemon.items import Tick
from auditd.sources.kube.events import SnapshotEnd, SnapshotPage, SnapshotStart


class _Node:
    me: _Node | None = None


def test_a_relist_freezes_what_lives_not_the_garbage_cycles_of_the_moment(
    tmp_path: Path,
) -> None:
    p = Pipeline(tmp_path)
    pvc = volume("dr1")[0]
    listed = [
        SnapshotStart("dr1", pvc.kind, "relist", T0),
        SnapshotPage("dr1", pvc.kind, [pvc.object], "relist", T0),
        SnapshotEnd("dr1", pvc.kind, "9", "relist", T0),
    ]
    enabled = gc.isenabled()
    gc.disable()  # no collection of its own may free the cycle before the relist's
    try:
        # A garbage cycle old enough to sit in the oldest generation, as a session or a
        # traceback of another thread may be at the moment a relist ends.
        cycle = _Node()
        cycle.me = cycle
        gc.collect()
        dead = weakref.ref(cycle)
        del cycle
        assert dead() is not None
        p.ingest.process([*listed, Tick(T0)], T0)
        assert dead() is None  # collected before the freeze, not kept for good
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def test_what_died_in_a_cycle_since_the_last_thaw_is_collected_at_a_list_thaw_every_later(
    tmp_path: Path,
) -> None:
    """Alive at one relist's freeze (a watch stream's response, say), a cycle when it ends:
    frozen, the collector would never look at it again. A list that ends sooner (the next kind
    of a start) collects what was made since the freeze, not the whole heap again."""
    p = Pipeline(tmp_path)

    def relist(rv: str, ns: str, at: datetime) -> list[object]:
        pvc = volume("dr1", ns=ns)[0]  # another claim each time: a relist that changes something
        return [
            SnapshotStart("dr1", pvc.kind, "relist", at),
            SnapshotPage("dr1", pvc.kind, [pvc.object], "relist", at),
            SnapshotEnd("dr1", pvc.kind, rv, "relist", at),
            Tick(at),
        ]

    enabled = gc.isenabled()
    gc.disable()
    try:
        alive = _Node()
        alive.me = alive  # a cycle, held from outside for now
        p.ingest.process(relist("9", "a", T0), T0)  # frozen with everything else alive
        dead = weakref.ref(alive)
        del alive  # now garbage, and only the cycle collector can free it
        gc.collect()
        assert dead() is not None  # frozen: no collection looks at it
        young = _Node()
        young.me = young  # made after the freeze, garbage before the next list ends
        young_dead = weakref.ref(young)
        del young
        soon = T0 + THAW_EVERY - timedelta(seconds=1)
        p.ingest.process(relist("10", "b", soon), soon)
        assert dead() is not None  # not thawed again so soon
        assert young_dead() is None
        later = T0 + THAW_EVERY
        p.ingest.process(relist("11", "c", later), later)
        assert dead() is None
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
