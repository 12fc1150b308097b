"""Helpers for the small applications that reliability tests run in their own interpreter.

A test gives the body of a program; ``run_app`` (see ``conftest.py``) prepends
``from _app import *; start()`` and runs it with this directory on ``PYTHONPATH``. The program
logs through a real :class:`~migas_logging.MigasHandler` to a real collector, prints
``LOGGED`` when its logging is done (the test times the exit from there), and at exit
prints one ``REPORT`` line: the handlers' accounting taken AFTER migas's own exit flush
(``atexit`` runs the last-registered hook first, and :func:`start` registers its hook
before any handler exists).

It is also imported by the in-process tests for :func:`quick_pipeline`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from typing import Any

PROJECT = "nipreps/migas-logging"

#: The application's logger (made private by :func:`start`).
log = logging.getLogger("app")

handlers: list[Any] = []
extra: dict[str, Any] = {"max_call": 0.0, "calls": 0}
#: "main" in the program the test started; children say what they are (see below).
role = {"name": "main"}


def say(tag: str, **data: Any) -> None:
    """Print one ``TAG {json}`` line and flush, so the test sees it at once."""
    sys.stdout.write(f"{tag} {json.dumps(data, default=str)}\n")
    sys.stdout.flush()


def _report() -> None:
    from migas_logging import client, config

    pipe = client.current_client()
    say(
        "REPORT",
        pid=os.getpid(),
        role=role["name"],
        main=role["name"] == "main",
        handlers=[h.stats.as_dict() for h in handlers],
        total=pipe.total.as_dict() if pipe is not None else None,
        session=config._session_id,
        extra=extra,
    )


def start(name: str = "main") -> None:
    """Called first by every program: register the exit report, make ``log`` private."""
    role["name"] = name
    log.setLevel(logging.DEBUG)
    log.propagate = False
    atexit.register(_report)


def child_records(tag: str, count: int) -> None:
    """What every child does: ``count`` distinct errors, tagged."""
    for i in range(count):
        log.error(f"{tag} record {i}")


def mp_child(tag: str, count: int, flush: bool) -> None:
    """A ``multiprocessing`` (fork) child: log, then maybe flush, then return."""
    role["name"] = tag
    child_records(tag, count)
    if flush:
        for handler in handlers:
            handler.flush(5)


def spawn_child(url: str, tag: str, count: int) -> None:
    """A ``multiprocessing`` spawn child: a fresh interpreter configures its own handler."""
    start(tag)
    setup(url, rate_limit=None, fold_window=0)
    child_records(tag, count)


def setup(url: str, *, logger: str = "app", **options: Any) -> Any:
    """A MigasHandler on ``logger`` (defaults: no crash hook); it is reported at exit."""
    from migas_logging import MigasHandler

    options.setdefault("excepthook", False)
    handler = MigasHandler(PROJECT, "1.2.3", endpoint=url, **options)
    target = logging.getLogger(logger)
    target.setLevel(logging.DEBUG)
    target.propagate = False
    target.addHandler(handler)
    handlers.append(handler)
    return handler


def call(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Make one logging call and keep the longest such call (a functional bound)."""
    start = time.monotonic()
    fn(*args, **kwargs)
    extra["max_call"] = max(extra["max_call"], time.monotonic() - start)
    extra["calls"] += 1


def log_mix(distinct: int = 20, repeats: int = 10, tag: str = "") -> None:
    """``distinct`` different errors, then ``repeats`` of one (which fold)."""
    for i in range(distinct):
        call(log.error, f"distinct record {tag}{i}")
    for i in range(repeats):
        call(log.error, "repeated record %s", i)


def logged() -> None:
    """Tell the test that logging is done: it times the exit from here."""
    say("LOGGED", t=time.monotonic())


def quick_pipeline(url: str, timeout: float, *, pause: float = 0.5, **options: Any) -> Any:
    """Install the real pipeline with its two pauses capped at ``pause`` seconds.

    The circuit breaker's cooldown (30 s, doubling) and the 429 window without
    ``Retry-After`` (60 s) are the only time constants changed; everything else is the
    library's own code. Handlers made afterwards for ``url`` share this pipeline.
    """
    from migas_logging import client

    settings = client.ClientSettings.resolve(url, timeout, **options)
    settings = client.with_settings(settings, rate_window=pause, circuit_cooldown=pause)
    return client.install(settings)


def resources() -> dict[str, int]:
    """This process's resident memory (kB), open descriptors and threads."""
    rss = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {
        "rss_kb": rss,
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(os.listdir("/proc/self/task")),
        "threads": threading.active_count(),
    }
