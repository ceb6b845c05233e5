"""The daemon limits glibc's malloc arenas, unless the operator chose a number, and gives back
what glibc holds free."""

from __future__ import annotations

import platform

import pytest

from auditd.daemon.malloc import limit_arenas, trim


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_two_arenas_on_glibc_unless_malloc_arena_max_is_set() -> None:
    assert limit_arenas(environ={}) is True
    assert limit_arenas(environ={"MALLOC_ARENA_MAX": "4"}) is False


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
