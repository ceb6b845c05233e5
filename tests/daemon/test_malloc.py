"""The daemon limits glibc's malloc arenas, unless the operator chose a number, and gives back
what glibc holds free."""

from __future__ import annotations

import platform

import pytest

from auditd.daemon.malloc import fix_mmap_threshold, heap, limit_arenas, trim


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_two_arenas_on_glibc_unless_malloc_arena_max_is_set() -> None:
    assert limit_arenas(environ={}) is True
    assert limit_arenas(environ={"MALLOC_ARENA_MAX": "4"}) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_a_large_block_is_mmapped_after_a_larger_one_was_freed() -> None:
    # glibc alone would raise its threshold to 8 MB on the first free, and serve the 3 MB block
    # (a probe's next document) from the heap, where it pins what is freed around it.
    assert fix_mmap_threshold(environ={"MALLOC_MMAP_THRESHOLD_": "1"}) is False
    assert fix_mmap_threshold(environ={}) is True
    start = heap()
    assert start is not None
    # Larger than all the heap holds free: glibc serves a request from a free chunk that fits
    # before it looks at the threshold, and tests run before this one leave such chunks.
    size = max(3_000_000, start.free_held + 1_000_000)
    first = b"x" * (2 * size + 2_000_000)  # glibc alone would raise its threshold past size
    del first
    before = heap()
    assert before is not None
    second = b"y" * size
    after = heap()
    assert after is not None
    assert after.mmapped - before.mmapped >= size
    assert len(second) == size


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim only")
def test_a_trim_gives_back_memory_freed_below_a_live_block() -> None:
    # 20 KB blocks (glibc's heap, not pymalloc, not mmap): every fourth kept, so the heap's
    # top is in use and glibc alone would keep the 300 MB freed below it.
    kept, freed = [], []
    for i in range(20_000):
        (kept if i % 4 == 0 else freed).append(b"x" * (20_000 + i % 7))
    del freed
    before = _rss_mb()
    assert trim() is True
    assert before - _rss_mb() > 150
    assert len(kept) == 5_000
