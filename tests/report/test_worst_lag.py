"""The report's worst lag per image, read from each image's worst of the day for the days wholly
in its window (LagDayRow) and from the samples for the rest, is the worst of the samples in the
window: whatever the window, whatever the writer's batches, after the prune, and for a history
the migration filled."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from auditd.report.query import Filters, _worst_lags
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import LagDayRow, MeasurementRow
from auditd.store.retention import Pruner
from auditd.store.writer import write_measurements

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
IMAGES = [("dr1", "replicapool", "csi-vol-1"), ("dr2", "replicapool", "csi-vol-1"),
          ("dr2", "other", "csi-vol-2")]  # fmt: skip


def _samples(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Samples over six days at random minutes (a few on a midnight), a lag unknown in one of
    five, one image never known."""
    out = []
    for _ in range(n):
        cluster, pool, image = rng.choice(IMAGES)
        minute = rng.choice((rng.randrange(6 * 24 * 60), 24 * 60 * rng.randrange(6)))
        lag = None if image == "csi-vol-2" or rng.random() < 0.2 else rng.random() * 600
        out.append({"cluster": cluster, "pool": pool, "image": image,
                    "at": START + timedelta(minutes=minute, microseconds=rng.randrange(2)),
                    "lag_seconds": lag, "bytes_per_second": None, "last_sync_seconds": None,
                    "last_sync_bytes": None})  # fmt: skip
    return out


def _expected(samples: list[dict[str, Any]], since: datetime, until: datetime,
              clusters: tuple[str, ...] = ()) -> dict[tuple[str, str, str], float | None]:  # fmt: skip
    out: dict[tuple[str, str, str], float | None] = {}
    for s in samples:
        if not since <= s["at"] < until or (clusters and s["cluster"] not in clusters):
            continue
        key, lag = (s["cluster"], s["pool"], s["image"]), s["lag_seconds"]
        held = out.get(key)
        out[key] = lag if held is None or (lag is not None and lag > held) else held
    return out


def _windows(rng: random.Random) -> list[tuple[datetime, datetime]]:
    day = timedelta(days=1)
    out = [(START, START + 6 * day), (START + day, START + 3 * day),  # whole days only
           (START + timedelta(hours=5), START + timedelta(hours=7)),  # within a day
           (START - day, START + 10 * day)]  # fmt: skip
    for _ in range(30):
        a, b = sorted(rng.randrange(-60, 7 * 24 * 60) for _ in range(2))
        out.append((START + timedelta(minutes=a), START + timedelta(minutes=b, seconds=1)))
    return out


def test_the_worst_lag_of_a_window_is_the_worst_of_its_samples(db_url: str) -> None:
    rng = random.Random(7)
    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        samples = _samples(rng, 600)
        for i in range(0, len(samples), 37):  # the writer's batches: a day's row is met again
            with sessions.begin() as s:
                write_measurements(s, samples[i : i + 37])
        with sessions() as s:
            for since, until in _windows(rng):
                assert _worst_lags(s, since, until, Filters()) == _expected(samples, since, until)
            since, until = START + timedelta(hours=3), START + timedelta(days=4, hours=1)
            assert _worst_lags(s, since, until, Filters(clusters=("dr2",))) == _expected(
                samples, since, until, ("dr2",)
            )
        # Pruned: the days wholly before the cutoff go; a window after it reads the same.
        cutoff = START + timedelta(days=2, hours=12)
        Pruner(sessions, pause=timedelta(0)).prune(cutoff)
        kept = [s for s in samples if s["at"] >= cutoff]
        with sessions() as s:
            days = set(s.scalars(select(LagDayRow.day)))
            assert min(days) == START + timedelta(days=2)
            for since, until in _windows(rng):
                since = max(since, cutoff)
                if since < until:
                    assert _worst_lags(s, since, until, Filters()) == _expected(kept, since, until)
    finally:
        engine.dispose()


def test_the_migration_fills_each_days_worst_from_the_samples_kept(db_url: str) -> None:
    rng = random.Random(11)
    upgrade(db_url, "0013")
    engine = make_engine(db_url)
    samples = _samples(rng, 300)
    try:
        with engine.begin() as c:
            # What 0013's writer wrote: the samples alone.
            c.execute(MeasurementRow.__table__.insert(), samples)
        upgrade(db_url)
        with session_factory(engine)() as s:
            rows = {(r.cluster, r.pool, r.image, r.day): r.worst_lag_seconds
                    for r in s.scalars(select(LagDayRow))}  # fmt: skip
        expected: dict[tuple[str, str, str, datetime], float | None] = {}
        for sample in samples:
            at = sample["at"]
            key = (sample["cluster"], sample["pool"], sample["image"],
                   datetime(at.year, at.month, at.day, tzinfo=UTC))  # fmt: skip
            held, lag = expected.get(key), sample["lag_seconds"]
            expected[key] = lag if held is None or (lag is not None and lag > held) else held
        assert rows == expected
    finally:
        engine.dispose()
