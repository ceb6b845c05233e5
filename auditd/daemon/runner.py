"""Wire the pipeline together and run it until asked to stop.

Threads: one list+watch per cluster and kind, one ingest writer, one outbox dispatcher, and an
APScheduler background scheduler for timers. Shutdown order matters: stop the sources, let the
writer commit everything queued, then stop delivery; what is not yet delivered stays in the
outbox for the next start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from auditd.alerts.outbox import Dispatcher
from auditd.alerts.sinks.base import Sink
from auditd.alerts.sinks.build import build_sinks
from auditd.clock import SYSTEM, Clock
from auditd.config import Config, ConfigError, redact_url
from auditd.daemon import malloc
from auditd.daemon.heartbeat import Heartbeat
from auditd.daemon.ingest import Ingestor
from auditd.daemon.items import Downtime, HealthReport, Tick
from auditd.daemon.leader import Leadership, PgLeadership, identity
from auditd.daemon.lease import Leases
from auditd.daemon.metrics import Metrics
from auditd.daemon.ops_http import OpsServer, readiness
from auditd.daemon.scopes import GLOBAL, Scopes
from auditd.inventory.facts import EXTRACTORS, facts_of
from auditd.inventory.inventory import Inventory
from auditd.logs import Spell, describe
from auditd.rules.engine import RuleEngine
from auditd.rules.lifecycle import Active
from auditd.sources.kube import kinds
from auditd.sources.kube.client import ClusterUnavailable, api_client
from auditd.sources.kube.health import StreamHealth
from auditd.sources.kube.watch import ListWatcher
from auditd.sources.rbd.probe import PoolProber
from auditd.sources.rbd.transport import transport_for
from auditd.store.checkpoint import Checkpointer
from auditd.store.db import make_engine, session_factory
from auditd.store.errors import NotLeader, database_down
from auditd.store.load import load_state
from auditd.store.migrate import upgrade
from auditd.store.models import NotificationRow, StreamHealthRow
from auditd.store.retention import Pruner
from auditd.store.writer_lock import WriterLock, sqlite_path

log = logging.getLogger(__name__)

# Seconds between stream-health samples; `auditd status` calls a daemon silent for 3x this
# long "not reporting".
HEALTH_INTERVAL = 5


def _probe_executor(cluster: str) -> str:
    return f"probes:{cluster}"


class _NoOverlapWarnings(logging.Filter):
    """APScheduler warns each time a job is skipped because its last run is still going: for
    a hung site that is every interval. The metric and the probe's failure spell say it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("maximum number of running instances" in text and "PoolProber." in text)


def _scheduler_now() -> datetime:
    """APScheduler runs on the wall clock whatever auditd's clock says: "run this job now" must
    be said in its terms. Never an audit time."""
    return datetime.now(UTC)  # noqa: TID251


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def leases_for(cfg: Config, clock: Clock) -> Leases | None:
    """The Leases replicas elect with, when running in a cluster (or told to: ha.election)."""
    ha = cfg.ha
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if ha.election == "postgres" or (ha.election == "auto" and not in_pod):
        return None
    namespace = ha.lease_namespace or os.environ.get("POD_NAMESPACE")
    if namespace is None and SERVICE_ACCOUNT_NAMESPACE.exists():
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    try:
        if not namespace:
            raise ConfigError("ha.lease_namespace", "not set, and not running in a pod")
        try:
            api = api_client(ha.kubeconfig, ha.context)
        except ClusterUnavailable as e:
            raise ConfigError("ha.kubeconfig", f"no credentials for the Leases: {e}") from None
    except ConfigError as e:
        if ha.election == "lease":
            raise
        # "auto" in a pod without a token (automountServiceAccountToken: false): the advisory
        # locks elect alone, which is safe; say so once.
        log.warning("leader election by PostgreSQL alone, without Leases (%s)", e)
        return None
    return Leases(api, namespace, identity(), ha.lease_duration, clock)


def describe_leadership(leadership: Leadership, scopes: list[str]) -> str:
    """For /readyz: what this replica writes, and who writes the rest (it is ready to take
    those over: it watches them too)."""
    if any(leadership.state(s) == "unknown" for s in scopes):
        return "cannot tell who leads (no database session for the election)"
    led = [s for s in scopes if leadership.state(s) == "lead"]
    if len(led) == len(scopes):
        return "leads everything"
    others = [f"{s} ({leadership.holder(s) or 'unknown'})" for s in scopes if s not in led]
    head = f"leads {', '.join(led)}" if led else "standby"
    return f"{head}; follows {', '.join(others)}"


