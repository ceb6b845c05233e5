"""What each site's rbd-mirror last wrote about each image, and when: the freshness of the
storage truth.

An image's mirror status is a record that rbd-mirror rewrites about every 30 s. Right after a
demote or a promote the records lag the truth: the demoted side keeps saying "local image is
primary" until its next rewrite, the promoted side may say "remote image demoted" for ~25 s.
Whether two records can be believed together depends on *when* each was written relative to
the last change of role either site showed. That is what an ``ImageRecord`` keeps, per site
(one site's clock and snapshots never overwrite the other's).

Pure: a probe's image status and the previous record in, the next record out. The ingest
writer persists records (``rbd_image_records``), so a restart and ``auditd explain`` see the
same freshness the daemon judged with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from auditd.inventory.site_clocks import SiteClocks
from auditd.sources.rbd.parse import ImageStatus, lag_seconds

RecordKey = tuple[str, str, str]  # cluster, pool, image


@dataclass(frozen=True, slots=True)
class ImageRecord:
    updated_at: datetime | None  # the record's last_update (written by that site's rbd-mirror)
    primary: bool | None  # the role the record claims, the last one it stated clearly
    # last_update of the first record claiming the current role, when auditd saw the role
    # change; None when it has claimed this role for as long as auditd has looked.
    role_changed_at: datetime | None
    demoted_at: datetime | None  # when this site stopped being primary (first record saying so)
    synced_at: datetime | None  # this site's last synced snapshot, as secondary, since demoted_at
    seen_at: datetime  # the probe that last listed it

    @property
    def current_through(self) -> datetime | None:
        """As secondary, the newest moment this site is known to hold the primary's data: its
        last synced snapshot, never earlier than its demotion (it was current until then)."""
        return max((t for t in (self.synced_at, self.demoted_at) if t is not None), default=None)

    def to_row(self) -> dict[str, datetime | bool | None]:
        return {
            "updated_at": self.updated_at,
            "primary": self.primary,
            "role_changed_at": self.role_changed_at,
            "demoted_at": self.demoted_at,
            "synced_at": self.synced_at,
            "seen_at": self.seen_at,
        }


def next_record(
    prev: ImageRecord | None,
    image: ImageStatus,
    at: datetime,
    own: timedelta = timedelta(0),
    primary: timedelta = timedelta(0),
) -> ImageRecord:
    """The record after a probe listed ``image`` at ``at``, every time on auditd's clock:
    ``own`` is this site's clock offset (its last_update), ``primary`` the offset of the site
    that took the snapshots it syncs (site_clocks.py)."""
    updated = image.local.last_update - own if image.local.last_update else None
    claim = image.primary
    if prev is None:
        record = ImageRecord(updated, claim, None, None, None, at)
    else:
        record = replace(prev, updated_at=updated or prev.updated_at, seen_at=at)
        if claim is not None and claim != prev.primary:
            changed = updated or at
            record = replace(record, primary=claim, role_changed_at=changed)
            if claim:
                record = replace(record, demoted_at=None, synced_at=None)
            elif prev.primary is True:
                # It held current data until it was demoted: lag is measured from here, never
                # from a snapshot older than this (its own old promotion snapshot, say).
                record = replace(record, demoted_at=changed, synced_at=None)
    if record.primary is False:
        synced = _local_snapshot_time(image)
        synced = synced - primary if synced is not None else None
        floor = record.demoted_at
        # What the secondary says now, unless it predates the demotion (its own old promotion
        # snapshot, after a failback): then the demotion is the floor (views.synced_at).
        if synced is not None and (floor is None or synced >= floor):
            record = replace(record, synced_at=synced)
    return record


def _local_snapshot_time(image: ImageStatus) -> datetime | None:
    """The secondary's own record: the last snapshot it synced (Unix seconds). Only the site's
    own description counts; the peer's copy of it is the other site's business."""
    info = image.local.replay or {}
    ts = info.get("local_snapshot_timestamp")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > 0:
        return datetime.fromtimestamp(float(ts), UTC)
    return None


class RecordBook:
    """Every image record of every site, keyed by (cluster, pool, image)."""

    def __init__(self) -> None:
        self.records: dict[RecordKey, ImageRecord] = {}
        self.clocks = SiteClocks()
        self._sites: dict[tuple[str, str], set[str]] = {}  # (pool, image) -> clusters listing it

    def load(self, rows: dict[RecordKey, ImageRecord]) -> None:
        self.records.update(rows)
        for cluster, pool, image in rows:
            self._sites.setdefault((pool, image), set()).add(cluster)

    def transplant(self, other: RecordBook, clusters: set[str]) -> None:
        """These clusters' records and clock readings as ``other`` holds them."""
        self.records = {k: r for k, r in self.records.items() if k[0] not in clusters} | {
            k: r for k, r in other.records.items() if k[0] in clusters
        }
        self._sites = {}
        for cluster, pool, image in self.records:
            self._sites.setdefault((pool, image), set()).add(cluster)
        self.clocks.transplant(other.clocks, clusters)

    def _peer(self, cluster: str, pool: str, image: str) -> str | None:
        self._sites.setdefault((pool, image), set()).add(cluster)
        return self.peer(cluster, pool, image)

    def peer(self, cluster: str, pool: str, image: str) -> str | None:
        """The other site that lists this image (the one whose snapshots it syncs)."""
        others = self._sites.get((pool, image), set()) - {cluster}
        return next(iter(others)) if len(others) == 1 else None

    def get(self, cluster: str, pool: str, image: str) -> ImageRecord | None:
        return self.records.get((cluster, pool, image))

    def behind(
        self, cluster: str, pool: str, image: str, at: datetime, primary: str | None = None
    ) -> timedelta | None:
        """How far the secondary ``cluster``'s copy of ``image`` is behind at ``at``: from what
        it holds, never from before its demotion (it was current until then). None when it is
        not a secondary or that cannot be told: its snapshot times are the primary site's clock
        (``primary``, else the peer listing the image), unknown until measured. The one lag:
        the rpo rule, /metrics and the report's samples all read it here."""
        record = self.get(cluster, pool, image)
        if record is None or record.primary is not False:
            return None
        primary = primary or self.peer(cluster, pool, image)
        if primary is not None and not self.clocks.measured(primary, pool):
            return None
        since = record.current_through
        return max(timedelta(0), at - since) if since else None

    def lag(self, cluster: str, pool: str, image: ImageStatus, at: datetime) -> float | None:
        """Seconds behind at ``at``, as ``cluster``'s probe lists the image; None when unknown.
        A secondary's is ``behind``; a primary's is its peer's, as this site reports it."""
        record = self.get(cluster, pool, image.name)
        if record is not None and record.primary is False:
            behind = self.behind(cluster, pool, image.name, at)
            return behind.total_seconds() if behind is not None else None
        if not self.clocks.measured(cluster, pool):
            return None
        # The peer's snapshot times are this (primary) site's clock: compare on that clock.
        return lag_seconds(image, at + self.clocks.offset(cluster))

    def observe(
        self, cluster: str, pool: str, images: list[ImageStatus], at: datetime
    ) -> tuple[dict[RecordKey, ImageRecord], list[RecordKey]]:
        """A successful pool probe: the records it changed, and those of images it no longer
        lists (gone from that site's mirror status)."""
        changed: dict[RecordKey, ImageRecord] = {}
        listed = set()
        self.clocks.observe(cluster, pool, images, at)
        own = self.clocks.offset(cluster)
        for image in images:
            key = (cluster, pool, image.name)
            listed.add(key)
            prev = self.records.get(key)
            peer = self._peer(cluster, pool, image.name)
            primary = self.clocks.offset(peer) if peer is not None else timedelta(0)
            new = next_record(prev, image, at, own, primary)
            if new != prev:
                self.records[key] = new
                # seen_at alone moves every probe: not worth a row write each time.
                if prev is None or replace(new, seen_at=prev.seen_at) != prev:
                    changed[key] = new
        gone = [k for k in self.records if k[0] == cluster and k[1] == pool and k not in listed]
        for key in gone:
            del self.records[key]
            sites = self._sites.get(key[1:])
            if sites is not None:
                sites.discard(cluster)
                if not sites:  # listed by neither site: forgotten, not kept empty for months
                    del self._sites[key[1:]]
        return changed, gone
