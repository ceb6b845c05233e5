"""Months of relists leave no garbage behind: after each relist the writer freezes what it
holds (the inventory, long-lived and acyclic, so that the cyclic GC stops rescanning it), and
what is frozen is never collected again, so each freeze thaws and collects first."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from captured_pair import volume
from pipeline import T0, Pipeline

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


def test_what_died_in_a_cycle_since_the_last_relist_is_collected_at_the_next(
    tmp_path: Path,
) -> None:
    """Alive at one relist's freeze (a watch stream's response, say), a cycle when it ends:
    frozen, the collector would never look at it again."""
    p = Pipeline(tmp_path)

    def relist(rv: str, ns: str) -> list[object]:
        pvc = volume("dr1", ns=ns)[0]  # another claim each time: a relist that changes something
        return [
            SnapshotStart("dr1", pvc.kind, "relist", T0),
            SnapshotPage("dr1", pvc.kind, [pvc.object], "relist", T0),
            SnapshotEnd("dr1", pvc.kind, rv, "relist", T0),
            Tick(T0),
        ]

    enabled = gc.isenabled()
    gc.disable()
    try:
        alive = _Node()
        alive.me = alive  # a cycle, held from outside for now
        p.ingest.process(relist("9", "a"), T0)  # frozen with everything else alive
        dead = weakref.ref(alive)
        del alive  # now garbage, and only the cycle collector can free it
        gc.collect()
        assert dead() is not None  # frozen: no collection looks at it
        p.ingest.process(relist("10", "b"), T0)
        assert dead() is None
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
