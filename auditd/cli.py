"""The `auditd` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from auditd import durations, logs
from auditd.clock import SYSTEM as CLOCK
from auditd.config import Config, ConfigError, database_url_problem, load_config, redact_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("auditd")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

_DESCRIPTION = """\
auditd watches a Kubernetes DR pair replicating RBD volumes with Ceph mirroring, records every
state transition in a history database, evaluates DR rules, alerts Slack, and reports.

Start here:
  auditd demo                          the whole pipeline against two simulated clusters
  auditd config check -c auditd.toml   validate a config, print it with secrets redacted
  auditd run -c auditd.toml            run the daemon (stop with Ctrl-C or SIGTERM)
  auditd report --since 24h            what happened in the last day
  auditd history payments/ledger       one volume's timeline on both clusters
  auditd status                        is every cluster being watched right now?
"""

_REPORT_EPILOG = """\
examples:
  auditd report --since 24h
  auditd report --since 7d -o json | jq '.violations[] | select(.state=="firing")'
  auditd report --since 2026-11-25T08:00:00Z --until 2026-11-25T20:00:00Z
  auditd report --db postgresql://auditd@db/auditd --since 30m
  auditd report --since 7d --pair dr1-dr2 --rule split-brain --format markdown
  auditd report --since 24h -o html --output-file dr-report.html   # one file, offline

sections: summary by rule and severity (opened, resolved, open, MTTR), open incidents,
replication health per image (share of the window healthy, worst lag), failovers and
relocates (steps, RTO), audit blind spots, alert delivery (dead letters), incidents, timeline.
"""


# Where a config is found without -c: the image and the manifests set AUDITD_CONFIG, so that
# `kubectl exec deploy/auditd -- auditd report --since 24h` needs no flags.
CONFIG_ENV = "AUDITD_CONFIG"
DEFAULT_CONFIG = Path("/etc/auditd/auditd.toml")


def _add_config(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML config file (see config.example.toml); default: ${CONFIG_ENV}, else "
        f"{DEFAULT_CONFIG} when it exists" + ("" if required else ", else built-in defaults"),
    )
    p.set_defaults(config_required=required)


def config_path(given: Path | None, required: bool) -> Path | None:
    """-c, else $AUDITD_CONFIG, else /etc/auditd/auditd.toml if present."""
    if given is not None:
        return given
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    if required:
        raise ConfigError("-c", f"no config file: pass -c FILE or set ${CONFIG_ENV}")
    return None


def _add_db(p: argparse.ArgumentParser) -> None:
    _add_config(p)
    p.add_argument(
        "--db",
        metavar="URL",
        help="database URL, overriding the config (default: SQLite in ./auditd-data)",
    )


def _add_from_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from-db",
        action="store_true",
        help="judge the running daemon's stored state instead of looking again (for a runbook "
        "that must not probe Ceph): the verdicts `auditd explain` shows",
    )
    p.add_argument("--db", metavar="URL", help="with --from-db: the history, overriding the config")


def _add_output(p: argparse.ArgumentParser, formats: tuple[str, ...] = ("table", "json", "yaml"),
                help_: str | None = None) -> None:  # fmt: skip
    """``-o FORMAT`` as kubectl has it (``--format`` too): table for people, json and yaml for
    scripts."""

    def fmt(value: str) -> str:
        if value in formats:
            return value
        hint = "; to write a file, use --output-file" if "." in value or "/" in value else ""
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an output format (one of: {', '.join(formats)}){hint}"
        )

    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        type=fmt,
        choices=formats,
        default="table",
        metavar="FORMAT",
        help=help_ or f"{', '.join(formats)} (default: table)",
    )


def _emit(
    fmt: str, doc: Any, as_json: Callable[[Any], str], as_table: Callable[[Any], str]
) -> None:
    """Print ``doc`` in the chosen format: yaml is the json document, as YAML."""
    if fmt == "table":
        text = as_table(doc)
    else:
        text = as_json(doc)
        if fmt == "yaml":
            import yaml

            text = yaml.safe_dump(json.loads(text), sort_keys=False, allow_unicode=True)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


_CHECK_EPILOG = """\
exit status:
  0  every volume judged, nothing violated
  1  violations found
  2  bad config
  3  could not see everything (a cluster that does not answer, a kind that cannot be
     listed, a failing probe): never a pass
  4  a switch is in progress (both images demoted, records catching up with a role
     change, a DRPC in a progression): what it makes transient is not judged

