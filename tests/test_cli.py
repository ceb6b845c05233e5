from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from helpers import demo_still_running

from auditd.cli import build_parser, main
from auditd.report.window import parse_time

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["report"],
        ["db"],
        ["db", "upgrade"],
        ["config"],
        ["config", "check"],
        ["demo"],
        ["status"],
        ["rules"],
        ["explain"],
        ["silence"],
        ["silence", "add"],
        ["silence", "list"],
        ["silence", "expire"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: auditd" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-25T08:00:00Z", datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ("2026-11-25T09:00:00+01:00", datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ("2026-11-25T08:00:00", datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ("now", NOW),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_bad_since_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert main(["report", "--db", url, "--since", "yesterday"]) == 2
    assert "not a time: 'yesterday'" in capsys.readouterr().err


def test_report_on_missing_history_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--db", f"sqlite:///{tmp_path / 'empty.db'}", "--since", "1h"]) == 1
    assert "run `auditd db upgrade`" in capsys.readouterr().err


def test_empty_report_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    main(["db", "upgrade", "--db", url])
    capsys.readouterr()
    assert main(["report", "--db", url, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 2 and doc["violations"] == [] and doc["transitions"] == []
    assert doc["summary"]["opened"] == 0 and doc["volumes"] == []
    assert main(["report", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "OPEN INCIDENTS\nnone: every incident is resolved" in out
    assert "TIMELINE OF TRANSITIONS\n(none)" in out


def auditd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditd", *args], capture_output=True, text=True, timeout=60
    )


def test_demo_plays_the_story_in_under_a_minute(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "auditd", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "[alert] FIRING [warning] pvc-on-secondary" in out
    assert "[alert] RESOLVED [warning] pvc-on-secondary" in out
    assert out.index("FIRING") < out.index("RESOLVED") < out.index("auditd report")
    assert any(
        line.startswith("resolved  warning   pvc-on-secondary")
        and "dr2/PersistentVolumeClaim/shop/mysql-data" in line
        for line in out.splitlines()
    )
    # The replayed hour: one grouped alert for the dead rbd-mirror, nothing for the planned
    # failover (but its RTO), a critical split brain; then the report.
    story = out[out.index("The hour before") : out.index("==> auditd report")]
    assert story.count("[alert] FIRING") == 3
    assert "[alert] FIRING [warning] pool-mirroring-unhealthy: 2 pools" in story
    assert "[alert] FIRING [critical] split-brain" in story
    report = out[out.index("==> auditd report") :]
    assert "replicapool/csi-vol-0001  demote   dr1 -> dr2" in report
    assert "6 incident(s) opened, 6 resolved, 0 open" in report
    assert (tmp_path / "auditd.db").exists()


def test_rules_and_explain_on_the_demo_history(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "auditd", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cfg = str(tmp_path / "auditd.toml")
    out = subprocess.run(
        [sys.executable, "-m", "auditd", "rules", "-c", cfg, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rules = {r["id"]: r for r in json.loads(out)}
    assert {
        "pvc-on-secondary",
        "split-brain",
        "secondary-not-replaying",
        "audit-blind-spot",
    } <= set(rules)
    assert (
        rules["split-brain"]["severity"] == "critical" and rules["pvc-on-secondary"]["firing"] == 0
    )
    demo_still_running(tmp_path)
    p = auditd("explain", "-c", cfg, "shop/mysql-data", "--format", "json")
    doc = json.loads(p.stdout)
    assert doc["volume"] == "dr1-dr2/replicapool/csi-vol-4f1c"
    assert [s["pvc"] for s in doc["sides"]] == ["shop/mysql-data", None]
    verdicts = {(r["rule"], r["subject"]): r["verdict"] for r in doc["verdicts"]}
    # Ceph (the replayed probes) never reported this image, so which side is primary is not
    # known: the role-based rule says unknown, never ok.
    assert verdicts[("pvc-on-secondary", "dr1/PersistentVolumeClaim/shop/mysql-data")] == "unknown"
    # The replayed volume, after its failover and the resync: primary on dr2, all ok.
    demo_still_running(tmp_path)
    p = auditd("explain", "-c", cfg, "payments/ledger", "--format", "json")
    doc = json.loads(p.stdout)
    assert [s["pvc"] for s in doc["sides"]] == [None, "payments/ledger"]
    assert {r["verdict"] for r in doc["verdicts"]} == {"ok"}
    # The live part's application: Ramen's DRPC on the hub, three volumes, two in a group.
    demo_still_running(tmp_path)
    p = auditd("explain", "-c", cfg, "drpc/shop/shop", "--format", "json")
    doc = json.loads(p.stdout)
    assert [(d["cluster"], d["phase"]) for d in doc["drpcs"]] == [("hub", "Deployed")]
    assert [(v["pvc"], v["group"]) for v in doc["volumes"]] == [
        ("shop/mysql-data", None),
        ("shop/mysql-logs", "shop/shop-group"),
        ("shop/uploads", "shop/shop-group"),
    ]
    verdicts = {(r["rule"], r["subject"]): r["verdict"] for r in doc["verdicts"]}
    assert verdicts[("vrg-not-protected", "dr1/VolumeReplicationGroup/shop/shop")] == "ok"
    assert verdicts[("unprotected-volume", "dr1-dr2/replicapool/csi-vol-77a0")] == "ok"
    # A volume's history says what protects it now: its group, its VRG, its application.
    p = auditd("history", "-c", cfg, "shop/uploads", "--format", "json")
    assert json.loads(p.stdout)["volume"]["joined"] == [
        "dr1/VolumeGroupReplication/shop/shop-group",
        "dr1/VolumeReplicationGroup/shop/shop",
        "hub/DRPlacementControl/shop/shop",
    ]
    text = auditd("history", "-c", cfg, "shop/mysql-data").stdout
    assert (
        "protected or grouped by (now): dr1/VolumeReplicationGroup/shop/shop, "
        "hub/DRPlacementControl/shop/shop"
    ) in text
    p = subprocess.run(
        [sys.executable, "-m", "auditd", "explain", "-c", cfg, "nope/none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "no volume 'nope/none'" in p.stderr


def test_demo_slack_posts_each_incident_once_with_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from auditd.sim.demo import run_demo
    from auditd.sim.fakeslack import FakeSlack

    fake = FakeSlack(token="xoxb-demo").start()
    try:
        monkeypatch.setenv("AUDITD_SLACK_TOKEN", "xoxb-demo")
        monkeypatch.setenv("AUDITD_SLACK_CHANNEL", "#dr-alerts")
        assert run_demo(tmp_path, slack=True, slack_base_url=fake.base_url) == 0
        parents = [m for m in fake.messages if not m["thread_ts"]]
        replies = [m for m in fake.messages if m["thread_ts"]]
        # The live stray PVC, the replayed stray PVC, rbd-mirror down (both sites, one
        # incident), the split brain: four incidents, each resolved in its own thread.
        assert len(parents) == 4 and len(replies) == 4
        assert {r["thread_ts"] for r in replies} == {p["ts"] for p in parents}
        assert all(p["text"].startswith("RESOLVED") for p in parents)  # edited in place
        assert "xoxb-demo" not in capsys.readouterr().out
    finally:
        fake.stop()
    monkeypatch.delenv("AUDITD_SLACK_TOKEN")
    assert run_demo(tmp_path / "again", slack=True) == 2  # no token: says what to set


def test_every_command_finds_the_config_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the pod, `kubectl exec deploy/auditd -- auditd report --since 24h` needs no flags:
    the image sets AUDITD_CONFIG and every command reads it."""
    db = tmp_path / "h.db"
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(f'database_url = "sqlite:///{db}"\n[slack]\nenabled = false\n')
    monkeypatch.setenv("AUDITD_CONFIG", str(cfg))
    assert main(["db", "upgrade"]) == 0
    assert str(db) in capsys.readouterr().out
    assert main(["report", "--since", "1h", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema_version"]
    assert main(["status", "--format", "json"]) in (0, 1)  # 1: no daemon reporting
    assert json.loads(capsys.readouterr().out)["reporting"] is False
    assert main(["config", "check"]) == 0
    monkeypatch.delenv("AUDITD_CONFIG")
    assert main(["config", "check"]) == 2
    assert "pass -c FILE or set $AUDITD_CONFIG" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("auditd 0.")


def test_output_takes_formats_as_kubectl_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o json` wrote a file named json holding a table; `--format yaml` was refused."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    capsys.readouterr()
    window = ["--since", "2026-11-25T08:00:00Z", "--until", "2026-11-25T09:00:00Z"]
    assert main(["report", "--db", url, *window, "-o", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["report", "--db", url, *window, "--format", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json
    for argv in (["rules"], ["status"], ["silence", "list"]):
        assert main([*argv, "--db", url, "-o", "yaml"]) in (0, 1)  # status: 1, nobody reports
        assert yaml.safe_load(capsys.readouterr().out) is not None
    assert not (Path.cwd() / "json").exists()
    with pytest.raises(SystemExit) as exc:
        main(["report", "--db", url, "-o", "dr-report.html"])
    assert exc.value.code == 2
    assert "use --output-file" in capsys.readouterr().err
    out = tmp_path / "r.md"
    assert main(["report", "--db", url, "-o", "markdown", "--output-file", str(out)]) == 0
    assert out.read_text().startswith("#")


def test_reading_commands_create_nothing_and_bad_urls_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auditd report` in an empty directory created ./auditd-data/auditd.db before saying there
    was no history; `--db mysql://x` printed a 30-line traceback."""
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--since", "24h"]) == 1
    assert "no auditd history" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    for url in ("mysql://x", "postgresql://u:secret@127.0.0.1:notaport/x"):
        assert main(["status", "--db", url]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "secret" not in err


def test_bash_completion_is_generated_from_the_parser(tmp_path: Path) -> None:
    """Issue 21: no shell completion. It is the parser's own tree, so it cannot drift."""
    script = subprocess.run(
        [sys.executable, "-m", "auditd", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "c.sh").write_text(
        script
        + 't() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _auditd;'
        ' echo "${COMPREPLY[*]}"; }\n'
        "t auditd re\nt auditd report -o ''\nt auditd silence ''\nt auditd completion ''\n"
    )
    out = subprocess.run(
        ["bash", str(tmp_path / "c.sh")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "report"
    assert out[1].split() == ["table", "json", "yaml", "markdown", "html"]
    assert {"add", "expire", "list"} <= set(out[2].split())
    assert {"bash", "zsh"} <= set(out[3].split())
