"""Configuration: a TOML file validated by pydantic. Unknown keys are errors.

Secrets are never in the file itself: the Slack token comes from an environment variable or a
file, and is held as a ``SecretStr`` so that printing the config cannot leak it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from auditd import durations
from auditd.alerts.inhibit import DEFAULT_RULES, InhibitRule
from auditd.sources.kube.kinds import BY_NAME

# Read as Kubernetes writes durations (1h30m, 7d); shown the same way by `config show`.
Duration = Annotated[
    timedelta,
    BeforeValidator(durations.parse),
    PlainSerializer(durations.compact, when_used="json"),
]
# The labels every alert carries (see alerts/render.py), hence the ones it can be grouped by.
GroupLabel = Literal["pair", "rule", "cluster", "namespace", "severity", "subject"]
# Names end up in Slack messages, report rows and DB keys: keep them boring.
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CephAccess(Strict):
    """How auditd reaches this cluster's Ceph to probe RBD mirroring."""

    # direct: the rbd CLI on auditd's host, with this ceph.conf and a cephx user's keyring.
    # exec: rbd inside the Rook toolbox pod, through the Kubernetes exec API (pods/exec RBAC).
    transport: Literal["direct", "exec"] = "direct"
    conf: Path | None = None
    user: str = Field("auditd", pattern=r"^[A-Za-z0-9._-]+$")  # cephx id: client.<user>
    keyring: Path | None = None  # None: what ceph.conf says
    # The rbd command; tests and the simulator replace it with a replay of real captures.
    rbd_command: list[str] = ["rbd"]
    # exec: where the toolbox pod runs, and how to find it.
    namespace: str = "rook-ceph"
    toolbox_selector: str = "app=rook-ceph-tools"
    container: str | None = None

    @model_validator(mode="after")
    def _direct_needs_conf(self) -> CephAccess:
        if self.transport == "direct" and self.conf is None:
            raise ValueError("transport 'direct' needs conf (the path of a ceph.conf)")
        return self


class ClusterConfig(Strict):
    name: Name
    kubeconfig: Path | None = None  # None: in-cluster service account, then ~/.kube/config
    context: str | None = None
    # A hub (Ramen's: DRPolicy, DRCluster, DRPlacementControl) holds no volumes; a pair names it.
    role: Literal["primary", "secondary", "hub"]
    ceph: CephAccess | None = None  # None: no RBD probes for this cluster
    # Its name in Ramen (its DRCluster, what a DRPC's preferredCluster and failoverCluster say),
    # when that is not ``name``.
    ramen_name: str | None = None

    @model_validator(mode="after")
    def _hub_is_not_probed(self) -> ClusterConfig:
        if self.role == "hub" and self.ceph is not None:
            raise ValueError("a hub holds no RBD images: it has no ceph access to probe")
        return self


class PairConfig(Strict):
    name: Name
    clusters: tuple[Name, Name]
    pools: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]] = ["replicapool"]
    # PVCs of these storage classes must be replicated: one with no VolumeReplication on its
    # primary is an unprotected volume, even when its image was never enabled for mirroring.
    mirrored_storage_classes: list[str] = []
    # The hub cluster (role "hub") whose Ramen DRPCs protect this pair's applications, if any.
    hub: Name | None = None


_NAMESPACE = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class WatchConfig(Strict):
    # Ask the server to end each watch after this long; we resume from the last resourceVersion.
    server_timeout: Duration = timedelta(minutes=5)
    # No byte for this long (bookmarks included) means the connection is dead.
    read_timeout: Duration = timedelta(seconds=90)
    connect_timeout: Duration = timedelta(seconds=10)
    page_size: int = Field(500, ge=1, le=10000)
    backoff_initial: Duration = timedelta(milliseconds=800)
    backoff_max: Duration = timedelta(seconds=30)
    # Only these namespaces (empty: all), minus the excluded ones. Cluster-scoped kinds
    # (PersistentVolume, VolumeReplicationClass) are not filtered.
    namespaces: list[_NAMESPACE] = []
    exclude_namespaces: list[_NAMESPACE] = []
    # A label selector per kind (its name as the watch catalogue has it), applied by the API
    # server.
    label_selectors: dict[str, str] = {}
    # How often to look again for an optional CRD (Ramen, Rook) that is not installed.
    crd_recheck: Duration = timedelta(minutes=5)
    # A cluster/kind that cannot be watched for this long is an audit blind spot.
    blind_spot_after: Duration = timedelta(minutes=5)
    # A stream disconnected for this long is "reconnecting": that cluster's objects are its
    # last-known state, so verdicts weighing it against its peer wait (UNKNOWN) until it is
    # back. Longer than a routine reconnect (the server ending a watch, a dropped connection).
    stale_after: Duration = timedelta(seconds=10)

    @field_validator("label_selectors")
    @classmethod
    def _selectors_name_watched_kinds(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(BY_NAME))
        if unknown:
            raise ValueError(
                f"not a watched kind: {', '.join(unknown)} (one of {', '.join(BY_NAME)})"
            )
        return v


