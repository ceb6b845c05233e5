"""The daemon limits glibc's malloc arenas, unless the operator chose a number."""

from __future__ import annotations

import platform

import pytest

from auditd.daemon.malloc import limit_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_two_arenas_on_glibc_unless_malloc_arena_max_is_set() -> None:
    assert limit_arenas(environ={}) is True
    assert limit_arenas(environ={"MALLOC_ARENA_MAX": "4"}) is False
