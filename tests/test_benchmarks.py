"""Smoke test of the benchmarks (``python -m benchmarks``): they run and write their results.

Only cheap benchmarks run here, in quick mode, and no timing is ever asserted: the
benchmarks are measurements, not tests. Neither sentry-sdk nor migas is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_parseable_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "import_time,memory",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {"meta", "import_time", "memory", "goals"} <= set(results)
    assert results["meta"]["mode"] == "quick"
    assert "migas_logging" in results["import_time"]["imports"]
    runs = results["memory"]["runs"]
    assert set(runs) == {"baseline", "baseline_requests", "migas_default", "migas_no_cap"}
    for run in runs.values():
        assert run["peak_rss_kib"] > 0, run
    # every record ends somewhere: sent, folded or dropped (the server is down)
    stats = runs["migas_default"]["stats"]
    assert stats["emitted"] == runs["migas_default"]["logged"]
    assert {g["met"] for g in results["goals"]} <= {True, False, None}
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "### Import time" in text
    assert "### Memory" in text
    assert "### Goals" in text
    assert text.strip() in proc.stdout


def test_plot_and_tables_from_a_percall_result(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks import report

    def measured(us: float) -> dict[str, object]:
        return {"blocked": False, "per_call_us": {"median": us, "q1": us, "q3": us, "n": 3}}

    variants = ["plain", "exc_info", "repeated", "flood"]
    percall = {
        "variants": variants,
        "skipped": {"sentry": "sentry-sdk is not installed"},
        "cells": {
            "queue": {"any": {v: measured(6.0) for v in variants}},
            "migas_logging": {
                "healthy": {v: measured(9.0) for v in variants},
                "hang": {v: measured(8.0) for v in variants},
            },
            "http": {"hang": {v: {"blocked": True, "lower_bound_us": 5e6} for v in variants}},
        },
    }
    path = tmp_path / "plot.png"
    assert report.plot(percall, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.percall_tables(percall)
    assert "9.00 µs (1.5×)" in text
    assert "(blocked)" in text
    assert "not installed" in text


def test_quick_cluster_run_writes_its_results(tmp_path: Path) -> None:
    """The cluster benchmark runs its herds and replays, and writes a row per scenario."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "cluster", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    cluster = results["cluster"]
    ours = [e for e in cluster["scenarios"] if e["lib"] == "migas_logging"]
    # 2 windows x 2 phases, N = 10 in quick mode
    assert sorted((tuple(e["window"]), e["phase"]) for e in ours) == [
        ((100, 60.0), "down"),
        ((100, 60.0), "up"),
        ((1000, 60.0), "down"),
        ((1000, 60.0), "up"),
    ]
    for entry in ours:
        assert entry["n"] == 10
        assert entry["ready"] == 10, entry
        assert "spool_send" in entry
        assert "after_replay" in entry
        assert entry["flushed_s"]["n"] == entry["exit_s"]["n"]  # each exit handler's end
    assert cluster["array_job"]
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "clusters.png").stat().st_size > 0
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "### Cluster" in text
    assert "cluster: zero 429" in text


@pytest.mark.parametrize("sizes", ["0", "x", ",", "-5"])
def test_bad_cluster_sizes_are_a_usage_error(sizes: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "cluster", "--cluster-sizes", sizes],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--cluster-sizes" in proc.stderr
