"""The report over a history built by the real pipeline: the demo's story (ingest -> inventory
-> rules -> store -> outbox, real Ceph captures) replayed at a fixed instant, then rendered.

Golden files in tests/golden/ pin every format; the same history on SQLite and PostgreSQL must
give byte-identical reports (the aggregation is SQL on both). To accept a deliberate change:
AUDITD_UPDATE_GOLDEN=1 pytest tests/report/test_report.py, then read the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from paths import GOLDEN
from story_history import SINCE, T0, UNTIL, played, report

from auditd.cli import main
from auditd.report.html import to_html
from auditd.report.query import Filters, ReportData, load_report
from auditd.report.render import to_json, to_markdown, to_table
from auditd.store.db import make_engine, session_factory


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("AUDITD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with AUDITD_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.fixture(scope="module")
def story_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('story') / 'h.db'}"
    played(url)
    return url


def test_story_alerts_are_the_ones_an_sre_should_get(tmp_path: Path) -> None:
    alerts = played(f"sqlite:///{tmp_path / 'h.db'}")
    golden("story-alerts.txt", alerts)
    lines = alerts.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[alert] FIRING [warning] pvc-on-secondary",
        "[alert] RESOLVED [warning] pvc-on-secondary",
        "[alert] FIRING [warning] pool-mirroring-unhealthy",  # one, for both sites
        "[alert] RESOLVED pool-mirroring-unhealthy",
        "[alert] FIRING [critical] split-brain",
        "[alert] RESOLVED [critical] split-brain",
    ]  # and nothing for the planned failover


@pytest.mark.parametrize(
    "fmt, render",
    [("txt", to_table), ("json", to_json), ("md", to_markdown), ("html", to_html)],
)
def test_every_format_matches_its_golden_file(story_db: str, fmt: str, render: Any) -> None:
    golden(f"report.{fmt}", render(report(story_db)))


def test_report_sections_say_what_happened(story_db: str) -> None:
    doc = json.loads(to_json(report(story_db)))
    assert doc["schema_version"] == 2
    s = doc["summary"]
    assert (s["opened"], s["resolved"], s["open"]) == (5, 5, 0)
    rules = {r["rule"]: r for r in s["by_rule"]}
    assert rules["split-brain"]["mttr_seconds"] == 360.0
    assert rules["pvc-on-secondary"]["mttr_seconds"] == 240.0
    assert [b["severity"] for b in s["by_severity"]] == ["critical", "warning"]
    [ep] = doc["episodes"]
    assert (ep["trigger"], ep["from_cluster"], ep["to_cluster"], ep["rto_seconds"]) == (
        "demote",
        "dr1",
        "dr2",
        60.0,
    )
    vols = {(v["cluster"], v["image"]): v for v in doc["volumes"]}
    # dr2's image: replaying until the daemon died at :18, back at :30, then the failover's
    # in-between minute and the split brain: healthy for well under the whole window.
    assert 0.5 < vols[("dr2", "csi-vol-0001")]["healthy_share"] < 0.9
    assert vols[("dr2", "csi-vol-0001")]["volume"] == "payments/ledger"
    assert doc["delivery"]["messages"] == {"sent": 6}
    assert doc["delivery"]["alerts"]["inhibited"] == 2  # the image's not-replaying, both ends
    assert doc["transitions_total"] == len(doc["transitions"])


def test_a_window_that_starts_mid_history_knows_each_image_state_at_its_start(
    story_db: str,
) -> None:
    """Between the failover (done at :39:30) and the split brain (:50) nothing changes: both
    images are healthy the whole window, though their last change was before it."""
    engine = make_engine(story_db)
    with session_factory(engine)() as s:
        quiet = load_report(s, T0 + timedelta(minutes=41), T0 + timedelta(minutes=49))
    engine.dispose()
    assert [(v["cluster"], v["healthy_share"]) for v in quiet.volumes] == [
        ("dr1", 1.0),
        ("dr2", 1.0),
    ]
    assert quiet.transitions_total == 0 and quiet.violations == []


def test_the_same_history_reports_the_same_on_postgresql(story_db: str, pg_url: str) -> None:
    played(pg_url)
    for render in (to_table, to_json, to_markdown, to_html):
        assert render(report(pg_url)) == render(report(story_db))


def test_filters_narrow_every_section(story_db: str) -> None:
    only = report(story_db, Filters(rule="split-brain"))
    assert {v["rule"] for v in only.violations} == {"split-brain"}
    assert only.summary["opened"] == 1
    other_ns = report(story_db, Filters(namespace="shop"))
    assert other_ns.violations == [] and other_ns.volumes == [] and other_ns.episodes == []
    assert all(t["namespace"] == "shop" for t in other_ns.transitions)
    pair = report(story_db, Filters(pair="dr1-dr2", clusters=("dr2",), pools=("replicapool",)))
    assert {v["cluster"] for v in pair.volumes} == {"dr2"}
    assert {t["cluster"] for t in pair.transitions} == {"dr2"}
    capped = load_limited(story_db, 10)
    assert len(capped.transitions) == 10 and capped.transitions_total > 10


def load_limited(url: str, limit: int) -> ReportData:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        data = load_report(s, SINCE, UNTIL, None, limit)
    engine.dispose()
    return data


def test_cli_report_writes_every_format(
    story_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    window = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    assert main(["report", "--db", story_db, *window, "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# auditd report: 2026-11-26 07:58:00")
    out = tmp_path / "r.html"
    assert (
        main(["report", "--db", story_db, *window, "--format", "html", "--output-file", str(out)])
        == 0
    )
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "--db", story_db, "--since", "1h", "--until", "2h"]) == 2
    assert "--until must be after --since" in capsys.readouterr().err


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("AUDITD_REQUIRE_CHROMIUM") != "1",
    reason="Debian's chromium is not installed (CI installs it and sets AUDITD_REQUIRE_CHROMIUM)",
)
def test_html_report_renders_in_headless_chromium(story_db: str, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "AUDITD_REQUIRE_CHROMIUM=1 but no chromium on PATH"
    page = tmp_path / "report.html"
    page.write_text(to_html(report(story_db)))
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # Offline, as an SRE's laptop on a plane: the page must need nothing from the network.
        "--proxy-server=127.0.0.1:9",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=90,
    )
    assert shot.exists(), run.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (1200, 1600)
    assert len(data) > 20_000, "a blank page compresses to almost nothing"
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=90, text=True
    ).stdout
    # The browser parsed the chart: one bar per incident, one diamond per failover.
    assert dom.count('class="incident"') == 5
    assert dom.count('class="episode"') == 1
    assert "Failovers and relocates" in dom
    if os.environ.get("AUDITD_ARTIFACTS"):  # CI keeps the screenshot for a human to look at
        shutil.copy(shot, Path(os.environ["AUDITD_ARTIFACTS"]) / "report.png")


if __name__ == "__main__":  # regenerate the goldens by hand: python tests/report/test_report.py
    os.environ["AUDITD_UPDATE_GOLDEN"] = "1"
    sys.exit(pytest.main([__file__, "-q"]))


def test_history_of_one_volume_across_its_failover(
    story_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--db", story_db, "payments/ledger", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["volume"] == {
        "claims": ["payments/ledger"],
        "pvs": ["pvc-dr1-0001", "pvc-dr2-0001"],
        "volume_replications": ["payments/ledger"],
        "images": ["replicapool/csi-vol-0001"],
        "joined": [],  # no group, no Ramen in this story
    }
    seen = {(t["cluster"], t["kind"], t["source"]) for t in doc["transitions"]}
    assert ("dr1", "PersistentVolumeClaim", "watch") in seen
    assert ("dr2", "PersistentVolumeClaim", "watch") in seen  # the stray, then the failover
    assert ("dr2", "RbdImage", "probe") in seen and ("dr1", "RbdImage", "probe") in seen
    times = [t["observed_at"] for t in doc["transitions"]]
    assert times == sorted(times)
    assert [i["rule"] for i in doc["incidents"]] == [
        "pvc-on-secondary",
        "secondary-not-replaying",
        "split-brain",
    ]
    assert [(e["trigger"], e["rto_seconds"]) for e in doc["episodes"]] == [("demote", 60.0)]
    # The image names the same volume; the text form reads as a timeline.
    assert main(["history", "--db", story_db, "replicapool/csi-vol-0001"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("volume: PVC payments/ledger; PV pvc-dr1-0001, pvc-dr2-0001")
    assert any(
        "RbdImage replicapool/csi-vol-0001" in ln and "primary" in ln for ln in text.splitlines()
    )
    assert main(["history", "--db", story_db, "payments/nope"]) == 1
    assert "no volume 'payments/nope'" in capsys.readouterr().err
