"""Silences: matching, the notify stage recording instead of sending, and the CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from auditd.alerts.message import Alert
from auditd.alerts.outbox import Dispatcher
from auditd.alerts.silences import Silence, parse_matcher, silenced_by
from auditd.alerts.sinks.slack import SlackSink
from auditd.cli import main
from auditd.clock import SYSTEM
from auditd.config import AlertsConfig
from auditd.rules.lifecycle import step
from auditd.rules.model import Finding
from auditd.sim.fakeslack import FakeSlack
from auditd.store.db import make_engine, session_factory
from auditd.store.migrate import upgrade
from auditd.store.models import NotificationRow, SilenceRow
from auditd.store.silence_store import add_silence, list_silences
from auditd.store.writer import PlannedNotification, write_change

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_matchers_read_as_alertmanager_writes_them() -> None:
    """=, !=, =~, !~; quoted values; a regex anchored at both ends; = and != also globs."""
    labels = {"rule": "rpo-exceeded", "cluster": "dr2", "namespace": None, "subject": "dr2/x"}
    cases = {
        "rule=rpo-exceeded": True,
        'rule="rpo-exceeded"': True,
        "rule = rpo-exceeded": True,
        "rule=rpo": False,
        "rule=rpo-*": True,
        "rule!=rpo-*": False,
        "cluster!=dr1": True,
        "rule=~rpo-exceeded|lag-disagreement": True,
        "rule=~rpo": False,  # anchored: a regex matches the whole value, not a part
        "rule=~.*exceed.*": True,
        "rule!~split-brain|rpo-.*": False,
        'namespace=""': True,  # a label the alert does not carry reads as empty
        'namespace!=""': False,
        "subject=~dr2/.+": True,
        "subject=dr2/*": True,
    }
    for text, expected in cases.items():
        assert parse_matcher(text).matches(labels) is expected, text
    assert str(parse_matcher('rule=~"rpo-.*"')) == "rule=~rpo-.*"
    assert str(parse_matcher('subject="a b"')) == 'subject="a b"'
    for text in ("rule=~rpo-.*", 'subject="a \\"b\\""', "namespace!=team-*"):
        m = parse_matcher(text)
        assert parse_matcher(str(m)) == m, text  # what list prints reads back the same
    for bad, says in (
        ("rule", "LABEL=VALUE"),
        ("colour=red", "no label 'colour'"),
        ("rule=", 'rule=""'),
        ("rule=~((", "not a regex"),
        ("=x", "LABEL=VALUE"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            parse_matcher(bad)


def test_a_silence_holds_while_active_and_every_matcher_matches() -> None:
    s = Silence(
        1,
        (parse_matcher("rule=secondary-*"), parse_matcher("cluster!=dr1")),
        T,
        T + timedelta(hours=2),
        "ana",
        "upgrade",
    )
    labels = {"rule": "secondary-not-replaying", "cluster": "dr2", "namespace": None}
    assert s.matches(labels) and not s.matches({**labels, "cluster": "dr1"})
    assert silenced_by([s], labels, T + timedelta(hours=1)) is s
    assert silenced_by([s], labels, T + timedelta(hours=3)) is None  # ended


def test_silences_stored_before_operators_still_match_as_globs(tmp_path: Path) -> None:
    """Rows written before matchers had operators hold [label, glob]: they keep meaning
    label=glob. A row that cannot be read (edited by hand) silences nothing and says so."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        for matchers in (
            [["rule", "secondary-*"], ["cluster", "dr2"]],
            [["rule", "=~", "(("]],
        ):
            s.add(
                SilenceRow(
                    matchers={"matchers": matchers},
                    starts_at=T,
                    ends_at=T + timedelta(hours=2),
                    author="ana",
                    comment="from an older auditd",
                    created_at=T,
                )
            )
    with session_factory(engine)() as s:
        [old] = list_silences(s, T + timedelta(minutes=1))
    engine.dispose()
    assert old.matchers == (parse_matcher("rule=secondary-*"), parse_matcher("cluster=dr2"))
    assert old.matches({"rule": "secondary-not-replaying", "cluster": "dr2"})