One look cannot apply for-durations (nothing has lasted yet): each finding is reported as
it stands (a PVC on the image's secondary at once, lag against the RPO as it is now).

examples:
  auditd check -c auditd.toml
  auditd check -c auditd.toml --namespace payments -o json
  auditd check -c auditd.toml -o junit --output-file auditd-check.xml
"""


_PREFLIGHT_EPILOG = """\
exit status:
  0  GO: every volume (and application) can fail over to the target now
  1  NO-GO: at least one cannot (the reasons say why)
  2  bad config
  3  could not see everything (a cluster, a probe, a record not settled): never a go

examples:
  auditd preflight dr1-dr2 --to dr2 -c auditd.toml
  auditd preflight dr1-dr2 --namespace payments -o json
"""


class _Version(argparse.Action):
    """--version: the package's metadata read when asked, not at every start (see auditd/__init__)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show the version and exit")
        super().__init__(
            option_strings, argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS, **kwargs
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from auditd import __version__

        print(f"auditd {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditd",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        help="run the daemon until SIGTERM/SIGINT",
        description="Watch the configured clusters, record transitions, evaluate rules and "
        "deliver alerts. Applies database migrations on start. Stops cleanly on SIGTERM or "
        "SIGINT: queued events are committed before exit.",
    )
    _add_config(p, required=True)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and record everything, but only log notifications instead of sending them",
    )
    p.add_argument(
        "--db-wait",
        default="5m",
        metavar="DURATION",
        help="at start, wait this long for a history database that is down (retrying with "
        "backoff, /readyz false meanwhile) before giving up; 0 fails at once (default: 5m)",
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines as text or as one JSON object each (default: log_format in the config)",
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: log_level in the config",
    )

    p = sub.add_parser(
        "report",
        help="transitions and violations in a time window",
        description="Print the transitions and violations recorded in a window of history.",
        epilog=_REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(p)
    p.add_argument(
        "--since",
        default="24h",
        help="start: a duration before now (30m, 1h30m, 7d, 1w) or ISO 8601 (default: 24h)",
    )
    p.add_argument("--until", default="now", help="end: same forms as --since (default: now)")
    _add_output(
        p,
        ("table", "json", "yaml", "markdown", "html"),
        "table (terminal), json or yaml (docs/report-schema.md), markdown (for a postmortem), "
        "html (one self-contained file with a timeline chart); default: table",
    )
    p.add_argument("--pair", help="only this DR pair (clusters and pools need -c)")
    p.add_argument("--namespace", help="only volumes and objects of this Kubernetes namespace")
    p.add_argument("--rule", help="only incidents of this rule (see `auditd rules`)")
    p.add_argument(
        "--limit",
        type=int,
        default=1000,
        metavar="N",
        help="at most N incidents and the last N transitions of the timeline (default: 1000)",
    )
    p.add_argument("--output-file", type=Path, metavar="FILE", help="write here, not stdout")

    p = sub.add_parser(
        "check",
        help="one look now: can each volume fail over? (exit 0 ok, 1 violated, 3 not seen)",
        description="One look at every configured cluster (each kind listed once) and Ceph "
        "site (each pool's mirror status probed once), judged by the daemon's own rules: each "
        "volume's verdicts with their evidence, and the commands to verify them by hand with "
        "the real names filled in. No daemon and no database needed: for a CI pipeline after "
        "a deploy, a cron job, or a DR runbook right before failing over.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(p, required=True)
    p.add_argument("--pair", help="only this DR pair")
    p.add_argument("--namespace", help="only volumes whose PVC is in this namespace")
    _add_from_db(p)
    _add_output(
        p,
        ("table", "json", "junit"),
        "table (people), json (scripts), junit (CI: one test case per volume and rule); "
        "default: table",
    )
    p.add_argument("--output-file", type=Path, metavar="FILE", help="write here, not stdout")

    p = sub.add_parser(
        "preflight",
        help="go/no-go: can each volume of a pair fail over to a cluster now, and if not why",
        description="One look, as `auditd check` takes it, then for each volume with a PVC or "
        "VolumeReplication (and each application its VRG or DRPC groups): can it fail over (or "
        "relocate) to the target cluster right now? Each reason is named with its evidence and "
        "the command to verify it by hand: no switch in progress; no split brain; the target's "
        "image exists and is up+replaying; the last synced snapshot within the RPO; no PVC, PV "
        "or VR for it already on the target; its VolumeReplicationClass and StorageClass there; "
        "rbd-mirror up on both sites; with Ramen, the DRPC not in a progression and PeerReady.",
        epilog=_PREFLIGHT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(p, required=True)
    p.add_argument("pair", metavar="PAIR", help="the DR pair (see the config's [[pairs]])")
    p.add_argument(
        "--to",
        metavar="CLUSTER",
        help="the cluster to fail over to (default: each volume's current secondary)",
    )
    p.add_argument("--namespace", help="only volumes whose PVC is in this namespace")
    _add_from_db(p)
    _add_output(p)

    p = sub.add_parser(
        "history",
        help="the timeline of one volume on both clusters",
        description="Every recorded transition of one volume's PVC, PV, VolumeReplication and "
        "RBD image, on both clusters, with its source (list, watch, relist, resync, probe), "
        "plus the incidents and failovers it was part of. VOLUME is namespace/pvc or "
        "pool/image; objects are linked through history, so a deleted or failed-over volume "
        "keeps its whole story.",
        epilog="examples:\n  auditd history payments/ledger\n"
        "  auditd history replicapool/csi-vol-0001 --since 7d --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(p)
    p.add_argument("volume", metavar="VOLUME", help="namespace/pvc or pool/image")
    p.add_argument(
        "--since", help="start: a duration before now (30m, 1h30m, 7d) or ISO 8601 (default: all)"
    )
    p.add_argument("--until", help="end: same forms (default: now)")
    p.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="the last N transitions (1000)"
    )
    _add_output(p)

    p = sub.add_parser(
        "status",
        help="health of every watch stream and of the outbox",
        description="Show, per cluster and kind, whether auditd is watching (ok), cannot see "
        "the cluster (blind), or the kind's CRD is not installed (absent), with list, relist "
        "and error counts, as the running daemon last reported them. A daemon silent for 15s "
        "makes every state UNKNOWN. Exit status 1 when anything is blind or unknown.",
    )
    _add_db(p)
    _add_output(p)

    p = sub.add_parser(
        "rules",
        help="the rules, their config and how many are firing",
        description="List every built-in rule with its effective config (enabled, severity, "
        "for-duration, namespace scope) and the number of violations firing now.",
    )
    _add_db(p)
    _add_output(p)

    p = sub.add_parser(
        "explain",
        help="one volume's (or application's) view across both clusters and every verdict",
        description="Show the pair view of one mirrored volume (PVC, PV, VolumeReplication, "
        "its group and Ramen objects, and RBD image state on each cluster, from the stored "
        "state) and the verdict of every rule on it, with the evidence. VOLUME is pool/image "
        "(replicapool/csi-vol-0001) or namespace/pvc (shop/mysql-data); drpc/namespace/name "
        "shows a Ramen application instead: its DRPC, each of its volumes with its primary, "
        "lag and group, and the verdicts on them.",
    )
    p.add_argument("volume", metavar="VOLUME")
    _add_db(p)
    _add_output(p)

    p = sub.add_parser(
        "silence",
        help="silence notifications: add, list, expire",
        description="Silences, as in Alertmanager. A notification whose labels (rule, subject, "
        "severity, cluster, pair, namespace) match every matcher of an active silence is "
        "recorded as silenced and not sent; its later 'resolved' is silenced too.",
    )
    ssub = p.add_subparsers(dest="silence_command", metavar="SUBCOMMAND", required=True)
    sa = ssub.add_parser(
        "add",
        help="add a silence",
        description="Add a silence: a notification matching every --match is held back. "
        "Matchers as Alertmanager writes them: LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX, "
        "LABEL!~REGEX (a regex matches the whole value; = and != also take shell globs).",
        epilog="examples:\n"
        "  auditd silence add --match rule=secondary-not-replaying --match cluster=dr2 "
        '--for 2h --comment "rbd-mirror upgrade, CHG-1234"\n'
        "  auditd silence add --match 'rule=~rpo-exceeded|lag-disagreement' "
        "--match 'namespace!=prod-*' --for 1d --comment \"WAN maintenance\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sa.add_argument("--match", action="append", required=True, metavar="MATCHER")
    sa.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="e.g. 30m, 2h, 1h30m, 1w"
    )
    sa.add_argument("--comment", required=True)
    sa.add_argument("--author", default=os.environ.get("USER") or "unknown")
    _add_db(sa)
    sl = ssub.add_parser(
        "list", help="active silences (--all: ended ones too)", description="List silences."
    )
    sl.add_argument("--all", action="store_true")
    _add_output(sl)
    _add_db(sl)
    se = ssub.add_parser("expire", help="end a silence now", description="End a silence now.")
    se.add_argument("id", type=int)
    _add_db(se)

    p = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    dbsub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    up = dbsub.add_parser(
        "upgrade",
        help="apply migrations up to the newest schema",
        description="Apply the Alembic migrations up to head. Safe to run repeatedly.",
    )
    _add_db(up)
    pr = dbsub.add_parser(
        "prune",
        help="delete history older than the retention age, in batches",
        description="Delete transitions, samples and resolved violations (with their "
        "notifications) older than --keep (default: retention.keep from the config, 90d). "
        "Open incidents and failover episodes are never pruned, nor the newest transition of "
        "each object's field (its state at the start of any later report). Runs in small "
        "batches, so a running daemon keeps writing meanwhile; `auditd run` does this hourly.",
    )
    _add_db(pr)
    pr.add_argument("--keep", metavar="AGE", help="keep this much history: 30d, 90d, 2160h")

    p = sub.add_parser(
        "completion",
        help="shell completion: source <(auditd completion bash)",
        description="Print a completion script for bash or zsh, generated from this CLI: "
        "commands, subcommands, flags and their choices.",
        epilog="examples:\n  source <(auditd completion bash)   # in ~/.bashrc\n"
        "  source <(auditd completion zsh)    # in ~/.zshrc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=["bash", "zsh"])

    p = sub.add_parser("config", help="configuration tools", description="Configuration tools.")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    chk = csub.add_parser(
        "check",
        help="validate a config and print it with secrets redacted",
        description="Validate a config file. Prints the effective config (defaults filled in, "
        "secrets redacted) as JSON. Exit status 2 names the offending key on error.",
    )
    _add_config(chk, required=True)

    p = sub.add_parser(
        "demo",
        help="run the pipeline against two simulated clusters",
        description="Start two simulated Kubernetes clusters on 127.0.0.1 and run the daemon on "
        "SQLite against them (a PVC appears on the secondary: alert, then resolve). Then replay "
        "the hour before through the same pipeline on a simulated clock, with real Ceph "
        "captures: a healthy pair, a stray PVC, the rbd-mirror daemon dying (one grouped "
        "alert), a planned failover (no alarm, RTO recorded), a split brain (critical). Prints "
        "the alerts and the report.",
    )
    p.add_argument(
        "--data-dir", type=Path, help="keep the demo's history here (default: a temp dir)"
    )
    p.add_argument(
        "--slack",
        action="store_true",
        help="also send the alerts to Slack: needs $AUDITD_SLACK_TOKEN and $AUDITD_SLACK_CHANNEL "
        "(or $AUDITD_SLACK_WEBHOOK)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"auditd: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ArgumentError as e:  # a database URL SQLAlchemy cannot parse
        print(f"auditd: invalid database URL: {logs.describe(e)}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as e:
        print(f"auditd: history database unusable: {_db_error(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


def _db_error(e: SQLAlchemyError) -> str:
    """The driver's own first line (psycopg's says which host and why), never a traceback."""
    inner = getattr(e, "orig", None) or e
    return logs.describe(inner)


def _dispatch(args: argparse.Namespace) -> int:
    if hasattr(args, "config"):
        args.config = config_path(args.config, args.config_required)
    if args.command == "completion":
        from auditd import completion

        script = completion.bash if args.shell == "bash" else completion.zsh
        sys.stdout.write(script(build_parser()))
        return EXIT_OK
    if args.command == "config":
        return _config_check(args.config)
    if args.command == "demo":
        logs.configure("WARNING")
        from auditd.sim.demo import run_demo

        return run_demo(args.data_dir, args.slack)
    if args.command == "run":
        config = load_config(args.config)
        overrides = {"log_format": args.log_format, "log_level": args.log_level}
        config = config.model_copy(update={k: v for k, v in overrides.items() if v})
        try:
            db_wait = durations.parse(args.db_wait)
        except ValueError as e:
            print(f"auditd: --db-wait: {e}", file=sys.stderr)
            return EXIT_USAGE
        return _run(config, args.dry_run, db_wait)
    if args.command == "check":
        return _check(load_config(args.config), args)
    if args.command == "preflight":
        return _preflight(load_config(args.config), args)
    config = load_config(getattr(args, "config", None))
    logs.configure("WARNING", config.log_format)
    url = args.db or config.effective_database_url()
    problem = database_url_problem(url)
    if problem:
        print(f"auditd: database URL {redact_url(url)!r}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "db" and args.db_command == "prune":
        return _prune(url, config, args.keep)
    if args.command == "db":
        from auditd.store.migrate import upgrade

        upgrade(url)
        print(f"database at head: {redact_url(url)}")
        return EXIT_OK
    if args.command == "report":
        return _report(url, config, args)
    if args.command == "status":
        return _status(url, args.format, config.probe.interval * config.probe.stale_after_intervals)
    if args.command == "history":
        return _history(url, args)
    if args.command in ("rules", "explain"):
        return _rules_or_explain(url, config, args)
    if args.command == "silence":
        return _silence(url, args)
    raise AssertionError(args.command)


def _check(config: Config, args: argparse.Namespace) -> int:
    logs.configure("WARNING", config.log_format)
    from auditd.check import judge, output
    from auditd.rules.engine import configured_rules

    configured_rules(config)  # unknown rule ids are config errors here too
    pairs = [p.name for p in config.pairs]
    if args.pair is not None and args.pair not in pairs:
        raise ConfigError("--pair", f"no pair {args.pair!r} (configured: {', '.join(pairs)})")
    found = _seen(config, args)
    if found is None:
        return EXIT_ERROR
    seen, at, unseen = found
    result = judge.judge(config, seen, at, unseen, args.pair, args.namespace)
    render = {"table": output.to_table, "json": output.to_json, "junit": output.to_junit}
    text = render[args.format](result)
    if args.output_file is not None:
        args.output_file.write_text(text, encoding="utf-8")
        print(f"wrote {args.output_file}: {output.EXIT_MEANING[result.exit_code]}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return result.exit_code


def _preflight(config: Config, args: argparse.Namespace) -> int:
    logs.configure("WARNING", config.log_format)
    from auditd.check import output, preflight
    from auditd.rules.engine import configured_rules

    configured_rules(config)
    pairs = {p.name: p for p in config.pairs}
    if args.pair not in pairs:
        raise ConfigError("PAIR", f"no pair {args.pair!r} (configured: {', '.join(pairs)})")
    if args.to is not None and args.to not in pairs[args.pair].clusters:
        clusters = ", ".join(pairs[args.pair].clusters)
        raise ConfigError("--to", f"{args.to!r} is not a cluster of {args.pair} ({clusters})")
    found = _seen(config, args)
    if found is None:
        return EXIT_ERROR
    seen, at, unseen = found
    result = preflight.preflight(
        config, seen, at, unseen, args.to, args.pair, args.namespace, not args.from_db
    )
    _emit(args.format, result, output.preflight_json, output.preflight_table)
    return result.exit_code


def _seen(config: Config, args: argparse.Namespace) -> tuple[Any, datetime, tuple[str, ...]] | None:
    """What check and preflight judge: a fresh look, or (--from-db) the running daemon's state
    from its history, judged now as `explain` judges it. None after saying why not."""
    from auditd.check import judge, look
    from auditd.check.stored import assess_stored
    from auditd.store.db import session_factory

    if not args.from_db:
        looked = look.look(config)
        return judge.assess(config, looked), looked.at, tuple(looked.unseen)

    url = args.db or config.effective_database_url()
    problem = database_url_problem(url)
    if problem:
        print(f"auditd: database URL {redact_url(url)!r}: {problem}", file=sys.stderr)
        return None
    engine = _open_history(url)
    if engine is None:
        return None
    now = CLOCK.now()
    try:
        with session_factory(engine)() as s:
            seen, unseen = assess_stored(s, config, now)
    finally:
        engine.dispose()
    return seen, now, unseen


def _config_check(path: Path) -> int:
    config = load_config(path)
    from auditd.rules.engine import configured_rules

    configured_rules(config)  # unknown rule ids are config errors too
    # Secrets that come from files or the environment are read and checked here too (the
    # redacted print below only says whether each is set).
    config.effective_database_url()
    config.slack.token()
    config.slack.webhook()
    config.ha.heartbeat_url()
    problems = _kubeconfig_problems(config)
    if problems:
        for line in problems:
            print(f"auditd: config error: {line}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(config.redacted(), indent=2))
    print(
        f"config OK: {len(config.clusters)} cluster(s), {len(config.pairs)} pair(s)",
        file=sys.stderr,
    )
    return EXIT_OK


def _kubeconfig_problems(config: Config) -> list[str]:
    """Load each cluster's kubeconfig and context as the daemon will (no connection is made):
    a typo here would otherwise be a blind cluster at run time."""
    from auditd.sources.kube.client import ClusterUnavailable, api_client_for

    problems = []
    for i, cluster in enumerate(config.clusters):
        try:
            api_client_for(cluster)
        except ClusterUnavailable as e:
            problems.append(f"clusters[{i}] ({cluster.name}): {e}")
    return problems


class Progress:
    """One line on stderr that says what a long command is doing, only on a terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, step: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            sys.stderr.write(f"\r\033[K{self.what}: {step} ({elapsed:.1f}s)")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _report(url: str, config: Config, args: argparse.Namespace) -> int:
    from auditd.report.html import to_html
    from auditd.report.query import Filters, load_report
    from auditd.report.render import to_json, to_markdown, to_table
    from auditd.report.window import parse_time
    from auditd.store.db import session_factory

    now = CLOCK.now()
    try:
        start, end = parse_time(args.since, now), parse_time(args.until, now)
    except ValueError as e:
        print(f"auditd: {e}", file=sys.stderr)
        return EXIT_USAGE
    if end <= start:
        print("auditd: --until must be after --since", file=sys.stderr)
        return EXIT_USAGE
    filters = Filters(pair=args.pair, namespace=args.namespace, rule=args.rule)
    if args.pair:
        pair = next((p for p in config.pairs if p.name == args.pair), None)
        if pair is None and config.pairs:
            known = ", ".join(p.name for p in config.pairs)
            print(f"auditd: no pair {args.pair!r} in the config (pairs: {known})", file=sys.stderr)
            return EXIT_USAGE
        if pair is not None:
            filters = replace(filters, clusters=tuple(pair.clusters), pools=tuple(pair.pools))
    engine = _open_history(url)
    if engine is None:
        return EXIT_ERROR
    progress = Progress("report")
    try:
        with session_factory(engine)() as s:
            data = load_report(s, start, end, filters, max(1, args.limit), progress)
    finally:
        progress.done()
        engine.dispose()
    render = {"json": to_json, "markdown": to_markdown, "html": to_html}.get(args.format)
    if args.format == "yaml":
        import yaml

        text = yaml.safe_dump(json.loads(to_json(data)), sort_keys=False, allow_unicode=True)
    else:
        text = render(data) if render else to_table(data)
    text = text if text.endswith("\n") else text + "\n"
    if args.output_file:
        args.output_file.write_text(text, encoding="utf-8")
        print(f"report written to {args.output_file}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _prune(url: str, config: Config, keep_arg: str | None) -> int:
    from auditd.store.db import session_factory
    from auditd.store.retention import Pruner

    try:
        keep = durations.parse(keep_arg) if keep_arg else config.retention.keep
    except ValueError as e:
        print(f"auditd: --keep: {e}", file=sys.stderr)
        return EXIT_USAGE
    if keep <= timedelta(0):
        print("auditd: retention is off (keep = 0): nothing to prune", file=sys.stderr)
        return EXIT_OK
    engine = _open_history(url)
    if engine is None:
        return EXIT_ERROR
    progress = Progress("prune")
    try:
        pruner = Pruner(session_factory(engine), config.retention.batch_size, timedelta(0))
        pruner.progress = progress
        now = CLOCK.now()
        result = pruner.prune(now - keep, now - min(keep, config.retention.keep_samples))
    finally:
        progress.done()
        engine.dispose()
    done = ", ".join(f"{n} {t}" for t, n in sorted(result.counts.items()) if n) or "nothing"
    print(
        f"pruned history before {result.cutoff:%Y-%m-%d %H:%M} UTC: {done} ({result.seconds:.1f}s)"
    )
    return EXIT_OK


def _history(url: str, args: argparse.Namespace) -> int:
    from auditd.report.history import history_json, history_text, load_history, resolve
    from auditd.report.window import parse_time
    from auditd.store.db import session_factory

    now = CLOCK.now()
    try:
        start = parse_time(args.since, now) if args.since else None
        end = parse_time(args.until, now) if args.until else None
    except ValueError as e:
        print(f"auditd: {e}", file=sys.stderr)
        return EXIT_USAGE
    engine = _open_history(url)
    if engine is None:
        return EXIT_ERROR
    try:
        with session_factory(engine)() as s:
            vol = resolve(s, args.volume)
            if vol is None:
                print(
                    f"auditd: no volume {args.volume!r} in the history (give namespace/pvc or "
                    "pool/image, as `auditd report` shows them)",
                    file=sys.stderr,
                )
                return EXIT_ERROR
            doc = load_history(s, vol, start, end, max(1, args.limit))
    finally:
        engine.dispose()
    _emit(args.format, doc, history_json, history_text)
    return EXIT_OK


def _open_history(url: str) -> Engine | None:
    """An engine on an existing auditd history, or None after saying what to do. Reading
    creates nothing: a SQLite file that is not there is no history."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from auditd.store.db import make_engine, normalize_url

    u = make_url(normalize_url(url))
    missing = u.get_backend_name() == "sqlite" and not Path(u.database or "").is_file()
    engine = None if missing else make_engine(url)
    if engine is not None and inspect(engine).has_table("transitions"):
        return engine
    if engine is not None:
        engine.dispose()
    print(
        f"auditd: no auditd history in {redact_url(url)} (run `auditd db upgrade` or "
        "`auditd run` first)",
        file=sys.stderr,
    )
    return None


def _status(url: str, fmt: str, stale_probe: timedelta) -> int:
    from auditd.report.status import load_status, status_json, status_table
    from auditd.store.db import session_factory

    engine = _open_history(url)
    if engine is None:
        return EXIT_ERROR
    now = CLOCK.now()
    try:
        with session_factory(engine)() as s:
            doc = load_status(s, now, stale_probe)
    finally:
        engine.dispose()
    _emit(fmt, doc, status_json, lambda d: status_table(d, now))
    return EXIT_OK if doc["healthy"] else EXIT_ERROR


def _rules_or_explain(url: str, config: Config, args: argparse.Namespace) -> int:
    from auditd.report.explain import as_json, explain_doc, explain_text, rules_doc, rules_table
    from auditd.store.db import session_factory

    engine = _open_history(url)
    if engine is None:
        return EXIT_ERROR
    try:
        with session_factory(engine)() as s:
            if args.command == "rules":
                doc = rules_doc(s, config)
                _emit(args.format, doc, as_json, rules_table)
                return EXIT_OK
            found = explain_doc(s, config, args.volume, CLOCK.now())
    finally:
        engine.dispose()
    if found is None:
        hint = (
            "no pairs configured: pass the daemon's config with -c"
            if not config.pairs
            else "use pool/image, namespace/pvc or drpc/namespace/name"
        )
        print(f"auditd: no volume {args.volume!r} ({hint})", file=sys.stderr)
        return EXIT_ERROR
    _emit(args.format, found, as_json, explain_text)
    return EXIT_OK


def _silence(url: str, args: argparse.Namespace) -> int:
    from auditd.alerts.silences import parse_matcher
    from auditd.matchers import unknown_names
    from auditd.report.render import table
    from auditd.rules.catalogue import BUILTIN_RULES
    from auditd.store.db import session_factory
    from auditd.store.silence_store import add_silence, expire_silence, list_silences

    now = CLOCK.now()
    engine = _open_history(url)
    if engine is None:
        return EXIT_ERROR
    try:
        with session_factory(engine).begin() as s:
            if args.silence_command == "add":
                try:
                    matchers = [parse_matcher(m) for m in args.match]
                    duration = durations.parse(args.duration)
                    known = {r.id for r in BUILTIN_RULES}
                    unknown = unknown_names(matchers, "rule", known)
                    if unknown:
                        raise ValueError(
                            f"no rule {', '.join(map(repr, unknown))}: the silence would match "
                            f"nothing (rules: {', '.join(sorted(known))})"
                        )
                except ValueError as e:
                    print(f"auditd: {e}", file=sys.stderr)
                    return EXIT_USAGE
                sid = add_silence(s, matchers, now, now + duration, args.author, args.comment)
                print(f"silence {sid} until {(now + duration).isoformat(timespec='seconds')}")
                return EXIT_OK
            if args.silence_command == "expire":
                if not expire_silence(s, args.id, now):
                    print(f"auditd: no active silence {args.id}", file=sys.stderr)
                    return EXIT_ERROR
                print(f"silence {args.id} expired")
                return EXIT_OK
            rows: list[dict[str, Any]] = [
                {
                    "id": x.id,
                    "matchers": [str(m) for m in x.matchers],
                    "starts_at": x.starts_at.isoformat(),
                    "ends_at": x.ends_at.isoformat(),
                    "expired_at": x.expired_at.isoformat() if x.expired_at else None,
                    "active": x.active(now),
                    "author": x.author,
                    "comment": x.comment,
                }
                for x in list_silences(s, now, include_ended=args.all)
            ]
    finally:
        engine.dispose()
    _emit(
        args.format,
        rows,
        lambda r: json.dumps(r, indent=2),
        lambda rs: table(
            ["ID", "ACTIVE", "MATCHERS", "ENDS", "AUTHOR", "COMMENT"],
            [
                [
                    str(r["id"]),
                    "yes" if r["active"] else "no",
                    " ".join(r["matchers"]),
                    r["ends_at"][:19],
                    r["author"],
                    r["comment"],
                ]
                for r in rs
            ],
        ),
    )
    return EXIT_OK


def _run(config: Config, dry_run: bool = False, db_wait: timedelta = timedelta(0)) -> int:
    from auditd.daemon import census, collector
    from auditd.daemon.malloc import fix_mmap_threshold, limit_arenas
    from auditd.daemon.runner import Daemon
    from auditd.rules.engine import configured_rules

    logs.configure(config.log_level, config.log_format)
    configured_rules(config)
    if limit_arenas():  # before any thread allocates
        log.debug("malloc: at most two arenas (MALLOC_ARENA_MAX overrides)")
    if fix_mmap_threshold():
        log.debug("malloc: blocks of 256 KiB or more mmapped (MALLOC_MMAP_THRESHOLD_ overrides)")
    try:
        log.debug("gc: thresholds %s (%s overrides)", collector.tune(), collector.ENV)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if frames := census.start_tracing(os.environ.get(census.TRACE_ENV)):
            log.warning("tracing allocations (%d frames): slower, and more memory", frames)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    daemon = Daemon(config, dry_run=dry_run)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()
        daemon.interrupt()

    allocations = census.Allocations()

    def _on_census(_signum: int, _frame: FrameType | None) -> None:
        # WARNING: an operator asked for it, so it shows at any log level.
        try:
            taken = census.take(None, allocations)
        except (census.CensusError, OSError) as e:  # a handler's exception would hit any line
            log.warning("census: failed: %s", e)  # not "census {": soak.py reads those
            return
        log.warning("census %s", json.dumps(census.summary(taken)))

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGUSR2, _on_census)
    try:
        daemon.start(db_wait)
    except Exception as e:
        if stop.is_set():
            return EXIT_OK  # asked to stop while waiting for the database
        log.error("cannot start: %s", logs.describe(e))
        return EXIT_ERROR
    try:
        while not stop.wait(1.0):
            pass
    finally:
        daemon.stop()
    if daemon.unwritten:
        log.error(
            "exiting with %d items not written to the history database; the next start "
            "reconciles them from a fresh list of every cluster (recorded late)",
            daemon.unwritten,
        )
        return EXIT_ERROR
    return EXIT_OK
