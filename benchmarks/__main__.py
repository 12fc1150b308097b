"""``python -m benchmarks``: run the benchmarks, print the tables, write the results.

Options: ``--quick`` (a short smoke run), ``--only NAME`` (repeatable, or
comma-separated: percall, exit_delay, import_time, throughput, memory,
cluster) and ``--out DIR``
(default ``benchmarks/results/``). Writes ``results.json``, ``results.md`` and
``performance.png`` (when matplotlib is installed) to the output directory, and prints
the Markdown tables on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS
from benchmarks._common import REPO_ROOT

_NEEDS_SERVER = {"percall", "exit_delay", "throughput", "cluster"}
_DISTRIBUTIONS = (
    "migas-logging",
    "sentry-sdk",
    "migas",
    "requests",
    "urllib3",
    "matplotlib",
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs"


def _versions() -> dict[str, str]:
    out = {}
    for dist in _DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark migas-logging against the alternatives (loopback only).",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--cluster-sizes",
        metavar="N[,N...]",
        default=None,
        help="the cluster benchmark's herd sizes (default 50,200; --quick: 10)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "results",
        help="output directory (default: benchmarks/results/)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    args.selected = [n for n in BENCHMARKS if not names or n in names]
    if args.cluster_sizes is not None:
        try:
            sizes = [int(n) for n in args.cluster_sizes.split(",") if n.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            parser.error(f"--cluster-sizes {args.cluster_sizes!r}: give N or N,N (N >= 1)")
        args.cluster_sizes = sizes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; return the exit status."""
    args = _parse(argv)
    from benchmarks import report
    from benchmarks._server import ServerProcess

    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "mode": "quick" if args.quick else "full",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "python": platform.python_version(),
            "versions": _versions(),
            "load_before": _load(),
            "selected": args.selected,
        }
    }
    with contextlib.ExitStack() as stack:
        server = None
        if _NEEDS_SERVER & set(args.selected):
            server = stack.enter_context(ServerProcess())
            _log(f"collector at {server.url}, sentry sink on port {server.sink_port}")
        for name in args.selected:
            _log(f"== {name}")
            module = importlib.import_module(f"benchmarks.{name}")
            t0 = time.perf_counter()
            kwargs = {"sizes": args.cluster_sizes} if name == "cluster" else {}
            results[name] = module.run(server, quick=args.quick, log=_log, **kwargs)
            results[name]["duration_s"] = time.perf_counter() - t0
    results["goals"] = report.goals(results)
    results["meta"]["load_after"] = _load()
    results["meta"]["duration_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = report.markdown(results)
    if "percall" in results:
        if report.plot(results["percall"], args.out / "performance.png"):
            text += "\n![per-call cost](performance.png)\n"
        else:
            _log("matplotlib is not installed: no plot")
    if "cluster" in results and report.plot_cluster(results["cluster"], args.out / "clusters.png"):
        text += "\n![cluster](clusters.png)\n"
    (args.out / "results.md").write_text(text)
    print(text)
    _log(f"results in {args.out} ({results['meta']['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