def test_silenced_notifications_are_recorded_not_sent(tmp_path: Path, slack: FakeSlack) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    now = SYSTEM.now()

    def fire(rule: str, cluster: str) -> int:
        f = Finding(rule, f"{cluster}/x", "warning", "s", cluster, "p", {"namespace": "app"})
        change = step(None, f, timedelta(0), now)
        assert change is not None
        with sessions.begin() as s:
            return write_change(
                s,
                change,
                [PlannedNotification("slack", Alert.of(change.violation, "").to_json())],
                now,
            )

    silenced_vid = fire("secondary-not-replaying", "dr2")
    fire("split-brain", "dr1")
    with sessions.begin() as s:
        add_silence(
            s,
            [parse_matcher("rule=secondary-*"), parse_matcher("cluster=dr2")],
            now - timedelta(minutes=1),
            now + timedelta(hours=2),
            "ana",
            "rbd-mirror upgrade",
        )
    d = Dispatcher(
        sessions,
        {"slack": SlackSink(SecretStr(slack.token), "#dr-alerts", slack.base_url, 5)},
        AlertsConfig(group_wait=timedelta(0)),
    )
    assert d.drain_once(now=now) == 1
    assert [m["text"].split(":")[0] for m in slack.messages] == ["FIRING [warning] split-brain"]
    with sessions() as s:
        rows = {n.violation_id: n for n in s.scalars(select(NotificationRow))}
    assert rows[silenced_vid].status == "silenced" and "ana: rbd-mirror upgrade" in (
        rows[silenced_vid].last_error or ""
    )
    # Its "resolved" is silenced too, even after the silence ends: nobody saw it fire.
    from auditd.store.load import load_open_violations

    with sessions() as s:
        active = load_open_violations(s)[("secondary-not-replaying", "dr2/x")]
    resolved = step(active, None, timedelta(0), now)
    assert resolved is not None
    with sessions.begin() as s:
        write_change(
            s,
            resolved,
            [PlannedNotification("slack", Alert.of(resolved.violation, "").to_json())],
            now,
        )
    d.drain_once(now=now + timedelta(hours=3))
    assert len(slack.messages) == 1
    engine.dispose()


def test_silence_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "silence",
                "add",
                "--db",
                url,
                "--match",
                "rule=pvc-on-secondary",
                "--match",
                "namespace=team-*",
                "--match",
                "cluster!~dr1|dr3",
                "--for",
                "2h",
                "--comment",
                "migration",
                "--author",
                "ana",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("silence 1 until ")
    assert main(["silence", "list", "--db", url, "--format", "json"]) == 0
    [s] = json.loads(capsys.readouterr().out)
    assert (
        s["matchers"] == ["rule=pvc-on-secondary", "namespace=team-*", "cluster!~dr1|dr3"]
        and s["author"] == "ana"
        and s["active"]
    )
    assert main(["silence", "expire", "--db", url, "1"]) == 0
    assert main(["silence", "expire", "--db", url, "1"]) == 1
    capsys.readouterr()
    assert main(["silence", "list", "--db", url, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert (
        main(
            [
                "silence",
                "add",
                "--db",
                url,
                "--match",
                "colour=red",
                "--for",
                "1h",
                "--comment",
                "x",
            ]
        )
        == 2
    )
    capsys.readouterr()
    # A misspelt rule id would silence nothing: refused, naming it (a glob is not checked).
    typo = ["silence", "add", "--db", url, "--match", "rule=split-brian", "--for", "1h"]
    assert main([*typo, "--comment", "x"]) == 2
    err = capsys.readouterr().err
    assert "no rule 'split-brian'" in err and len(err.strip().splitlines()) == 1, err
    glob = ["silence", "add", "--db", url, "--match", "rule=split-*", "--for", "1h"]
    assert main([*glob, "--comment", "x"]) == 0
