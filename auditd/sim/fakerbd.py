"""A stand-in `rbd` that replays real captures, for the simulated sites and the tests.

    python -m auditd.sim.fakerbd --conf DIR/ceph.conf --id USER mirror pool status POOL ...

The directory of the ceph.conf is the site's state: ``site`` holds the site name (site-a),
``scenario`` the capture scenario to replay (healthy, failover-1-demoted-site-a, ...) or a
fault (garbage, timeout, auth, no-pool), ``fixtures`` the captures' root directory, and
``retime`` (optional) how many seconds old the newest record should look. Scenario
``synthetic`` prints a healthy pool of as many images as the file ``images`` says (or those
from LO to HI - 1 when it holds two numbers), as of now (auditd/sim/rbdpool.py; ``cluster``
names the site's cluster, dr1 or dr2).
The real `direct` transport runs it exactly as it runs `rbd`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def main(argv: list[str]) -> int:
    conf = Path(argv[argv.index("--conf") + 1]) if "--conf" in argv else Path("ceph.conf")
    state = conf.parent
    site = _read(state / "site", "site-a")
    scenario = _read(state / "scenario", "healthy")
    fixtures = Path(_read(state / "fixtures", "."))
    words = [a for a in argv if not a.startswith("-")]
    with open(state / "calls.log", "a", encoding="utf-8") as log:  # what was asked, for tests
        log.write(" ".join(words[words.index("mirror") :] if "mirror" in words else words) + "\n")
    if scenario == "timeout":
        time.sleep(3600)
    if scenario == "garbage":
        sys.stdout.write('{"summary": {"health": \x00garbage')
        return 0
    if scenario == "auth":
        sys.stderr.write(
            "rbd: couldn't connect to the cluster!\n2026-11-26 auth: (13) Permission denied\n"
        )
        return 13
    if "status" in words and "pool" in words and "mirror" in words and "schedule" not in words:
        name = "mirror-pool-status-verbose.json"
        if scenario == "synthetic":
            from auditd.clock import SYSTEM
            from auditd.sim.rbdpool import pool_status

            cluster = _read(state / "cluster", "dr1")
            # "N": images 0 to N-1; "LO HI": the images of a pool whose volumes come and go.
            bounds = [int(n) for n in _read(state / "images", "0").split()]
            images = range(*bounds) if len(bounds) == 2 else bounds[0]
            sys.stdout.write(pool_status(cluster, images, SYSTEM.now()))
            return 0
        if scenario == "no-pool":
            pool = words[words.index("status") + 1]
            sys.stderr.write(f"rbd: error opening pool '{pool}': (2) No such file or directory\n")
            return 2
    elif "info" in words:
        name = "mirror-pool-info.json"
    elif "schedule" in words:
        name = "mirror-snapshot-schedule-status.json"
    else:
        sys.stderr.write(f"fakerbd: unsupported command {' '.join(words)}\n")
        return 22
    for candidate in (
        fixtures / scenario / f"{site}-{name}",
        fixtures / "healthy" / f"{site}-{name}",
    ):
        if candidate.exists():
            sys.stdout.write(_retimed(candidate.read_text(), _read(state / "retime")))
            return 0
    sys.stderr.write(f"fakerbd: no capture {scenario}/{site}-{name}\n")
    return 2


def _retimed(text: str, seconds_ago: str) -> str:
    """With a ``retime`` file (seconds): the capture as if its newest record was written that
    long before now (auditd's clock), so that a one-shot look judges it as current."""
    if not seconds_ago:
        return text
    from datetime import timedelta

    from auditd.clock import SYSTEM
    from auditd.sim.captures import retime

    return retime(text, SYSTEM.now() - timedelta(seconds=float(seconds_ago)))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
