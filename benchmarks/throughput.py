"""Delivery throughput, and whether delivery progresses while the application is busy.

Throughput: a fresh process logs a burst of N distinct errors through a MigasHandler
(``rate_limit=None``, a queue big enough, ``fold_window=0``) and flushes; breadcrumbs
per second = delivered / (first log call -> flush returned); the handler is given
0.5 s after its construction to finish its warm-up (imports) untimed. The ceiling is a bare
``requests.Session`` keep-alive loop in a fresh process posting the same bodies (built
by the library beforehand, so not timed) to the same collector: the transport's own
limit. The collector runs in its own process. Rounds alternate ceiling and handler;
medians are reported, with what the collector stored (lost = N - stored). The ratio
to the ceiling is given both as the ratio of the medians and as the median of each
round's ratio (a round's two runs are seconds apart, so they share the machine's load).

Busy application: a fresh process configures the library, waits 0.5 s ("warm" start:
the library had time to prepare) or not at all ("cold" start), logs 100 distinct
errors, then at once runs a pure Python CPU loop (no I/O, so the GIL is only given up
at the interpreter's switch interval) for ``busy`` seconds. The collector's request log
(or the sink's, for sentry-sdk) tells how many arrived before the loop ended.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    PROJECT,
    VERSION,
    available,
    child_env,
    label,
    median,
    run_child,
    summary,
)

FULL: dict[str, Any] = {
    "records": 5000,
    "rounds": 5,
    "busy_records": 100,
    "busy_seconds": 1.5,
    "busy_runs": 3,
}
QUICK: dict[str, Any] = {
    "records": 300,
    "rounds": 1,
    "busy_records": 100,
    "busy_seconds": 0.7,
    "busy_runs": 1,
}

BUSY_LIBS = ("migas_logging", "sentry", "migas")


# --- the child's side --------------------------------------------------------------------


def _messages(n: int) -> list[str]:
    return [f"record {i} failed: input {i} is invalid" for i in range(n)]


def _bodies(messages: list[str]) -> list[bytes]:
    """The bodies the handler sends for ``messages`` (built the library's way)."""
    from migas_logging import breadcrumb, config

    ctx = config.detect_context()
    redactor = breadcrumb.default_redactor()
    return [
        breadcrumb.build(
            project=PROJECT,
            version=VERSION,
            language_version=config.language_version(),
            ctx=ctx,
            status="F",
            status_desc=f"bench.app: {m}",
            redactor=redactor,
        ).to_json()
        for m in messages
    ]


def _ceiling(url: str, n: int) -> dict[str, Any]:
    import requests

    from migas_logging.transport import USER_AGENT

    bodies = _bodies(_messages(n))
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    ok = 0
    start = time.perf_counter()
    for body in bodies:
        resp = session.post(
            url + "/api/breadcrumb",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=(5, 5),
            allow_redirects=False,
        )
        _ = resp.content
        ok += resp.status_code == 202
    elapsed = time.perf_counter() - start
    return {"delivered": ok, "elapsed_s": elapsed, "rate": ok / elapsed}


def _handler(url: str, n: int) -> dict[str, Any]:
    import logging

    from migas_logging import MigasHandler

    handler = MigasHandler(
        PROJECT,
        VERSION,
        endpoint=url,
        rate_limit=None,
        queue_size=max(1000, 2 * n),
        fold_window=0,
    )
    log = logging.getLogger("bench.app")
    log.propagate = False
    log.addHandler(handler)
    time.sleep(0.5)  # let the worker's warm-up (imports, context) finish, untimed
    messages = _messages(n)
    start = time.perf_counter()
    for m in messages:
        log.error(m)
    logged = time.perf_counter() - start
    handler.flush(timeout=300)
    elapsed = time.perf_counter() - start
    stats = handler.stats.as_dict()
    return {
        "delivered": stats["sent"],
        "elapsed_s": elapsed,
        "logging_s": logged,
        "rate": stats["sent"] / elapsed,
        "stats": stats,
    }


def _spin(seconds: float) -> int:
    """Pure Python work: no I/O, no sleeping, no C call that releases the GIL."""
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        for i in range(1000):
            total += i * i
    return total


def _busy(lib: str, url: str, dsn: str, *, n: int, seconds: float, idle: float) -> dict[str, Any]:
    from benchmarks._libs import configure

    setup = configure(lib, url, dsn, healthy=True)
    log = setup.logger
    time.sleep(idle)
    start = time.time()
    for m in _messages(n):
        log.error(m)
    spin_start = time.time()
    _spin(seconds)
    spin_end = time.time()
    setup.drain()  # now let it finish, so that "delivered eventually" can be counted
    return {
        "start": start,
        "spin_start": spin_start,
        "spin_end": spin_end,
        "stats": setup.stats(),
    }


def child_main(cfg: dict[str, Any]) -> None:
    """One measurement in a fresh process; prints one JSON line."""
    mode = cfg["mode"]
    if mode == "ceiling":
        result = _ceiling(cfg["url"], cfg["records"])
    elif mode == "handler":
        result = _handler(cfg["url"], cfg["records"])
    else:
        result = _busy(
            cfg["lib"],
            cfg["url"],
            cfg["dsn"],
            n=cfg["records"],
            seconds=cfg["seconds"],
            idle=cfg["idle"],
        )
    os.write(1, (json.dumps(result) + "\n").encode())
    os._exit(0)


# --- the parent's side -------------------------------------------------------------------


def _busy_runs(
    server: Any,
    endpoints: Any,
    lib: str,
    *,
    idle: float,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The busy-application test of one library, ``busy_runs`` times; medians."""
    runs: list[dict[str, Any]] = []
    for _ in range(params["busy_runs"]):
        server.reset()
        cfg = {
            "mode": "busy",
            "lib": lib,
            "url": endpoints.url,
            "dsn": endpoints.sentry_dsn,
            "records": params["busy_records"],
            "seconds": params["busy_seconds"],
            "idle": idle,
        }
        res = run_child(
            ["-m", "benchmarks.throughput", json.dumps(cfg)],
            env=child_env(endpoints.url),
            timeout=120,
        )
        if res.data is None:
            runs.append({"error": res.error, "stderr": res.stderr_tail})
            continue
        key = "sink_events" if lib == "sentry" else "collector_requests"
        at_start = server.counts(res.data["spin_start"])[f"{key}_before"]
        counts = server.counts(res.data["spin_end"])
        runs.append(
            {
                "before_spin": at_start,
                "by_spin_end": counts[f"{key}_before"],
                "eventually": counts[key],
                "spin_s": res.data["spin_end"] - res.data["spin_start"],
                "stats": res.data.get("stats"),
            }
        )
    good = [r for r in runs if "by_spin_end" in r]
    return {
        "records": params["busy_records"],
        "busy_seconds": params["busy_seconds"],
        "idle_before_s": idle,
        "runs": runs,
        "before_spin": median([r["before_spin"] for r in good]),
        "by_spin_end": median([r["by_spin_end"] for r in good]),
        "eventually": median([r["eventually"] for r in good]),
    }


def run(server: Any, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Throughput against the ceiling, then the busy-application test."""
    params = QUICK if quick else FULL
    endpoints = server.set_state("healthy")
    env = child_env(endpoints.url)
    n = params["records"]
    rounds: dict[str, list[dict[str, Any]]] = {"ceiling": [], "handler": []}
    for round_no in range(params["rounds"]):
        for mode in ("ceiling", "handler"):
            server.reset()
            cfg = {"mode": mode, "url": endpoints.url, "records": n}
            res = run_child(["-m", "benchmarks.throughput", json.dumps(cfg)], env=env, timeout=600)
            data = res.data or {"error": res.error, "stderr": res.stderr_tail}
            data["stored"] = server.counts()["stored"]
            rounds[mode].append(data)
            if "rate" in data:
                log(
                    f"  throughput round {round_no + 1} {mode}: {data['rate']:.0f}/s, "
                    f"stored {data['stored']}/{n}"
                )
            else:
                log(f"  throughput round {round_no + 1} {mode}: ERROR {data.get('error')}")
    rates = {m: [r["rate"] for r in rs if "rate" in r] for m, rs in rounds.items()}
    ceiling, handler = median(rates["ceiling"]), median(rates["handler"])
    paired = [
        h["rate"] / c["rate"]
        for c, h in zip(rounds["ceiling"], rounds["handler"], strict=True)
        if "rate" in c and "rate" in h
    ]
    out: dict[str, Any] = {
        "config": params,
        "records": n,
        "ceiling_rate": summary(rates["ceiling"]),
        "handler_rate": summary(rates["handler"]),
        "ratio": None if not ceiling or handler is None else handler / ceiling,
        "paired_ratio": summary(paired),
        "handler_lost": [n - r.get("stored", 0) for r in rounds["handler"]],
        "ceiling_lost": [n - r.get("stored", 0) for r in rounds["ceiling"]],
        "handler_logging_s": summary(
            [r["logging_s"] for r in rounds["handler"] if "logging_s" in r]
        ),
        "rounds": rounds,
        "busy": {},
        "skipped": {},
    }
    for lib in BUSY_LIBS:
        if not available(lib):
            out["skipped"][lib] = f"{label(lib)} is not installed"
            continue
        for start_kind, idle in (("warm", 0.5), ("cold", 0.0)):
            out["busy"].setdefault(start_kind, {})[lib] = entry = _busy_runs(
                server, endpoints, lib, idle=idle, params=params
            )
            log(
                f"  busy app ({start_kind} start), {label(lib)}: {entry['before_spin']} before "
                f"the loop, {entry['by_spin_end']} by its end, {entry['eventually']} eventually "
                f"(of {params['busy_records']})"
            )
    server.reset()
    return out


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
