"""Cost on the application's thread of one ``logger.error(...)`` call, by server state.

For each library and server state a fresh child process configures the library (see
:mod:`benchmarks._libs`) and times batches of calls with ``time.perf_counter_ns``
around the calls only; between batches (untimed) it drains what was logged when the
server is healthy, so that queues do not fill. It reports the median per-call cost of
the batches. Four variants, run in this order in the same process:

- ``plain``: ``logger.error(msg)``, a different message each call (at most
  ``DISTINCT_CALLS`` calls);
- ``exc_info``: ``logger.error(msg, exc_info=True)`` inside ``except``, a fresh exception
  (raised two frames down) and a different message each call (at most
  ``DISTINCT_CALLS`` calls);
- ``repeated``: ``logger.error(msg)``, the same message every call (MigasHandler folds
  repeats by default: one breadcrumb, then a count);
- ``flood``: ``logger.error(msg)``, a different message each call, once more than 1,024
  distinct messages were logged within the fold window (60 s): MigasHandler keeps at
  most 1,024 fold windows open, and what it does past that is measured here.

``plain`` and ``exc_info`` together stay under 1,024 distinct messages, so that they
measure the common case; before ``flood``, 1,100 distinct messages are logged untimed
(for libraries under 100 µs per call: the others keep no per-message state).

Before the variants, 120 INFO records are logged untimed, as an application would
have: sentry-sdk keeps the last 100 records as breadcrumbs and sends them with every
event, so its steady state is measured, not its first events.

When the drain between batches waited for a background thread (healthy server,
sentry-sdk and MigasHandler), one untimed call precedes each timed batch: after any
idle moment the next call runs with cold caches, which costs about 0.2 ms on this
kind of machine whatever the handler. That cost is measured on its own as
``after_idle``: one call after 50 ms of idleness, repeated (before ``flood``, with fewer
than 1,024 distinct messages logged; libraries over 50 ms per call are not measured).

A call that blocks past the block limit (a synchronous client against a hanging
server) is reported as blocked, with the limit as a lower bound; the child then stops.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    LOCAL_LIBS,
    NETWORK_LIBS,
    STATES,
    available,
    child_env,
    label,
    run_child,
    summary,
)

VARIANTS = ("plain", "exc_info", "repeated", "flood")
#: The most calls (first call, warm-up batch and timed batches) of a distinct variant.
DISTINCT_CALLS = 480
#: Distinct messages logged (untimed) before ``flood`` is timed.
FLOOD_FILL = 1100
#: INFO records logged (untimed) before anything is timed.
INFO_FILL = 120

FULL: dict[str, Any] = {
    "budget": 3.0,
    "block_limit": 5.0,
    "batch": 25,
    "max_batches": 100,
    "idle_samples": 15,
}
QUICK: dict[str, Any] = {
    "budget": 0.2,
    "block_limit": 1.0,
    "batch": 25,
    "max_batches": 6,
    "idle_samples": 3,
}


# --- the child's side --------------------------------------------------------------------


def _fail(message: str) -> None:
    raise ValueError(message)


def _raise_for(message: str) -> None:
    _fail(message)


def _make_call(variant: str, log: Any, messages: list[str]) -> Callable[[int, int], None]:
    """A function that makes calls ``start`` to ``start + count`` of a variant."""
    error = log.error
    if variant in ("plain", "flood"):

        def plain(start: int, count: int) -> None:
            for i in range(start, start + count):
                error(messages[i])

        return plain
    if variant == "exc_info":

        def with_exc(start: int, count: int) -> None:
            for i in range(start, start + count):
                message = messages[i]
                try:
                    _raise_for(message)
                except ValueError:
                    error(message, exc_info=True)

        return with_exc

    def repeated(start: int, count: int) -> None:
        for _ in range(count):
            error("step failed: the input is invalid")

    return repeated


class _Watchdog:
    """Reports a batch that blocks past the limit, then ends the process."""

    def __init__(self, limit: float, results: dict[str, Any], variants: list[str]) -> None:
        self.limit = limit
        self.results = results
        self.variants = variants
        self.variant = ""
        self.started: float | None = None
        self.calls = 1
        self.phase = ""
        threading.Thread(target=self._run, daemon=True).start()

    def begin(self, calls: int = 1, phase: str = "timed") -> None:
        """A phase of ``calls`` logging calls starts (untimed phases: ``calls=1``)."""
        self.calls = calls
        self.phase = phase
        self.started = time.perf_counter()

    def end(self) -> None:
        """The phase ended."""
        self.started = None

    def _run(self) -> None:
        while True:
            time.sleep(0.02)
            started = self.started
            if started is None:
                continue
            waited = time.perf_counter() - started
            if waited < self.limit:
                continue
            blocked = {
                "blocked": True,
                "lower_bound_us": waited / self.calls * 1e6,
                "phase": self.phase,
            }
            self.results[self.variant] = blocked
            for variant in self.variants:
                if variant not in self.results:
                    self.results[variant] = {**blocked, "inferred": True}
            _emit(self.results)


def _emit(results: dict[str, Any]) -> None:
    os.write(1, (json.dumps(results) + "\n").encode())
    os._exit(0)


def _after_idle(setup: Any, watch: _Watchdog, samples: int) -> dict[str, Any]:
    """One call after 50 ms of idleness, as a sporadic error is made; repeated."""
    watch.variant = "after_idle"
    idle = []
    for i in range(samples):
        setup.drain()
        time.sleep(0.05)
        watch.begin()
        t0 = time.perf_counter_ns()
        setup.logger.error(f"after idle {i}: step failed")
        idle.append((time.perf_counter_ns() - t0) / 1e3)
        watch.end()
    watch.variant = "flood"
    return {"blocked": False, "per_call_us": summary(idle)}


def child_main(cfg: dict[str, Any]) -> None:
    """Measure one library in one server state (see the module docstring)."""
    from benchmarks._libs import configure

    healthy = cfg["state"] in ("healthy", "any")
    setup = configure(cfg["lib"], cfg["url"], cfg["dsn"], healthy)
    variants: list[str] = cfg["variants"]
    batch, budget, max_batches = cfg["batch"], cfg["budget"], cfg["max_batches"]
    results: dict[str, Any] = {}
    watch = _Watchdog(cfg["block_limit"], results, variants)
    per_variant = batch * (max_batches + 2) * 2 + 2
    clock = time.perf_counter_ns
    # After a drain that waited (idle), the next call runs with cold caches: on this kind
    # of machine ~0.2 ms whatever the handler (see docs/performance.md). One untimed call
    # before each timed batch keeps that artifact of the method out of the steady state.
    rewarm = healthy and setup.drain_waits
    plain_cost = 0.0
    watch.variant = variants[0]
    watch.begin(phase="INFO history")
    for i in range(INFO_FILL):  # an application's INFO history (sentry-sdk keeps 100)
        setup.logger.info("step %d done", i)
    watch.end()
    setup.drain()
    for variant in variants:
        watch.variant = variant
        messages = [f"{variant} step {i} failed: input {i} is invalid" for i in range(per_variant)]
        call = _make_call(variant, setup.logger, messages)

        def timed(first: int, count: int, call: Callable[[int, int], None] = call) -> float:
            watch.begin(count)
            t0 = clock()
            call(first, count)
            elapsed = clock() - t0
            watch.end()
            return elapsed / 1e9 / count

        if variant == "flood" and healthy and plain_cost < 0.05 and cfg["idle_samples"]:
            results["after_idle"] = _after_idle(setup, watch, cfg["idle_samples"])
        if variant == "flood" and plain_cost < 100e-6:
            # past the fold table's 1,024 open windows: untimed distinct calls first
            fill = _make_call("plain", setup.logger, [f"fill {i}" for i in range(FLOOD_FILL)])
            watch.begin(phase="flood fill")
            fill(0, FLOOD_FILL)
            watch.end()
            setup.drain()
        start = time.perf_counter()
        first_call = timed(0, 1)
        index = 1
        size = batch if first_call * batch < budget / 4 else max(1, int(budget / 4 / first_call))
        setup.drain()
        if first_call < 0.01:  # one untimed warm-up batch for the fast paths
            timed(index, size)
            index += size
            setup.drain()
        samples: list[float] = []
        deadline = start + budget
        limit = DISTINCT_CALLS if variant in ("plain", "exc_info") else len(messages) - 1
        while (
            len(samples) < max_batches
            and time.perf_counter() < deadline
            and index + size + rewarm <= limit
        ):
            if rewarm:
                watch.begin(phase="re-warm call")
                call(index, 1)
                watch.end()
                index += 1
            samples.append(timed(index, size))
            index += size
            setup.drain()
        if not samples:
            samples = [first_call]
        results[variant] = {
            "blocked": False,
            "per_call_us": summary([s * 1e6 for s in samples]),
            "batch": size,
            "calls": index,
            "first_call_us": first_call * 1e6,
        }
        if variant == "plain":
            plain_cost = results[variant]["per_call_us"]["median"] / 1e6
    results["_stats"] = setup.stats()
    _emit(results)


# --- the parent's side -------------------------------------------------------------------


def run(server: Any, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Run every cell; return ``{"config", "cells": {lib: {state: {variant: ...}}}, ...}``."""
    params = QUICK if quick else FULL
    cells: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}

    def measure(lib: str, state: str, url: str, dsn: str) -> None:
        cfg = {
            "lib": lib,
            "state": state,
            "url": url,
            "dsn": dsn,
            "variants": list(VARIANTS),
            **params,
        }
        timeout = params["budget"] * len(VARIANTS) * 3 + params["block_limit"] + 60
        res = run_child(
            ["-m", "benchmarks.percall", json.dumps(cfg)], env=child_env(url), timeout=timeout
        )
        if res.data is None:
            cells.setdefault(lib, {})[state] = {"error": res.error, "stderr": res.stderr_tail}
            log(f"  {label(lib)} [{state}]: ERROR {res.error}")
            return
        cells.setdefault(lib, {})[state] = res.data
        shown = []
        for variant in VARIANTS:
            cell = res.data.get(variant, {})
            if cell.get("blocked"):
                shown.append(f"{variant} blocked >= {cell['lower_bound_us'] / 1e6:.1f} s")
            elif cell:
                shown.append(f"{variant} {cell['per_call_us']['median']:.1f} us")
        log(f"  {label(lib)} [{state}]: " + ", ".join(shown))

    # one short untimed child first: the first process of a run measures slower
    warm = {**QUICK, "lib": "null", "state": "any", "url": "", "dsn": "", "variants": ["plain"]}
    run_child(["-m", "benchmarks.percall", json.dumps(warm)], env=child_env(), timeout=60)
    for lib in LOCAL_LIBS:
        measure(lib, "any", "http://127.0.0.1:9", "http://public@127.0.0.1:9/1")
    for state in STATES:
        for lib in NETWORK_LIBS:
            if not available(lib):
                skipped[lib] = (
                    f"{label(lib)} is not installed (pip install -r benchmarks/requirements.txt)"
                )
                continue
            endpoints = server.set_state(state)
            server.reset()
            measure(lib, state, endpoints.url, endpoints.sentry_dsn)
    server.set_state("healthy")
    server.reset()
    return {"config": params, "variants": list(VARIANTS), "cells": cells, "skipped": skipped}


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
