"""Where the project's files and the test data are, for test modules at any depth (tests mirror
auditd's packages: tests/alerts/, tests/daemon/, ...)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DATA = TESTS / "data"
RBD = DATA / "rbd"  # real `rbd`/`ceph` output, per scenario
GOLDEN = TESTS / "golden"