class Daemon:
    def __init__(
        self,
        config: Config,
        sinks: dict[str, Sink] | None = None,
        dry_run: bool = False,
        clock: Clock = SYSTEM,
    ) -> None:
        self.config = config
        self.clock = clock
        self._sinks_override = sinks
        self.dry_run = dry_run
        self.health: dict[tuple[str, str], StreamHealth] = {}
        self._health_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._probers: dict[tuple[str, str], PoolProber] = {}
        self._watchers: list[ListWatcher] = []
        self._started = False
        self._stopping = threading.Event()
        # The last error while start-up waits for the history database (None: not waiting).
        self.waiting_for_history: str | None = "not opened yet"
        self.unwritten = 0
        self._writer_lock: WriterLock | None = None
        self.checkpointer: Checkpointer | None = None

    def start(self, db_wait: timedelta = timedelta(0)) -> None:
        """Open the history (waiting up to ``db_wait`` for a database that is down, with /readyz
        saying so: in Kubernetes a slow database is not worth a CrashLoopBackOff), then start
        every thread."""
        cfg = self.config
        unread = [k.kind for k in kinds.ALL_KINDS if k.kind not in EXTRACTORS]
        if unread:
            # A kind watched without its facts would be stored as nothing and judged as absent.
            raise RuntimeError(
                f"no facts extractor for watched kind(s) {', '.join(unread)}: "
                "add one to inventory/facts.py EXTRACTORS (the fields whose change matters)"
            )
        url = cfg.effective_database_url()
        log.info("history database: %s", redact_url(url))
        database = sqlite_path(url)
        # A config problem (no namespace for the Leases) says so before anything starts.
        leases = leases_for(cfg, self.clock) if database is None else None
        heartbeat_url = cfg.ha.heartbeat_url()
        if database is not None:
            self._writer_lock = WriterLock(database)
            self._writer_lock.acquire()
        self.metrics = Metrics(self._outbox_counts)
        self.metrics.gc.start()
        self.ops: OpsServer | None = None
        if cfg.ops.listen:
            self.ops = OpsServer(cfg.ops.listen, self.metrics.registry, self.alive, self.ready)
            self.ops.start()
        try:
            inventory, rules, active, last_heartbeat = self._open_history(url, db_wait)
        except BaseException:
            self.metrics.gc.stop()
            if self.ops is not None:
                self.ops.stop()
            if self._writer_lock is not None:
                self._writer_lock.release()
            raise
        log.info(
            "loaded %d objects and %d open violations from history",
            len(inventory.objects),
            len(active),
        )
        sinks = (
            self._sinks_override
            if self._sinks_override is not None
            else build_sinks(cfg, dry_run=self.dry_run)
        )
        self.scopes = Scopes.of(cfg)
        self.leadership: Leadership = (
            PgLeadership(
                url,
                self.scopes.units,
                on_change=self._leading_changed,
                ready=self._ready_to_lead,
                clock=self.clock,
                leases=leases,
            )
            if database is None
            else Leadership()
        )
        self.leadership.fence(self.sessions)
        self.leadership.start()
        self._leading_changed(frozenset(s for s in self.scopes.all if self.leadership.leads(s)))
        self.dispatcher = Dispatcher(
            self.sessions, sinks, cfg.alerts, self.clock, lambda: self.leadership.leads(GLOBAL)
        )
        self.metrics.images_now(inventory)
        self.metrics.quarantine_now(inventory.objects)
        self.ingestor = Ingestor(
            self.sessions,
            inventory,
            rules,
            active,
            sorted(sinks),
            self.dispatcher.wake,
            metrics=self.metrics,
            clock=self.clock,
            leadership=self.leadership,
            want_probes=self.probe_soon,
        )
        self.metrics.firing_now(self.ingestor.led_active())
        self.metrics.ingest_queue.set_function(self.ingestor.queue.qsize)
        if self.checkpointer is not None:
            self.checkpointer.start()
        self._spawn("ingest", self.ingestor.run)
        self._spawn("outbox", self.dispatcher.run)
        started = self.clock.now()
        if last_heartbeat is not None:
            if started - last_heartbeat > cfg.watch.blind_spot_after:
                # While auditd itself was not running it saw nothing: the longest blind spot of
                # all, and the one an SRE most needs in the report.
                log.warning(
                    "auditd was not running since %s: recorded as a blind spot", last_heartbeat
                )
            self.ingestor.put(Downtime([c.name for c in cfg.clusters], last_heartbeat, started))
        for cluster in cfg.clusters:
            for kind in kinds.kinds_for(cluster.role):
                health = StreamHealth(
                    cluster.name, kind.kind, _clock=self.clock, _on_change=self.report_health
                )
                self.health[(cluster.name, kind.kind)] = health
                self._watchers.append(
                    ListWatcher(
                        cluster,
                        kind,
                        cfg.watch,
                        self.ingestor.put,
                        health,
                        normalize=facts_of,
                        label_selector=cfg.watch.label_selectors.get(kind.kind),
                        clock=self.clock,
                    )
                )
        # Every stream is listing before any page is taken in: nothing is judged on a cluster
        # until each of its kinds has been listed (at a first start, half the volumes' PVCs were
        # in before their VolumeReplications, each a pending unprotected-volume episode).
        self.report_health()
        for watcher in self._watchers:
            self._spawn(f"watch-{watcher.cluster.name}-{watcher.kind.plural}", watcher.run)
        if not cfg.clusters:
            log.warning("no clusters configured: nothing to watch")
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(2),
                # One pool of threads per cluster: a site whose `rbd` hangs to its timeout
                # (a lost site) holds only its own threads, never the survivor's.
                **{
                    _probe_executor(c.name): ThreadPoolExecutor(cfg.probe.max_concurrent)
                    for c in cfg.clusters
                    if c.ceph is not None
                },
            },
        )
        # A probe still running at its next turn (a hung site) is skipped: counted, and told
        # by the probe's own failure spell, not one APScheduler warning per turn.
        self.scheduler.add_listener(self._probe_overlapped, EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler.scheduler").addFilter(_NoOverlapWarnings())
        self._schedule_probes()
        self.scheduler.add_job(
            lambda: self.ingestor.put(Tick(self.clock.now())),
            "interval",
            seconds=5,
            id="rule-timers",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.add_job(
            self.report_health,
            "interval",
            seconds=HEALTH_INTERVAL,
            id="stream-health",
            coalesce=True,
            max_instances=1,
            next_run_time=_scheduler_now(),  # `auditd status` has an answer from the start
        )
        if cfg.retention.keep.total_seconds() > 0:
            self._pruner = Pruner(
                self.sessions, cfg.retention.batch_size, cfg.retention.pause, self._stopping
            )
            self.scheduler.add_job(
                self.prune,
                "interval",
                seconds=cfg.retention.every.total_seconds(),
                id="retention",
                coalesce=True,
                max_instances=1,
                next_run_time=_scheduler_now() + timedelta(minutes=1),  # after start-up settles
            )
        self.scheduler.add_job(
            malloc.trim,
            "interval",
            seconds=malloc.TRIM_EVERY,
            id="malloc-trim",
            coalesce=True,
            max_instances=1,
        )
        if heartbeat_url is not None:
            self.heartbeat = Heartbeat(heartbeat_url, self._worth_a_heartbeat)
            self.scheduler.add_job(
                self.heartbeat.beat,
                "interval",
                seconds=cfg.ha.heartbeat_every.total_seconds(),
                id="heartbeat",
                coalesce=True,
                max_instances=1,
            )
        self.scheduler.start()
        self._started = True
        log.info("auditd running: %d cluster(s), %d pair(s)", len(cfg.clusters), len(cfg.pairs))

    def _open_history(
        self, url: str, wait: timedelta
    ) -> tuple[Inventory, RuleEngine, dict[tuple[str, str], Active], datetime | None]:
        """Migrate and load the rule state, retrying with backoff while the database is down,
        for at most ``wait``. A database that refuses (bad credentials, a broken schema) or
        stays down longer raises."""
        deadline = time.monotonic() + wait.total_seconds()
        spell = Spell(log, "history database at start-up")
        delay = 1.0
        while True:
            engine = None
            try:
                upgrade(url)
                engine = make_engine(url, background_checkpoints=True)
                sessions = session_factory(engine)
                with sessions() as s:
                    inventory, rules, active = load_state(s, self.config)
                    last_heartbeat = s.scalar(select(func.max(StreamHealthRow.reported_at)))
                self.engine, self.sessions = engine, sessions
                # SQLite: the writer's commits leave the log to this thread (store/checkpoint.py).
                if engine.dialect.name == "sqlite":
                    self.checkpointer = Checkpointer(engine)
                self.waiting_for_history = None
                spell.succeeded(time.monotonic())
                return inventory, rules, active, last_heartbeat
            except SQLAlchemyError as e:
                if engine is not None:
                    engine.dispose()
                left = deadline - time.monotonic()
                if not database_down(e) or left <= 0 or self._stopping.is_set():
                    raise
                self.waiting_for_history = describe(e)
                spell.failed(f"{describe(e)}; waiting up to {left:.0f}s more", time.monotonic())
                self._stopping.wait(min(delay, left))
                delay = min(delay * 2, 30.0)

    def _ready_to_lead(self) -> bool:
        """Ready to be handed a pair by another replica: every watch has listed once."""
        return self._started and all(h.synced or h.absent for h in self.health.values())

    def _leading_changed(self, led: frozenset[str]) -> None:
        """From the election thread: the writer takes over (or steps down) at its next batch;
        a tick makes that now rather than at the next event."""
        for scope in self.scopes.all:
            self.metrics.leader.labels(scope).set(1 if scope in led else 0)
        ingestor = getattr(self, "ingestor", None)
        if ingestor is not None and not self._stopping.is_set():
            ingestor.put(Tick(self.clock.now()))
        dispatcher = getattr(self, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()

    def interrupt(self) -> None:
        """A signal arrived: end a start-up that is waiting for the database."""
        self._stopping.set()

    def probe_soon(self, wanted: set[tuple[str, str]]) -> None:
        """Status probes now, for pools whose evidence the rules want fresher (from the ingest
        thread): each at most once per probe.on_demand_gap, never beside one in flight."""
        gap = self.config.probe.on_demand_gap.total_seconds()
        if not gap or self._stopping.is_set():
            return
        for cluster, pool in sorted(wanted):
            prober = self._probers.get((cluster, pool))
            if prober is None:
                continue
            job_id = f"rbd-probe_now:{cluster}:{pool}"
            if self.scheduler.get_job(job_id) is not None:
                continue  # already asked for, and not run yet
            try:
                self.scheduler.add_job(
                    prober.probe_status,
                    "date",
                    run_date=_scheduler_now() + timedelta(seconds=prober.on_demand_delay(gap)),
                    id=job_id,
                    executor=_probe_executor(cluster),
                    misfire_grace_time=int(gap) + 1,
                )
            except Exception as e:  # a scheduler shutting down: the interval probes go on
                log.debug("probe on demand not scheduled: %s", e)
                return
            self.metrics.probes_on_demand.labels(cluster, pool).inc()

    def _probe_overlapped(self, event: JobEvent) -> None:
        if str(event.job_id).startswith("rbd-"):
            _, cluster, pool = [*str(event.job_id).split(":", 2), "", ""][:3]
            self.metrics.probe_overlaps.labels(cluster, pool).inc()

    def _schedule_probes(self) -> None:
        """One status job per cluster and pool, and a slower info job. coalesce and
        max_instances=1: a slow cluster gets at most one probe in flight, never a pile-up."""
        cfg = self.config
        now = _scheduler_now()
        for pair in cfg.pairs:
            for name in pair.clusters:
                cluster = cfg.cluster(name)
                if cluster.ceph is None:
                    continue
                transport = transport_for(cluster)
                for pool in pair.pools:
                    prober = PoolProber(
                        name,
                        pool,
                        transport,
                        cfg.probe.timeout.total_seconds(),
                        self.ingestor.put,
                        self.clock,
                    )
                    self._probers[(name, pool)] = prober
                    for job, every in (
                        (prober.probe_status, cfg.probe.interval),
                        (prober.probe_info, cfg.probe.slow_interval),
                    ):
                        self.scheduler.add_job(
                            job,
                            "interval",
                            seconds=every.total_seconds(),
                            jitter=cfg.probe.jitter.total_seconds() or None,
                            id=f"rbd-{job.__name__}:{name}:{pool}",
                            executor=_probe_executor(name),
                            coalesce=True,
                            max_instances=1,
                            misfire_grace_time=int(every.total_seconds()),
                            next_run_time=now,
                        )

    def prune(self) -> None:
        """Retention, in the scheduler's thread: batches, so ingest never waits long."""
        if not self.leadership.leads(GLOBAL):
            return
        try:
            now, keep = self.clock.now(), self.config.retention
            self._pruner.prune(now - keep.keep, now - keep.keep_samples)
        except SQLAlchemyError as e:  # the next run tries again; history is never at risk here
            log.warning("pruning history failed: %s; next try in %s", describe(e),
                        self.config.retention.every)  # fmt: skip
        except Exception:
            log.exception("pruning history failed")

    def _worth_a_heartbeat(self) -> tuple[bool, str]:
        """Ping the heartbeat receiver only while alerts would go out from here."""
        if not self.leadership.leads(GLOBAL):
            return False, ""  # another replica sends alerts, and pings
        alive, why = self.alive()
        if not alive:
            return False, why
        if self.ingestor.store.failing_since is not None:
            return False, f"history database not writable: {self.ingestor.store.error}"
        return True, "ok"

    def alive(self) -> tuple[bool, str]:
        dead = [
            t.name for t in self._threads if t.name in ("ingest", "outbox") and not t.is_alive()
        ]
        return (False, f"thread(s) stopped: {', '.join(dead)}") if dead else (True, "ok")

    def ready(self) -> tuple[bool, str]:
        if self.waiting_for_history is not None:
            return False, f"waiting for the history database: {self.waiting_for_history}"
        if not self._started:
            return False, "starting"  # the streams are not all registered yet
        ingestor = getattr(self, "ingestor", None)
        if ingestor is not None and ingestor.store.failing_since is not None:
            self.metrics.ready.set(0)
            since = ingestor.store.failing_since.isoformat(timespec="seconds")
            return False, f"history database not writable since {since}: {ingestor.store.error}"
        ok, reason = readiness(h.snapshot() for h in self.health.values())
        alive, why = self.alive()
        ok, reason = (ok and alive), (reason if alive else why)
        leadership = getattr(self, "leadership", None)
        if ok and leadership is not None:
            # Not knowing who leads, a replica can neither write nor take over: not ready.
            ok = all(leadership.state(s) != "unknown" for s in self.scopes.all)
            reason = f"{reason}; {describe_leadership(leadership, self.scopes.all)}"
        self.metrics.ready.set(1 if ok else 0)
        return ok, reason

    def _outbox_counts(self) -> dict[str, int]:
        with self.sessions() as s:
            rows = s.execute(
                select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
            ).all()
        return {str(status): int(n) for status, n in rows}

    def report_health(self) -> None:
        # Taken and queued under one lock: a report taken before a stream's first list ended
        # is never queued after the one its end triggered (the stream would be listing again).
        with self._health_lock:
            now, streams = self.clock.now(), [h.snapshot() for h in self.health.values()]
            watch = self.config.watch
            self.metrics.streams(streams, now, watch.blind_spot_after, watch.stale_after)
            self.ingestor.put(HealthReport(now, streams))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait_synced(self, timeout: float = 30.0) -> bool:
        """True once every watch has handed over its first complete list (or found no CRD)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(h.synced or h.absent for h in self.health.values()):
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop in order; ``unwritten`` then says how many queued items were not recorded."""
        if not self._started:
            return
        self._started = False
        log.info("stopping: flushing queued events")
        self._stopping.set()  # a prune in progress ends after its current batch
        self.scheduler.shutdown(wait=False)
        if self.ops is not None:
            self.ops.stop()
        for w in self._watchers:
            w.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.name.startswith("watch-"):
                t.join(max(0.1, deadline - time.monotonic()))
        self.report_health()  # the last word: every stream is now disconnected
        self.ingestor.stop()
        self._join("ingest", deadline)
        self.dispatcher.stop()
        self._join("outbox", deadline)
        # One last delivery pass for what the final batch announced; the rest waits in the outbox.
        try:
            if self.leadership.leads(GLOBAL):
                self.dispatcher.drain_once(deadline=deadline)
        except (SQLAlchemyError, NotLeader) as e:
            log.warning("no final delivery pass (%s): undelivered alerts wait in the outbox",
                        describe(e))  # fmt: skip
        if self.checkpointer is not None:
            self.checkpointer.stop()  # after one last checkpoint of all that was written
        self.engine.dispose()
        self.unwritten = self.ingestor.abandoned + self.ingestor.queue.qsize()
        self.leadership.stop()
        self.metrics.gc.stop()
        if self._writer_lock is not None:
            self._writer_lock.release()
        log.info("stopped")

    def _join(self, name: str, deadline: float) -> None:
        for t in self._threads:
            if t.name == name:
                t.join(max(0.1, deadline - time.monotonic()))
                if t.is_alive():
                    log.warning("%s did not finish before the shutdown deadline", name)