class ProbeConfig(Strict):
    # `rbd mirror pool status POOL --verbose` per cluster and pool, this often.
    interval: Duration = timedelta(seconds=60)
    # Random extra delay per run, so probes of many pools do not fire in lockstep.
    jitter: Duration = timedelta(seconds=5)
    timeout: Duration = timedelta(seconds=20)
    # Pool info and snapshot schedule status change rarely: probe them this often.
    slow_interval: Duration = timedelta(minutes=10)
    # At most this many rbd commands at once per cluster: a hung site never takes the
    # threads that probe the other one.
    max_concurrent: int = Field(4, ge=1, le=64)
    # A status probe out of turn, when the rules need fresher storage evidence (a PVC just
    # appeared, records not yet settled after a role change): at most once per pool this
    # often. 0 turns probes on demand off (interval only).
    on_demand_gap: Duration = timedelta(seconds=5)
    # An image status whose last_update is older than this many intervals is stale (a killed
    # rbd-mirror keeps reporting its last state for a while). Never less than three rbd-mirror
    # refreshes (30 s each): a healthy record is up to 30 s old whatever the probe interval.
    stale_after_intervals: int = Field(3, ge=1)
    # Lag and bytes/s are sampled per image at most this often (not a transition each cycle);
    # a sample's lag is the worst since the previous one. /metrics has every probe's lag.
    sample_every: Duration = timedelta(hours=1)
    # A probe failing for this long is an audit blind spot (an alert): until it succeeds,
    # nothing about that site's images is known.
    blind_after: Duration = timedelta(minutes=2)

    @property
    def record_stale_after(self) -> timedelta:
        return max(self.interval * self.stale_after_intervals, 3 * MIRROR_REFRESH)


# rbd-mirror rewrites every image's status record this often (measured on Ceph Pacific).
MIRROR_REFRESH = timedelta(seconds=30)


DATABASE_URL_ENV = "AUDITD_DATABASE_URL"
_DATABASE_SCHEMES = ("sqlite", "postgresql", "sqlite+pysqlite", "postgres", "postgresql+psycopg")


