"""Import time of each library: ``import X`` timed inside fresh interpreters.

Each run is ``python -c "t = perf_counter(); <statement>; print(perf_counter() - t)"``
in a fresh process (bytecode caches warm: one untimed run first), so interpreter start
is excluded and only the statement is timed. The wall-clock time of the whole process
minus that of ``python -c pass`` is reported too. Medians over the runs, interleaved.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import child_env, median, summary

FULL: dict[str, Any] = {"runs": 15}
QUICK: dict[str, Any] = {"runs": 3}

#: name -> (statement, module that must be importable)
STATEMENTS: dict[str, tuple[str, str]] = {
    "logging.handlers": ("import logging.handlers", "logging"),
    "requests": ("import requests", "requests"),
    "sentry_sdk": ("import sentry_sdk", "sentry_sdk"),
    "migas": ("import migas", "migas"),
    "migas_logging": ("import migas_logging", "migas_logging"),
    "migas_logging.MigasHandler": ("from migas_logging import MigasHandler", "migas_logging"),
}


def _time(statement: str) -> tuple[float, float]:
    code = f"import time\n_t = time.perf_counter()\n{statement}\nprint(time.perf_counter() - _t)\n"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env=child_env(with_path=False),
        timeout=60,
        check=True,
    ).stdout
    wall = time.perf_counter() - start
    return float(out.split()[-1]), wall


def run(server: Any, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Time every statement; ``server`` is unused (no network)."""
    import importlib.util

    params = QUICK if quick else FULL

    def importable(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    names = [n for n, (_, mod) in STATEMENTS.items() if importable(mod)]
    skipped = {n: "not installed" for n in STATEMENTS if n not in names}
    inproc: dict[str, list[float]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    bare: list[float] = []
    for name in names:  # warm the bytecode caches
        _time(STATEMENTS[name][0])
    for _ in range(params["runs"]):
        bare.append(_time("pass")[1])
        for name in names:
            t, wall = _time(STATEMENTS[name][0])
            inproc[name].append(t)
            walls[name].append(wall)
    bare_median = median(bare) or 0.0
    out: dict[str, Any] = {"config": params, "bare_wall_s": summary(bare), "imports": {}}
    for name in names:
        wall_median = median(walls[name]) or 0.0
        out["imports"][name] = {
            "statement": STATEMENTS[name][0],
            "in_process_s": summary(inproc[name]),
            "wall_over_bare_s": wall_median - bare_median,
        }
        log(
            f"  {STATEMENTS[name][0]}: {(median(inproc[name]) or 0) * 1e3:.1f} ms "
            f"(wall +{(wall_median - bare_median) * 1e3:.1f} ms)"
        )
    out["skipped"] = skipped
    return out
