"""Durations read one way everywhere (issue 21): config, --since, silence --for, --db-wait and
AUDITD_CLOCK_SHIFT all take what Kubernetes writes, and every command prints them one way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditd import durations
from auditd.cli import main
from auditd.clock import shift_from_env
from auditd.config import parse_config
from auditd.report.window import parse_time

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        ("45", timedelta(seconds=45)),
        (30, timedelta(seconds=30)),
    ],
)
def test_every_form_kubernetes_writes_is_read(text: str | int, expected: timedelta) -> None:
    assert durations.parse(text) == expected
    assert durations.parse(durations.compact(expected)) == expected  # compact reads back


@pytest.mark.parametrize("text", ["", "soon", "5x", "1h30", "-5m", True, None])
def test_what_is_not_a_duration_says_so_with_examples(text: object) -> None:
    with pytest.raises(ValueError, match=r"not a duration.*"):
        durations.parse(text)


def test_a_clock_shift_may_go_back() -> None:
    assert shift_from_env("-90m") == timedelta(minutes=-90)
    assert shift_from_env("365d") == timedelta(days=365)
    with pytest.raises(ValueError, match="AUDITD_CLOCK_SHIFT"):
        shift_from_env("a year")


@pytest.mark.parametrize(
    ("d", "text"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=330), "5m 30s"),
        (timedelta(hours=2, minutes=5), "2h 5m"),
        (timedelta(days=3, hours=4, minutes=2), "3d 4h"),
        (timedelta(seconds=-90), "-1m 30s"),
    ],
)
def test_printed_one_way(d: timedelta, text: str) -> None:
    assert durations.human(d) == text


def test_since_takes_compound_durations_and_weeks() -> None:
    assert parse_time("1h30m", NOW) == NOW - timedelta(minutes=90)
    assert parse_time("1w", NOW) == NOW - timedelta(weeks=1)
    with pytest.raises(ValueError, match="not a time: 'yesterday'"):
        parse_time("yesterday", NOW)


def test_silence_for_a_week(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    argv = ["silence", "add", "--db", url, "--match", "cluster=dr2", "--for", "1w"]
    assert main([*argv, "--comment", "site move", "--author", "ana"]) == 0
    capsys.readouterr()
    assert main(["silence", "list", "--db", url, "--format", "json"]) == 0
    [s] = json.loads(capsys.readouterr().out)
    lasting = datetime.fromisoformat(s["ends_at"]) - datetime.fromisoformat(s["starts_at"])
    assert lasting == timedelta(weeks=1)


def test_config_shows_durations_as_it_reads_them() -> None:
    config = parse_config(
        {"watch": {"blind_spot_after": "1h30m"}, "rules": {"rpo-exceeded": {"rpo": "1w"}}}
    )
    shown = config.redacted()
    assert shown["watch"]["blind_spot_after"] == "1h30m"
    assert shown["rules"]["rpo-exceeded"]["rpo"] == "7d"
    assert durations.parse(shown["probe"]["interval"]) == config.probe.interval
