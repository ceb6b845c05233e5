"""The census a running daemon logs on SIGUSR2: objects by type, and what grew between two.

(bench/soak.py asks a real `auditd run` for two and prints the growth; its smoke run in
tests/system checks that it does.)"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from auditd.daemon.census import Allocations, growth, summary, take


class Kept:
    pass


def test_a_census_counts_objects_by_type() -> None:
    c = take([Kept(), Kept(), {}, [], []])
    assert c.count["Kept"] == 2 and c.count["list"] == 2 and c.count["dict"] == 1
    assert c.size["list"] > 0
    doc = summary(c, top=2)
    assert doc["objects"] == 5
    assert list(doc["types"]) == ["Kept", "list"]  # the two largest counts


def test_the_census_of_the_process_sees_objects_the_ingest_froze() -> None:
    kept = [Kept() for _ in range(1000)]
    gc.freeze()  # as the ingest does at each list's end: gc.get_objects() skips them
    try:
        assert take().count["Kept"] >= 1000
    finally:
        gc.unfreeze()
    del kept


def test_a_census_does_not_break_a_tuple_another_thread_is_building() -> None:
    # The soak of 2026-12-06: a census walked gc.get_objects() in the daemon while the ingest
    # built a tuple; its resize met the list's reference and raised SystemError (bpo-15108),
    # which quarantined a good probe of 10,000 images. This failed within seconds then.
    stop = threading.Event()
    failures: list[BaseException] = []
    built = [0]

    def slow_items() -> Iterator[int]:
        for i in range(2000):
            if i % 100 == 0:
                time.sleep(0)  # a GIL switch mid-tuple, as any real iterator may cause
            yield i

    def build() -> None:
        while not stop.is_set():
            try:
                tuple(slow_items())  # resized as it grows (PySequence_Tuple)
                built[0] += 1
            except SystemError as e:
                failures.append(e)
                return

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    try:
        for _ in range(30):
            assert take().count["tuple"] > 0
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(10)
    assert failures == [] and built[0] > 0


def test_a_counting_child_that_hangs_is_killed_and_the_census_fails(monkeypatch: Any) -> None:
    # Forking a threaded process can leave the child a lock no thread will release: the daemon
    # must not wait on it forever (the SIGUSR2 handler runs on the main thread).
    from auditd.daemon import census

    monkeypatch.setattr(census, "_count", lambda _objects: time.sleep(60))
    started = time.monotonic()
    with pytest.raises(census.CensusError, match="no answer") as failed:
        census._count_in_child(timeout=0.5)
    assert time.monotonic() - started < 30  # gave up on it: did not wait its 60 s out
    pid = failed.value.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: not running, and not a zombie either


def test_pymalloc_arenas_held_after_a_peak_of_small_objects_are_counted_apart_from_glibc() -> None:
    # What neither the objects' count nor glibc's heap shows: pymalloc mmaps its arenas itself.
    before = take([]).pymalloc
    assert before is not None  # CPython on glibc, as the image runs it
    peak = [str(i) for i in range(200_000)]  # about 10 MB of small strings
    during = take([]).pymalloc
    assert during is not None
    assert during.in_blocks - before.in_blocks > 5 * 2**20
    assert during.held >= during.in_blocks and during.arenas_peak >= during.arenas
    del peak
    after = take([]).pymalloc
    assert after is not None and after.in_blocks < during.in_blocks
    doc = summary(take([]))
    assert doc["pymalloc_held"] > 0 and doc["pymalloc_in_blocks"] > 0


def test_a_census_says_what_sqlite_holds_of_glibcs_heap(tmp_path: Any) -> None:
    # glibc's heap in use grew 41 -> 48 MB in an hour of the soak with Python's objects flat:
    # SQLite's page caches and statements live there, and are counted apart now.
    import sqlite3

    conn = sqlite3.connect(tmp_path / "h.db")
    before = take([]).sqlite_in_use
    assert before is not None
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 100,) for _ in range(20_000)])
    conn.commit()
    during = take([]).sqlite_in_use
    assert during is not None and during > before + 500_000  # its page cache filled
    assert summary(take([]))["sqlite_in_use"] == during
    conn.close()


def test_growth_names_the_types_that_grew_most() -> None:
    before = summary(take([Kept(), {}]))
    after = summary(take([Kept(), Kept(), Kept(), {}, [], []]))
    lines = growth(before, after)
    assert lines[0] == "objects: 2 -> 6 (+4)"
    assert "  Kept: 1 -> 3 (+2)" in lines
    assert "  list: 0 -> 2 (+2)" in lines
    assert not any(line.startswith("  dict") for line in lines)  # unchanged


def test_under_tracemalloc_a_census_names_the_allocation_site_that_grew() -> None:
    import tracemalloc

    assert take(allocations=Allocations()).allocations is None  # not tracing: nothing to say
    tracemalloc.start(4)
    try:
        sites = Allocations()
        take([], sites)  # the first census holds the snapshot the next compares with
        kept = [str(i) * 20 for i in range(20_000)]  # untracked objects: str
        grown = take([], sites).allocations
    finally:
        tracemalloc.stop()
    assert grown is not None
    size, blocks, where = grown[0]
    assert where.startswith("tests/daemon/test_census.py:") and blocks >= 20_000 and size > 0
    lines = growth(summary(take([])), {**summary(take([])), "allocations": grown})
    assert any("test_census.py" in line for line in lines)
    del kept
