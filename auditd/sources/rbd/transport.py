"""Run `rbd` against one site: locally (`direct`) or in the Rook toolbox pod (`exec`).

Arguments are always lists and pool names are validated: no shell is involved anywhere.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from auditd.logs import scrub

POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: bytes
    stderr: str
    duration: float


class ProbeFailure(Exception):
    """A probe that produced no usable answer. ``kind`` is stable, ``message`` is safe to show."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = scrub(message)[:500]


class Transport(Protocol):
    def run(self, args: list[str], timeout: float) -> CommandResult: ...


def classify_failure(rc: int, stderr: str) -> ProbeFailure:
    """Name what went wrong from `rbd`'s exit status and message (the errno is in both)."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
    low = stderr.lower()
    if "error opening pool" in low or (rc == 2 and "pool" in low):
        kind = "no-such-pool"
    elif rc == 2 or "no such file" in low:
        kind = "no-such-image"
    elif rc == 22 and "mirroring not enabled" in low:
        kind = "mirroring-disabled"
    elif rc == 30 or "read-only" in low:
        kind = "read-only"
    elif rc == 13 or "permission denied" in low or "auth" in low or "not permitted" in low:
        kind = "auth"
    elif rc == 110 or "timed out" in low or "connect" in low:
        kind = "unreachable"
    else:
        kind = "error"
    return ProbeFailure(kind, f"rc {rc}: {text}")


def validate_pool(pool: str) -> str:
    if not POOL_NAME.match(pool):
        raise ProbeFailure("invalid-pool", f"refusing pool name {pool!r}")
    return pool


class DirectTransport:
    """`rbd` on this host, with a per-cluster ceph.conf and a read-only cephx user's keyring.

    Needs no Kubernetes RBAC at all; the cephx caps it needs are in the README.
    """

    def __init__(
        self,
        conf: Path,
        user: str,
        keyring: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.base = [*(command or ["rbd"]), "--conf", str(conf), "--id", user]
        if keyring is not None:
            self.base += ["--keyring", str(keyring)]

    def run(self, args: list[str], timeout: float) -> CommandResult:
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [*self.base, *args],
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ProbeFailure("timeout", f"no answer within {timeout:.0f}s") from None
        except OSError as e:
            raise ProbeFailure("error", f"cannot run {self.base[0]}: {e.strerror}") from None
        return CommandResult(
            proc.returncode,
            proc.stdout,
            proc.stderr.decode("utf-8", "replace"),
            time.monotonic() - start,
        )
