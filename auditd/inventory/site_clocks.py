"""How far each Ceph site's clock is from auditd's, read off the times rbd-mirror writes.

Every time in a site's mirror status is that site's clock: each record's ``last_update``
(rewritten about every 30 s by the site's rbd-mirror), and the snapshot timestamps its images
carry (the primary site's clock, when the snapshot was taken). A site an hour ahead makes a
stalled replica look current; an hour behind makes every record look stale and every lag an
hour long. So the offset is measured, reported as a finding of its own, and every time taken
from that site is moved onto auditd's clock before anything is judged on it.

The measurement: at a probe, the newest ``last_update`` of a live site lies within one rewrite
period (30 s) before the probe, on a true clock. Over a window of probes the largest
``newest - probe time`` is therefore within a few seconds of the site's offset. A record can
never legitimately be written in the future, so "ahead" is known from one probe; "behind" only
from probes whose newest record advanced since the previous one (a dead rbd-mirror also leaves
old records, and that is staleness, not a clock). Records as fresh as they should be say at
once that the clocks agree.

Pure: probe results in, offsets out. The offset is persisted as a pool fact (``clock_offset``)
so that a restart does not judge an hour of records stale before it has measured again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from auditd.config import MIRROR_REFRESH
from auditd.sources.rbd.parse import ImageStatus

# A site's records may look this far in the future of auditd's probe (command latency, the
# 1 s resolution of last_update) before its clock counts as ahead.
AHEAD_TOLERANCE = timedelta(seconds=30)
# Behind: one rewrite period (30 s) is normal, a probe may take a while; past this it is skew.
BEHIND_TOLERANCE = timedelta(seconds=60)
WINDOW = timedelta(minutes=10)
# A live site's samples differ by a rewrite period and a probe's latency; a sample this far
# from the others is its clock changed, not a slow record (an hour back would otherwise be seen
# only once the window had forgotten the samples from before).
JUMP = timedelta(minutes=5)
# rbd-mirror rewrites every record every 30 s: unmoved for half as long again, it is not
# running (its old records are old, whatever the clock says).
STILL_FOR = MIRROR_REFRESH * 3 / 2
# The persisted value is rounded, so that its fact changes only when the skew really moves.
ROUND_TO = 30

K = TypeVar("K")
V = TypeVar("V")


class SiteClocks:
    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[datetime, timedelta]]] = {}
        self._newest: dict[tuple[str, str], datetime] = {}
        self._seeded: dict[str, timedelta] = {}
        # The probes (first, latest) across which each pool's newest record has stood still:
        # old records unmoved past a rewrite are a dead rbd-mirror's, not a clock behind.
        self._still: dict[tuple[str, str], tuple[datetime, datetime]] = {}

    def seed(self, cluster: str, offset: timedelta) -> None:
        """What a previous run measured, used until this run has measured again."""
        self._seeded[cluster] = offset

    def transplant(self, other: SiteClocks, clusters: set[str]) -> None:
        """These clusters' readings as ``other`` holds them (see Inventory.transplant)."""
        _replace(self._samples, other._samples, lambda c: c in clusters)
        _replace(self._seeded, other._seeded, lambda c: c in clusters)
        _replace(self._newest, other._newest, lambda k: k[0] in clusters)
        _replace(self._still, other._still, lambda k: k[0] in clusters)

    def observe(self, cluster: str, pool: str, images: list[ImageStatus], at: datetime) -> None:
        stamps = [i.local.last_update for i in images if i.local.last_update is not None]
        if not stamps:
            return
        newest = max(stamps)
        prev = self._newest.get((cluster, pool))
        self._newest[(cluster, pool)] = newest
        if prev is not None and newest < prev - JUMP:
            # Records rewritten since the last probe are older than those it read: the site's
            # clock was set back. Every reading of it is past; unmeasured until it is again
            # (its snapshot times too: a lag an hour long is the clock, not the mirror).
            self._samples.pop(cluster, None)
            self._seeded.pop(cluster, None)
            self._still[(cluster, pool)] = (at, at)
            return
        offset = newest - at
        advanced = prev is not None and newest > prev
        first = self._still.get((cluster, pool), (at, at))[0]
        self._still[(cluster, pool)] = (at, at) if prev is None or advanced else (first, at)
        if not advanced and offset < -BEHIND_TOLERANCE:
            return  # old records, not moving: a dead rbd-mirror's last word, or a clock behind
        samples = self._samples.setdefault(cluster, deque())
        if samples and abs(offset - max(o for _, o in samples)) > JUMP:
            samples.clear()  # the site's clock was set (or jumped): what it read before is past
        samples.append((at, offset))
        while samples and at - samples[0][0] > WINDOW:
            samples.popleft()

    def measured(self, cluster: str, pool: str) -> bool:
        """Whether this site's times can be put on auditd's clock: its offset is measured (or
        was, by a previous run), or its records have stood still past a rewrite (a dead
        rbd-mirror: they are old, whatever the clock says). A second probe alone tells nothing
        when it comes before the next rewrite."""
        if self._samples.get(cluster) or cluster in self._seeded:
            return True
        still = self._still.get((cluster, pool))
        return still is not None and still[1] - still[0] >= STILL_FOR

    def offset(self, cluster: str) -> timedelta:
        """The site's clock minus auditd's; zero while within tolerance (or unknown)."""
        samples = self._samples.get(cluster)
        if not samples:
            return self._seeded.get(cluster, timedelta(0))
        best = max(o for _, o in samples)
        if best > AHEAD_TOLERANCE or best < -BEHIND_TOLERANCE:
            return best
        return timedelta(0)

    def fact(self, cluster: str) -> str | None:
        """The offset for the pool's facts: seconds, rounded; None when the clocks agree."""
        seconds = self.offset(cluster).total_seconds()
        if seconds == 0:
            return None
        rounded = int(round(seconds / ROUND_TO) * ROUND_TO)
        return str(rounded or int(seconds))


def _replace(mine: dict[K, V], theirs: dict[K, V], chosen: Callable[[K], bool]) -> None:
    """Every chosen key of ``mine`` as ``theirs`` has it (or absent, as there)."""
    for key in [k for k in mine if chosen(k)]:
        del mine[key]
    mine.update({k: v for k, v in theirs.items() if chosen(k)})
