"""A multiprocessing pipeline: fork and spawn workers reporting into one session.

The dashboard groups breadcrumbs by session, one session per run. Workers made by
``fork`` keep their parent's session id, and its logging configuration, by themselves.
Workers made by ``spawn`` (the default on macOS and Windows) start a fresh interpreter:
they configure logging again (the pool's ``initializer``) and join the parent's session
through ``MIGAS_SESSION_ID``, which :func:`migas_logging.export_session_id` sets for
every process started afterwards.

One detail matters with multiprocessing: the workers must end normally to deliver what
they still hold (``pool.close()`` then ``pool.join()``); ``pool.terminate()``, which
leaving a ``with Pool(...)`` block calls, kills them. A forked worker ends with
``os._exit()``, which skips ``atexit``; migas-logging flushes it through
multiprocessing's own finalizers instead.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/pipeline.py sub-01 sub-02 bad-03
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys

import migas_logging

PROJECT = "nipreps/migas-logging"
VERSION = "1.0.0"

log = logging.getLogger("pipeline")


def configure_logging() -> migas_logging.MigasHandler:
    """Console and telemetry; returns this process's MigasHandler.

    In the parent it configures logging. A forked worker inherits that configuration
    and finds the handler; a spawned worker (the pool's initializer) configures again.
    """
    logging.basicConfig(level=logging.INFO, format="%(processName)s %(levelname)s %(message)s")
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, migas_logging.MigasHandler):
            return handler
    handler = migas_logging.MigasHandler(PROJECT, VERSION, level="WARNING")
    root.addHandler(handler)
    return handler


def process(subject: str) -> str:
    """One task: runs in a worker process."""
    if subject.startswith("bad"):
        log.error("subject %s failed quality control", subject)
        return f"{subject}: failed"
    log.warning("subject %s processed without a fieldmap", subject)
    return f"{subject}: done"


def run_pool(method: str, subjects: list[str]) -> list[str]:
    """Run the tasks in a pool of ``method`` workers."""
    context = multiprocessing.get_context(method)
    pool = context.Pool(2, initializer=configure_logging)
    try:
        return pool.map(process, [f"{s}-{method}" for s in subjects])
    finally:
        pool.close()  # close + join: the workers end normally (terminate would kill them)
        pool.join()


def main(subjects: list[str]) -> int:
    """Run the subjects through fork workers (where available) and spawn workers."""
    configure_logging()
    session = migas_logging.export_session_id()  # spawn workers join this session
    log.warning("pipeline started with %d subjects", len(subjects))
    methods = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
    for method in methods:
        for line in run_pool(method, subjects):
            print(line)
    print(f"session {session}")
    return 0


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    sys.exit(main(sys.argv[1:] or ["sub-01", "sub-02", "bad-03"]))
