"""The single writer: a queue of what was seen -> the auditor -> one commit per batch.

Every watcher thread feeds one queue; this thread owns the auditor (the inventory, the rules'
state, the open violations), so no locks are needed around them, and SQLite sees exactly one
writer. What happens to a batch is decided in stages: leadership (what this replica writes,
follows or holds), isolation (a batch that cannot be taken in is halved until the item that
breaks it is quarantined), the auditor (daemon/auditor.py: the verdicts, no I/O), and the
history write (daemon/store_link.py: retries, the fence, the one transaction).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from auditd.alerts.message import Alert
from auditd.clock import SYSTEM, Clock
from auditd.daemon.auditor import Auditor, Commit, ViolationKey
from auditd.daemon.collector import Freezer
from auditd.daemon.handoff import Handoff
from auditd.daemon.isolate import isolate
from auditd.daemon.items import (
    Item,
    by_time,
    describe_item,
    halves,
    observed_span,
    quarantined,
)
from auditd.daemon.leader import Leadership
from auditd.daemon.led import Led
from auditd.daemon.scopes import Scopes
from auditd.daemon.store_link import Abandoned, StoreLink
from auditd.inventory.inventory import Checkpoint, Inventory
from auditd.inventory.probe_book import ProbeBook
from auditd.logs import describe
from auditd.rules.engine import RuleEngine
from auditd.rules.lifecycle import Active, Change
from auditd.sources.kube.events import Observed, SnapshotEnd, SnapshotPage, SnapshotStart
from auditd.store.errors import NotLeader
from auditd.store.load import load_state
from auditd.store.writer import (
    PlannedNotification,
    write_change,
    write_delta,
    write_episodes,
    write_image_records,
    write_measurements,
    write_probe_health,
    write_stream_health,
)

if TYPE_CHECKING:
    from auditd.daemon.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class Ingestor:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        inventory: Inventory,
        rules: RuleEngine,
        active: dict[ViolationKey, Active],
        sinks: Sequence[str],
        on_commit: Callable[[], None] = lambda: None,
        batch_max: int = 1000,
        queue_max: int = 2000,
        pages_in_flight: int = 4,
        metrics: Metrics | None = None,
        clock: Clock = SYSTEM,
        leadership: Leadership | None = None,
        want_probes: Callable[[set[tuple[str, str]]], None] = lambda _: None,
    ) -> None:
        self.sessions = sessions
        # Asks the scheduler for status probes now (cluster, pool): the rules' wish for
        # storage evidence fresher than what they judge (RuleEngine.drain_wanted_probes).
        self.want_probes = want_probes
        self.clock = clock
        self.metrics = metrics
        self.sinks = list(sinks)
        self.on_commit = on_commit
        self.batch_max = batch_max
        # Bounded: a stalled database slows the watchers down instead of filling memory. A list
        # page holds hundreds of raw objects, so pages have a tighter bound of their own.
        # Backpressure is safe: a watch the server drops for being slow resumes exactly.
        self.queue: Handoff[Item] = Handoff(maxsize=queue_max)
        self._page_slots = threading.Semaphore(pages_in_flight)
        self._freezer = Freezer()
        self._stop = threading.Event()
        self.committed_batches = 0
        # What could not be taken in: quarantined items (recorded) and dropped ones (logged).
        self.quarantined = 0
        self.dropped = 0
        # Items left unwritten at a shutdown with the database down (the exit code says so).
        self.abandoned = 0
        # auditd's own health: the history database refusing writes (not a cluster's fault).
        self.store = StoreLink(sessions, clock, metrics, self._stop.is_set, self.queue.qsize)
        # Replicas on one PostgreSQL history: each scope (a pair) has one writer, its leader
        # (daemon/leader.py). The scopes this writer leads and has taken over: it writes their
        # items and evaluates their rules; it follows the others in memory.
        self.leadership = leadership or Leadership()
        self.scopes = Scopes.of(rules.config)
        led = frozenset(s for s in self.scopes.all if self.leadership.state(s) == "lead")
        self.auditor = Auditor(inventory, rules, active, Led(self.scopes, led))

    # What the auditor holds, as the runner, status and tests read it.
    @property
    def inventory(self) -> Inventory:
        return self.auditor.inventory

    @property
    def rules(self) -> RuleEngine:
        return self.auditor.rules

    @property
    def active(self) -> dict[ViolationKey, Active]:
        return self.auditor.active

    @property
    def probe_book(self) -> ProbeBook:
        return self.auditor.probe_book

    @property
    def led(self) -> Led:
        return self.auditor.led

    @led.setter
    def led(self, led: Led) -> None:
        self.auditor.led = led

    def put(self, item: Item) -> None:
        if isinstance(item, SnapshotPage):
            self._page_slots.acquire()
        self.queue.put(item)

    def stop(self) -> None:
        """Finish what is queued, then return from ``run``."""
        self._stop.set()

    def run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = [first, *self.queue.take(self.batch_max - 1)]
            try:
                self.write(batch)
            except Abandoned as e:
                self._abandon(batch, e)
                return
            except Exception:
                # process_isolating contains every item's failure; this is a bug in it.
                log.exception("ingest batch of %d items failed", len(batch))
            finally:
                # Whatever happened, the pages' slots are free again, or the watchers would
                # block forever once a few batches had failed.
                for item in batch:
                    if isinstance(item, SnapshotPage):
                        self._page_slots.release()

    def write(self, batch: Sequence[Item]) -> None:
        """Take one batch in, as the writer loop does: in runs dated by when they were seen,
        each written (or followed) under the current leadership."""
        for chunk in by_time(batch):
            self._write_or_follow(chunk)

    # ------------------------------------------------------------------ leadership
    def _write_or_follow(self, batch: Sequence[Item]) -> None:
        """Write the items of the scopes this process leads (taking a scope over first if it
        just became its leader), follow the others in memory; hold the whole batch while this
        process cannot tell who leads (its election session was lost: an outage, most likely,
        and the batch keeps its times until the session, and the locks, are back)."""
        waited = 0
        while True:
            states = {s: self.leadership.state(s) for s in self.scopes.all}
            if "unknown" in states.values():
                waited += 1
                if self._stop.is_set() and waited > 20:
                    raise Abandoned("no database session to lead with", 0)
                self.store.failing("waiting to lead again (the database session was lost)")
                time.sleep(0.25)
                continue
            led = frozenset(s for s, state in states.items() if state == "lead")
            gone = self.led.led - led
            if gone:
                holders = ", ".join(f"{s}: {self.leadership.holder(s)}" for s in sorted(gone))
                log.info("following %s, not writing it (%s)", ", ".join(sorted(gone)), holders)
                self.led = self.led.without(gone)
            mine, theirs = Led(self.scopes, led).split(batch)
            try:
                newly = led - self.led.led
                if newly:
                    self._take_over(newly)
                self.auditor.follow(theirs)
                self.process_isolating(mine)
                return
            except NotLeader:
                continue  # memory is back to what is stored; decide again

    def _take_over(self, scopes: frozenset[str]) -> None:
        """Become the writer of these scopes: reload the history as their last leader left it,
        then reconcile it with what this process has been watching, as a restart reconciles
        with a fresh list (changes found this way are recorded as relist, late)."""
        started = time.monotonic()
        watched = self.inventory
        self.led = self.led.with_(scopes)
        try:
            self._restore(watched.checkpoint())
            items = resync(watched, self.clock.now(), self.scopes.clusters_of(scopes))
            if items:
                self.process_isolating(items)
        except BaseException:
            self.led = self.led.without(scopes)
            raise
        log.info(
            "took over %s: %d kinds reconciled in %.1fs",
            ", ".join(sorted(scopes)),
            sum(isinstance(i, SnapshotEnd) for i in items),
            time.monotonic() - started,
        )

    def led_active(self) -> dict[ViolationKey, Active]:
        return self.auditor.led_active()

    def _abandon(self, batch: Sequence[Item], e: Abandoned) -> None:
        """Shutting down with a database that cannot be written: say what was not recorded."""
        rest = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            rest += 1
            if isinstance(item, SnapshotPage):
                self._page_slots.release()
        self.abandoned = len(batch) + rest
        log.error(
            "shutting down without writing %d queued items (%d transitions in the last batch):"
            " %s. The next start lists every cluster again and records what changed, marked"
            " late; the exact times of those changes are lost.",
            self.abandoned,
            e.transitions,
            e.reason,
        )

    def process_isolating(self, batch: Sequence[Item]) -> None:
        """``process`` the batch; when anything in it cannot be taken in (the database refuses
        a value, an item breaks a rule), put memory back to what is stored and halve the batch
        until the item is isolated (daemon/isolate.py). That item is quarantined; everything
        else commits, once."""
        for item, reason in isolate(batch, self._attempt, halves):
            self._quarantine(item, reason)

    def _attempt(self, batch: Sequence[Item]) -> str | None:
        """One try of ``process``: None when committed, else why not, with memory put back to
        what is stored. A database that takes no write at all is waited for, not blamed on the
        batch; shutting down and losing the lead are not the batch's fault either (raised)."""
        attempt = 0
        while True:
            checkpoint = self.inventory.checkpoint()
            try:
                self.process(batch)
                return None
            except Abandoned:
                raise
            except NotLeader:
                self._restore(checkpoint)  # this batch never happened, as far as memory goes
                raise
            except Exception as e:
                reason = describe(e)
                if len(batch) == 1 and halves(batch[0]) is None:
                    log.debug("isolated a failing item", exc_info=True)
            self._restore(checkpoint)
            refusal = self.store.refuses_all_writes(self.led.led)
            if refusal is None:
                return reason
            # Not this batch: the database takes no write at all (read-only, a broken schema,
            # lost privileges). Splitting would blame every item; hold them, as when it is down.
            attempt += 1
            self.store.wait(attempt, f"refuses every write: {refusal}")

    def _quarantine(self, item: Item, reason: str) -> None:
        """One item the pipeline cannot take: record it as quarantined (an object keeps its
        last good state; a probe counts as failed), or, for an item with no identity of its
        own, log it and count it."""
        held = quarantined(item, reason)
        what = describe_item(item)
        if held is not None:
            checkpoint = self.inventory.checkpoint()
            try:
                self.process([held])
                log.warning("quarantined %s: %s", what, reason)
                self.quarantined += 1
                return
            except Abandoned:
                raise
            except NotLeader:
                self._restore(checkpoint)
                raise
            except Exception as e:
                self._restore(checkpoint)
                reason = f"{reason}; then its quarantine record failed too: {describe(e)}"
        log.error("dropped %s: %s", what, reason)
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.dropped.inc()

    def _restore(self, checkpoint: Checkpoint) -> None:
        """Memory back to what the database holds (the one loader, as at start), keeping the
        lists in progress: the failed batch never happened as far as state is concerned."""
        stored = self.store.run("reload state", lambda s: load_state(s, self.rules.config))
        self.auditor.reload(stored, checkpoint)
        if self.metrics is not None:
            self.metrics.images_now(self.inventory)

    def process(self, batch: Sequence[Item], now: datetime | None = None) -> None:
        """One batch through the auditor, and what it decided written in one transaction."""
        # The time the batch was observed, not when it is written: after a database outage,
        # violations and object state carry the times things happened.
        oldest, latest = observed_span(batch)
        now = now or latest
        commit = self.auditor.step(batch, now)
        if commit.wanted:
            self.want_probes(commit.wanted)  # only asks: the scheduler runs them on its own threads
        if commit.empty:
            return
        plans = [(c, self._notifications(c)) for c in commit.changes]
        self._commit(commit, plans)
        self.auditor.accept(commit)
        for change in commit.changes:
            v = change.violation
            log.info("violation %s %s: %s", v.rule, v.state, v.subject, extra={"rule": v.rule})
        self.committed_batches += 1
        if self.metrics is not None:
            self.metrics.ingest_delay.observe(max((self.clock.now() - oldest).total_seconds(), 0))
            self.metrics.ingest_batch.observe(len(batch))
            self.metrics.observe(
                commit.probes,
                commit.delta.transitions,
                commit.lags,
                commit.changes,
                self.led_active(),
            )
        if plans:
            self.on_commit()
        if commit.listed:
            self._freezer.after_list(now)

    def _notifications(self, change: Change) -> list[PlannedNotification]:
        if not change.notify:
            return []
        v = change.violation
        rule = self.rules.rules.get(v.rule)
        # What was decided, as data: each sink puts it in words when it delivers.
        payload = Alert.of(v, rule.remediation if rule else "").to_json()
        return [PlannedNotification(sink, payload) for sink in self.sinks]

    def _commit(
        self, commit: Commit, plans: list[tuple[Change, list[PlannedNotification]]]
    ) -> None:
        now = commit.now

        def write(session: Session) -> None:
            write_delta(session, commit.delta, now)
            write_stream_health(session, commit.stream_rows)
            write_probe_health(session, commit.probe_rows)
            write_measurements(session, commit.samples)
            write_episodes(session, commit.episodes)
            write_image_records(session, commit.delta.records, commit.delta.records_gone)
            for c, notes in plans:
                write_change(session, c, notes, now)

        transitions = len(commit.delta.transitions)
        self.store.run("history write", write, transitions, commit=True, scopes=self.led.led)


def resync(watched: Inventory, now: datetime, clusters: set[str]) -> list[Item]:
    """What a new leader writes to bring the history of these clusters up to what it has been
    watching: every kind it holds from a complete list, as a relist (a kind it has not finished
    listing is left to its list)."""
    items: list[Item] = []
    for cluster, kind in sorted(watched.complete_kinds()):
        if cluster not in clusters:
            continue
        objects = [
            Observed(k.namespace, k.name, known.uid, known.resource_version, dict(known.facts))
            for k in sorted(watched.keys_of(cluster, kind))
            if (known := watched.objects.get(k)) is not None
        ]
        items += [
            SnapshotStart(cluster, kind, "relist", now),
            SnapshotPage(cluster, kind, objects, "relist", now),
            SnapshotEnd(cluster, kind, "", "relist", now),
        ]
    return items
