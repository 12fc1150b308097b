"""Peak memory while a million records are logged with the server down.

Each configuration runs in a fresh process that logs N distinct errors (one every call,
as fast as it can) to a closed port, then reports its peak RSS (``VmHWM`` of
``/proc/self/status``; ``ru_maxrss`` is no good here: on Linux it keeps the parent's
size across ``fork`` + ``exec``) and its current RSS at ten checkpoints
(``/proc/self/statm``), so that growth shows. The baseline is the same process with a
``NullHandler``; a second one also imports ``requests``, which the handler's worker
imports (most of the handler's fixed cost in memory). Every process waits 0.5 s after
its setup (the worker's warm-up imports finish), so that growth means records. The
records are distinct, so that nothing folds. A configuration that has not logged them
all after ``cap_s`` seconds stops at the next checkpoint (the run stays bounded in
time) and says how many it logged.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import PROJECT, VERSION, child_env, run_child

FULL: dict[str, Any] = {"records": 1_000_000, "cap_s": 240.0}
QUICK: dict[str, Any] = {"records": 20_000, "cap_s": 20.0}

#: name -> description
CONFIGS = {
    "baseline": "NullHandler",
    "baseline_requests": "NullHandler + import requests",
    "migas_default": "MigasHandler, defaults (30/60 s rate cap, queue 1000, folding)",
    "migas_no_cap": "MigasHandler, rate_limit=None (queue 1000 is the bound)",
}


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError):
        return 0


def _peak_rss_kib() -> int:
    """The process's high-water RSS (``VmHWM``), or ``ru_maxrss`` without ``/proc``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child_main(cfg: dict[str, Any]) -> None:
    """Log ``records`` errors in configuration ``config``; print one JSON line."""
    import logging

    log = logging.getLogger("bench.app")
    log.propagate = False
    handler: Any
    if cfg["config"].startswith("baseline"):
        if cfg["config"] == "baseline_requests":
            import requests  # noqa: F401 - its memory is the point
        handler = logging.NullHandler()
    else:
        from migas_logging import MigasHandler

        options: dict[str, Any] = {}
        if cfg["config"] == "migas_no_cap":
            options["rate_limit"] = None
        handler = MigasHandler(PROJECT, VERSION, endpoint=cfg["url"], **options)
    log.addHandler(handler)
    time.sleep(0.5)  # the worker's warm-up (imports) is not what is measured
    n = cfg["records"]
    step = max(1, n // 10)
    checkpoints = [_rss_kib()]
    start = time.perf_counter()
    deadline = start + cfg["cap_s"]
    logged = 0
    for i in range(n):
        log.error(f"record {i} failed")  # distinct templates on purpose
        logged += 1
        if logged % step == 0:
            checkpoints.append(_rss_kib())
            if time.perf_counter() > deadline:
                break
    elapsed = time.perf_counter() - start
    peak = _peak_rss_kib()
    stats = handler.stats.as_dict() if hasattr(handler, "stats") else {}
    result = {
        "peak_rss_kib": peak,
        "rss_checkpoints_kib": checkpoints,
        "elapsed_s": elapsed,
        "per_call_us": elapsed / logged * 1e6,
        "logged": logged,
        "stats": stats,
    }
    os.write(1, (json.dumps(result) + "\n").encode())
    os._exit(0)


def run(server: Any, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Run every configuration against a closed port."""
    params = QUICK if quick else FULL
    from migas_logging.collector import free_port

    url = f"http://127.0.0.1:{free_port()}"  # a closed port: the server is down
    out: dict[str, Any] = {"config": params, "records": params["records"], "runs": {}}
    for name, description in CONFIGS.items():
        cfg = {"config": name, "url": url, **params}
        res = run_child(
            ["-m", "benchmarks.memory", json.dumps(cfg)], env=child_env(url), timeout=900
        )
        data = res.data or {"error": res.error, "stderr": res.stderr_tail}
        data["description"] = description
        out["runs"][name] = data
        if "peak_rss_kib" in data:
            log(
                f"  memory {name}: peak {data['peak_rss_kib'] / 1024:.1f} MiB, "
                f"{data['per_call_us']:.1f} us/call, {data['logged']:,} records"
            )
        else:
            log(f"  memory {name}: ERROR {data.get('error')}")
    base = out["runs"]["baseline"].get("peak_rss_kib")
    for name in CONFIGS:
        peak = out["runs"][name].get("peak_rss_kib")
        out["runs"][name]["over_baseline_kib"] = (
            None if base is None or peak is None else peak - base
        )
    return out


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
