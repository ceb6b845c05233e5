#!/usr/bin/env python3
"""The cost curve (issue 24): the other benches at several sizes of one pair, as one table.

Each bench runs as its own process at each size (watch_scale on SQLite with a burst of two
events per volume, rules_eval, rbd_parse with one pool of N images per site, metrics_scale
with N images per site, report_scale on SQLite with 20 transitions per volume) and its
printed figures are read back. Beside each figure, its cost per volume, and how that cost grew
from the previous size: a growth well above 1.0x is a super-linear step, the thing this table
is for. The targets at 50,000 volumes (150,000 objects, 100,000 image records) are checked when
that size is in the run.

    python bench/cost_curve.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# The probe interval auditd runs with by default: a probe cycle must be ingested within it.
PROBE_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Figure:
    """One figure a bench prints: the regex that reads it, its unit, and whether it should stay
    flat (a per-event or per-change cost) rather than grow with the volumes."""

    name: str
    bench: str
    pattern: str
    unit: str
    flat: bool = False
    scale: float = 1.0  # to the unit shown


FIGURES = (
    Figure("initial sync", "watch_scale", r"^sqlite\s+([\d.]+) s", "s"),
    Figure("watch events/s", "watch_scale", r"^sqlite\s+[\d.]+ s\s+([\d,]+)", "ev/s", flat=True),
    Figure("ingest vs raw limit", "watch_scale", r"^sqlite\s+.*?\s([\d.]+)\s+\d+ MB", "x", True),
    Figure("daemon peak RSS", "watch_scale", r"(\d+) MB\s*$", "MB"),
    Figure("full rule evaluation", "rules_eval", r"full evaluation.*?([\d.]+) s", "s"),
    Figure("one PVC change", "rules_eval", r"one PVC changed\s+([\d.]+) ms", "ms", flat=True),
    Figure("volumes it re-judged", "rules_eval", r"(\d+) volume\(s\) re-evaluated", "", True),
    Figure("lag-only probe cycle", "rules_eval", r"lag refreshed only\s+([\d.]+) s", "s"),
    Figure("parse one site's status", "rbd_parse", r"parse_pool_status\s+([\d.]+) ms", "ms"),
    Figure("ingest a changed cycle", "rbd_parse", r"every image changed\s+([\d.]+) ms", "ms"),
    Figure("/metrics series", "metrics_scale", r"^auditd's /metrics\s+([\d,]+)", ""),
    Figure("/metrics memory", "metrics_scale", r"^auditd's /metrics\s+[\d,]+\s+([\d.]+)", "MB"),
    Figure("one scrape", "metrics_scale", r"^auditd's /metrics(?:\s+[\d,.]+){3}\s+([\d.]+)", "s"),
    Figure("report --since 24h", "report_scale", r"report \(all sections, SQL\)\s+([\d.]+) s", "s"),
    Figure("report, whole process", "report_scale", r"--since 24h` process\s+([\d.]+) s", "s"),
)


def _args(bench: str, volumes: int) -> list[str]:
    return {
        "watch_scale": ["--volumes", str(volumes), "--events", str(2 * volumes), "--db", "sqlite"],
        "rules_eval": ["--volumes", str(volumes), "--changes", str(min(volumes, 2000))],
        "rbd_parse": ["--images", str(volumes)],
        "metrics_scale": ["--images", str(volumes)],
        "report_scale": [
            "--volumes",
            str(volumes),
            "--transitions",
            str(20 * volumes),
            "--db",
            "sqlite",
        ],
    }[bench]


def run(bench: str, volumes: int) -> str:
    print(f"  {bench} at {volumes:,} volumes ...", flush=True)
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{bench}.py"), *_args(bench, volumes)],
        capture_output=True,
        text=True,
        cwd=BENCH.parent,
    )
    if done.returncode != 0 and not re.search(r"\d", done.stdout):
        raise SystemExit(
            f"{bench} at {volumes} volumes failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    if done.returncode != 0:  # report_scale exits 1 when its own target is not met
        print(f"    (exit {done.returncode}: {done.stdout.strip().splitlines()[-1]})")
    return done.stdout


def read(figure: Figure, output: str) -> float | None:
    found = re.search(figure.pattern, output, re.MULTILINE)
    return float(found.group(1).replace(",", "")) * figure.scale if found else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


# A figure's cost per volume, in a unit that reads well: time in microseconds, memory in KB.
_PER_VOLUME = {
    "s": (1e6, "us/volume"),
    "ms": (1e3, "us/volume"),
    "MB": (1024, "KB/volume"),
    "": (1, "/volume"),
}


def _growth(row: list[float | None]) -> str:
    return " ".join(
        f"{b / a:.2f}x" if a and b is not None else "-" for a, b in itertools.pairwise(row)
    )


def table(sizes: list[int], values: dict[tuple[str, int], float | None]) -> None:
    head = f"{'figure':<25} {'unit':<5}" + "".join(f" {n:>10,}" for n in sizes)
    print(head + "   per volume (largest)   growth, size to size")
    for f in FIGURES:
        row = [values.get((f.name, n)) for n in sizes]
        line = f"{f.name:<25} {f.unit:<5}" + "".join(f" {_fmt(v):>10}" for v in row)
        if f.flat:
            # A rate or a per-change cost: it should hold still as the pair grows.
            print(f"{line}   {'(flat)':<21} {_growth(row)}")
            continue
        factor, label = _PER_VOLUME[f.unit]
        per = [v * factor / n if v is not None else None for v, n in zip(row, sizes, strict=True)]
        per_text = f"{per[-1]:,.1f} {label}" if per[-1] is not None else "-"
        print(f"{line}   {per_text:<21} {_growth(per)}")


Check = tuple[str, Callable[[Callable[[str], float | None]], bool | None]]
TARGETS_50K: tuple[Check, ...] = (
    ("initial sync <= 30 s", lambda v: _le(v("initial sync"), 30)),
    ("daemon peak RSS <= 600 MB", lambda v: _le(v("daemon peak RSS"), 600)),
    ("full rule evaluation <= 5 s", lambda v: _le(v("full rule evaluation"), 5)),
    ("one change re-judges one volume", lambda v: _eq(v("volumes it re-judged"), 1)),
    (
        f"a probe cycle (both sites) ingested within the {PROBE_INTERVAL_S:.0f} s interval",
        lambda v: _cycle_within(v),
    ),
)


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _eq(value: float | None, want: float) -> bool | None:
    return None if value is None else value == want


def _cycle_within(v: Callable[[str], float | None]) -> bool | None:
    parts = [v("parse one site's status"), v("ingest a changed cycle"), v("lag-only probe cycle")]
    if any(p is None for p in parts):
        return None
    parse_ms, ingest_ms, judge_s = parts  # type: ignore[misc]
    return 2 * (parse_ms + ingest_ms) / 1000 + judge_s <= PROBE_INTERVAL_S


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1000,10000,50000", help="volumes of the pair, ascending")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"cost curve over {', '.join(f'{n:,}' for n in sizes)} volumes (one pair)\n")
    values: dict[tuple[str, int], float | None] = {}
    for n in sizes:
        outputs = {b: run(b, n) for b in sorted({f.bench for f in FIGURES})}
        for f in FIGURES:
            values[(f.name, n)] = read(f, outputs[f.bench])
    print()
    table(sizes, values)
    if 50_000 in sizes:
        print("\ntargets at 50,000 volumes:")
        for label, check in TARGETS_50K:
            ok = check(lambda name: values.get((name, 50_000)))
            print(f"  {'MET' if ok else 'NOT MET' if ok is False else 'NOT READ'}  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