def url_problem(url: str, schemes: tuple[str, ...], host: bool = True) -> str | None:
    """What is wrong with a URL (scheme, host, port), in words that never quote it: it may
    carry a password or a token. None when it is usable."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        named = sorted({s.split("+")[0] for s in schemes}, key=schemes.index)
        return f"must be a URL starting with {' or '.join(s + '://' for s in named)}"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if host and not parts.hostname:
        return "has no host"
    return None


def database_url_problem(url: str) -> str | None:
    # No host is fine (sqlite:///PATH; postgresql:///db is a Unix socket); a bad port is not.
    problem = url_problem(url, _DATABASE_SCHEMES, host=False)
    return f"{problem} (e.g. sqlite:///PATH, postgresql://USER@HOST:5432/DB)" if problem else None


def http_url_problem(url: str) -> str | None:
    return url_problem(url, ("http", "https"))


def _read_secret(env: str, file: Path | None, key: str) -> SecretStr | None:
    """A secret from a file when one is configured, else from an environment variable."""
    if file is not None:
        try:
            text = file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(key, f"cannot read: {e.strerror}") from None
        return SecretStr(text) if text else None
    value = os.environ.get(env, "").strip()
    return SecretStr(value) if value else None


class SlackConfig(Strict):
    enabled: bool = True
    token_env: str = "AUDITD_SLACK_TOKEN"
    token_file: Path | None = None
    channel: str | None = None
    channel_env: str = "AUDITD_SLACK_CHANNEL"
    # Only tests and air-gapped proxies change this.
    base_url: str = "https://slack.com/api/"
    timeout: Duration = timedelta(seconds=10)
    # Without a bot token: an incoming-webhook URL (a secret), from this env var or file.
    # Messages then go to the webhook's channel, without threads or in-place updates.
    webhook_env: str = "AUDITD_SLACK_WEBHOOK"
    webhook_file: Path | None = None

    def webhook(self) -> SecretStr | None:
        url = _read_secret(self.webhook_env, self.webhook_file, "slack.webhook_file")
        problem = http_url_problem(url.get_secret_value()) if url is not None else None
        if problem:
            where = "slack.webhook_file" if self.webhook_file else f"${self.webhook_env}"
            raise ConfigError(where, problem)
        return url

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        problem = http_url_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    def token(self) -> SecretStr | None:
        return _read_secret(self.token_env, self.token_file, "slack.token_file")

    def resolved_channel(self) -> str | None:
        return self.channel or os.environ.get(self.channel_env) or None


class HttpSinkConfig(Strict):
    url: SecretStr  # may carry a token: redacted wherever auditd prints the config
    timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _http(cls, v: SecretStr) -> SecretStr:
        problem = http_url_problem(v.get_secret_value())
        if problem:
            raise ValueError(problem)
        return v


class InhibitRuleConfig(Strict):
    """While an alert matching every source matcher fires, alerts matching every target
    matcher with the same values of the ``equal`` labels are held back (alerts/inhibit.py)."""

    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[GroupLabel] = []

    @model_validator(mode="after")
    def _matchers_read(self) -> InhibitRuleConfig:
        self.rule()  # a matcher that does not read fails the config, saying which and why
        return self

    def rule(self) -> InhibitRule:
        return InhibitRule.of(
            self.source_matchers, self.target_matchers, self.equal, get_args(GroupLabel)
        )


class AlertsConfig(Strict):
    # A transient failure (connection error, 5xx, 429) is retried with backoff from
    # retry_initial to retry_max until the message is give_up_after old; a permanent one
    # (invalid_auth, channel_not_found, a webhook's 4xx) dead-letters at once. max_attempts, if
    # set, also caps the attempts.
    max_attempts: int | None = Field(None, ge=1)
    retry_initial: Duration = timedelta(seconds=2)
    retry_max: Duration = timedelta(minutes=5)
    give_up_after: Duration = timedelta(hours=24)
    # While a sink fails, its oldest waiting message is retried this often whatever its own
    # backoff says; once one goes through, everything waiting for that sink goes at once.
    sink_recheck: Duration = timedelta(seconds=15)
    # Also print every notification to stdout (the demo uses this).
    console: bool = False
    # A generic JSON webhook, and an Alertmanager (POST /api/v2/alerts) to route through.
    webhook: HttpSinkConfig | None = None
    alertmanager: HttpSinkConfig | None = None
    # Grouping, as in Alertmanager: alerts with equal values of these labels are one incident,
    # one message and one thread. ["subject"] gives one incident per violation.
    group_by: list[GroupLabel] = ["pair", "rule"]
    # A new incident waits this long for more alerts before its first message...
    group_wait: Duration = timedelta(seconds=10)
    # ...and then announces changes (new, resolved, escalated members) at most this often...
    group_interval: Duration = timedelta(minutes=1)
    # ...and reminds in its thread when it is still firing and nothing changed for this long.
    repeat_interval: Duration = timedelta(hours=4)
    # Inhibition, as Alertmanager's inhibit_rules; setting any replaces auditd's two defaults
    # (a blind cluster holds back its other alerts; an unhealthy pool its per-volume ones).
    inhibit_rules: list[InhibitRuleConfig] = Field(
        default_factory=lambda: [InhibitRuleConfig(**r) for r in DEFAULT_RULES]
    )

    @field_validator("group_by")
    @classmethod
    def _group_by_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError('group_by needs at least one label (["subject"]: no grouping)')
        return v


class RuleConfig(Strict):
    enabled: bool = True
    severity: Literal["info", "warning", "critical"] | None = None
    for_: Duration | None = Field(None, alias="for")
    # Only objects in these namespaces (empty: all) can violate this rule.
    namespaces: list[str] = []
    # rpo-exceeded only: a fixed RPO, instead of (or tighter than) 2x/3x the VRC interval.
    rpo: Duration | None = None
    # lag-disagreement only: how far VR lastSyncTime and Ceph may disagree.
    tolerance: Duration | None = None
    # dr-window-overrun only: how long a failover or relocate may take.
    deadline: Duration | None = None


class OpsConfig(Strict):
    # host:port for /metrics, /healthz and /readyz; "" turns the endpoint off. In a pod,
    # "0.0.0.0:9464" lets the kubelet and Prometheus reach it.
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if v and not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}", v):
            raise ValueError('expected host:port, like "0.0.0.0:9464" (or "" to turn it off)')
        return v


class HaConfig(Strict):
    """Replicas on one PostgreSQL history (see docs/operations.md#scaling-and-ha)."""

    # Who leads each DR pair. "postgres": advisory locks in the history database. "lease": a
    # coordination.k8s.io Lease per pair as well (`kubectl get leases` shows the holders); the
    # advisory lock still fences every write. "auto": "lease" when running in a pod.
    election: Literal["auto", "lease", "postgres"] = "auto"
    # Where the Leases live: this kubeconfig and context, else the pod's service account.
    kubeconfig: Path | None = None
    context: str | None = None
    # Default: the pod's own namespace.
    lease_namespace: str | None = None
    # A Lease not renewed for this long is free. A killed replica's Leases are taken at once
    # (its database session is gone); this wait is for a live replica that handed a pair over
    # and could not clear its Lease. An API server that does not answer deposes nobody.
    lease_duration: Duration = Field(timedelta(seconds=15), gt=timedelta(seconds=2))
    # A dead man's switch outside Prometheus: the replica that sends alerts GETs this URL
    # every heartbeat_every (healthchecks.io, Opsgenie/PagerDuty heartbeats, Uptime Kuma push).
    # The URL usually carries a token: it comes from this env var or file, never the config.
    heartbeat_url_env: str = "AUDITD_HEARTBEAT_URL"
    heartbeat_url_file: Path | None = None
    heartbeat_every: Duration = timedelta(minutes=1)

    def heartbeat_url(self) -> SecretStr | None:
        url = _read_secret(self.heartbeat_url_env, self.heartbeat_url_file, "ha.heartbeat_url_file")
        if url is not None and not url.get_secret_value().startswith(("http://", "https://")):
            # Not the value: it is a secret.
            raise ConfigError("ha.heartbeat_url", "must be an http:// or https:// URL")
        return url


class RetentionConfig(Strict):
    # History older than this is pruned: transitions, samples, and the violations (with their
    # notifications) that resolved before it. Open incidents and failover episodes are kept.
    # 0 keeps everything.
    keep: Duration = timedelta(days=90)
    # Lag and throughput samples are many (one per image per probe.sample_every: 10,000
    # mirrored images every hour is 240,000 rows a day): kept for a shorter time.
    keep_samples: Duration = timedelta(days=14)
    # Pruning runs this often, deleting this many rows per short transaction, with a pause
    # between batches so the ingest writer is never kept waiting.
    every: Duration = timedelta(hours=1)
    batch_size: int = Field(1000, ge=100)
    pause: Duration = timedelta(milliseconds=200)


class Config(Strict):
    data_dir: Path = Path("./auditd-data")
    # The history database; default SQLite in data_dir. A URL with a password belongs in a
    # Secret: database_url_file (a mounted file) or $AUDITD_DATABASE_URL, never a ConfigMap.
    database_url: str | None = None
    database_url_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    clusters: list[ClusterConfig] = []
    pairs: list[PairConfig] = []
    watch: WatchConfig = WatchConfig()
    probe: ProbeConfig = ProbeConfig()
    slack: SlackConfig = SlackConfig()
    alerts: AlertsConfig = AlertsConfig()
    rules: dict[str, RuleConfig] = {}
    ops: OpsConfig = OpsConfig()
    retention: RetentionConfig = RetentionConfig()
    ha: HaConfig = HaConfig()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        problem = database_url_problem(v) if v else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("clusters")
    @classmethod
    def _unique_clusters(cls, v: list[ClusterConfig]) -> list[ClusterConfig]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate cluster names: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _pairs_reference_clusters(self) -> Config:
        by_name = {c.name: c for c in self.clusters}
        seen: dict[str, str] = {}
        for i, pair in enumerate(self.pairs):
            a, b = pair.clusters
            for n in (a, b):
                if n not in by_name:
                    raise ValueError(f"pairs[{i}].clusters: unknown cluster {n!r}")
                if n in seen:
                    raise ValueError(
                        f"pairs[{i}].clusters: cluster {n!r} is already in pair {seen[n]!r}"
                    )
                seen[n] = pair.name
            if {by_name[a].role, by_name[b].role} != {"primary", "secondary"}:
                raise ValueError(
                    f"pairs[{i}].clusters: a pair needs one primary and one secondary cluster"
                )
            if pair.hub is not None:
                hub = by_name.get(pair.hub)
                if hub is None:
                    raise ValueError(f"pairs[{i}].hub: unknown cluster {pair.hub!r}")
                if hub.role != "hub":
                    raise ValueError(
                        f"pairs[{i}].hub: cluster {pair.hub!r} has role {hub.role!r}, not 'hub'"
                    )
        served = {p.hub for p in self.pairs}
        idle = [c.name for c in self.clusters if c.role == "hub" and c.name not in served]
        if idle:
            raise ValueError(
                f"clusters: hub {', '.join(map(repr, idle))} serves no pair "
                "(name it as a pair's hub, or remove it)"
            )
        return self

    def effective_database_url(self) -> str:
        """database_url, else database_url_file / $AUDITD_DATABASE_URL, else SQLite."""
        if self.database_url:
            return self.database_url
        secret = _read_secret(DATABASE_URL_ENV, self.database_url_file, "database_url_file")
        if secret is not None:
            url = secret.get_secret_value()
            problem = database_url_problem(url)
            if problem:
                where = "database_url_file" if self.database_url_file else f"${DATABASE_URL_ENV}"
                raise ConfigError(where, problem)
            return url
        return f"sqlite:///{(self.data_dir / 'auditd.db').resolve()}"

    def pair_of(self, cluster: str) -> PairConfig | None:
        return next((p for p in self.pairs if cluster in p.clusters), None)

    def pair_named(self, name: str) -> PairConfig:
        return self.pairs_by_name[name]

    @cached_property
    def pairs_by_name(self) -> dict[str, PairConfig]:
        # Asked for by every volume view built: a lookup, not a scan.
        return {p.name: p for p in self.pairs}

    def cluster_named_by_ramen(self, pair: PairConfig, ramen_name: str) -> str | None:
        """The pair's cluster Ramen calls ``ramen_name`` (its ramen_name, else its name)."""
        return next(
            (n for n in pair.clusters if (self.cluster(n).ramen_name or n) == ramen_name), None
        )

    def pairs_of(self, cluster: str) -> list[PairConfig]:
        """The pairs a cluster belongs to: its own (a DR cluster), or those it is the hub of."""
        return [p for p in self.pairs if cluster in p.clusters or cluster == p.hub]

    def cluster(self, name: str) -> ClusterConfig:
        return self.clusters_by_name[name]

    @cached_property
    def clusters_by_name(self) -> dict[str, ClusterConfig]:
        # Asked for on every rule evaluation of every volume: a lookup, not a scan.
        return {c.name: c for c in self.clusters}

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data, safe to print."""
        data = self.model_dump(mode="json", by_alias=True)
        data["database_url"] = redact_url(self.effective_database_url())
        token = None
        try:
            token = self.slack.token()
        except ConfigError:
            pass
        data["slack"]["token"] = "**********" if token else None
        webhook = None
        with contextlib.suppress(ConfigError):
            webhook = self.slack.webhook()
        data["slack"]["webhook"] = "**********" if webhook else None
        for sink in ("webhook", "alertmanager"):
            if data["alerts"].get(sink):
                data["alerts"][sink]["url"] = "**********"
        data["slack"]["channel"] = self.slack.resolved_channel()
        return data


class ConfigError(Exception):
    """A config problem, naming the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


# Every way libpq (and so psycopg) takes a credential: the URL's userinfo, and the keys below
# in a URL's query string or in a "key=value" connection string.
_CREDENTIAL_KEYS = "password|passwd|pwd|sslpassword|sslkey_password|passfile_password"
_KEYWORD_CREDENTIAL = re.compile(
    rf"(?i)((?:^|[?&;\s])(?:{_CREDENTIAL_KEYS})\s*=\s*)('(?:[^'\\]|\\.)*'|[^&;\s]*)"
)


def redact_url(url: str) -> str:
    """A database URL or connection string with every credential hidden: the password of the
    userinfo (even one holding '@' or ':'), and password-like keys in the query string or in a
    libpq keyword string."""
    scheme, sep, rest = url.partition("://")
    if sep:
        end = len(rest)
        for stop in "/?#":
            i = rest.find(stop)
            if i != -1:
                end = min(end, i)
        # The last '@' before the path ends the userinfo (an unencoded '@' in a password).
        at = rest.rfind("@", 0, end) if "@" in rest[:end] else -1
        if at != -1:
            user, colon, _ = rest[:at].partition(":")
            rest = f"{user}:***{rest[at:]}" if colon else rest
        url = f"{scheme}://{rest}"
    return _KEYWORD_CREDENTIAL.sub(lambda m: f"{m.group(1)}***", url)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(path: Path | None) -> Config:
    """Load and validate; raise ConfigError naming the first offending key."""
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except OSError as e:
        raise ConfigError(str(path), f"cannot read config file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(_loc(tuple(err["loc"])), msg) from None
