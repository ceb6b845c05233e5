"""The garbage collector's thresholds (daemon/collector.py) and its time on /metrics."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from auditd.cli import main
from auditd.daemon import collector
from auditd.daemon.metrics import Metrics


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_youngest_generation_waits_for_more_allocations_unless_the_operator_says() -> None:
    gc.set_threshold(700, 10, 10)
    assert collector.tune({}) == (collector.THRESHOLD0, 10, 10)
    assert collector.tune({collector.ENV: "700"}) == (700, 10, 10)
    assert collector.tune({collector.ENV: "2000,20,5"}) == (2000, 20, 5)
    assert collector.tune({collector.ENV: " "}) == (collector.THRESHOLD0, 20, 5)  # as unset
    for bad in ("lots", "1,2,3,4", "-1", "700,,10"):
        with pytest.raises(ValueError, match=collector.ENV):
            collector.tune({collector.ENV: bad})


def test_a_malformed_threshold_stops_the_daemon_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(collector.ENV, "often")
    cfg = tmp_path / "auditd.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path / "h.db"}"\n')
    assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "error: GC_THRESHOLD='often': expected one to three whole numbers" in err, err
    assert not (tmp_path / "h.db").exists()  # stopped before it opened anything


def test_the_collectors_time_is_counted_by_generation_while_started() -> None:
    timer = collector.Timer()
    timer.start()
    try:
        timer.start()  # once, however often it is started
        assert gc.callbacks.count(timer._callback) == 1
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        gc.collect()
    finally:
        timer.stop()
    assert timer._callback not in gc.callbacks
    assert timer.passes[2] == 1 and timer.seconds[2] > 0
    full = timer.seconds[2]
    gc.collect()  # stopped: not counted
    assert timer.passes[2] == 1 and timer.seconds[2] == full


def test_metrics_expose_the_collectors_seconds() -> None:
    metrics = Metrics()
    metrics.gc.seconds[2] = 1.5
    text = generate_latest(metrics.registry).decode()
    assert 'auditd_gc_seconds_total{generation="2"} 1.5' in text
    assert 'auditd_gc_seconds_total{generation="0"} 0.0' in text
