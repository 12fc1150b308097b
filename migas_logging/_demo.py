"""``migas-logging demo``: the whole path on one machine, with nothing hosted.

It starts a local collector on a free loopback port, configures logging with
``logging.config.dictConfig`` and a ``MigasHandler`` pointed at it, logs a few records
(one below the handler's level, a warning, an error with an exception, and repeats that
fold), flushes, and prints what the collector stored and the handler's accounting.
The demo's user id is kept in a temporary ``XDG_CONFIG_HOME``, never in the real
``~/.config/migas/user_id``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

PROJECT = "nipreps/migas-logging"
COLUMNS = ("seq", "status", "status_desc", "error_type", "error_desc")


def _logging_config(url: str, *, console: str = "ext://sys.stdout") -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "  app log | %(levelname)-7s %(name)s: %(message)s"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": console,
            },
            "migas": {
                "class": "migas_logging.MigasHandler",
                "project": PROJECT,
                "version": "1.0.0",
                "level": "WARNING",
                "endpoint": url,
                "fold_window": 30,
            },
        },
        "root": {"level": "INFO", "handlers": ["console", "migas"]},
    }


def _work(log: logging.Logger) -> None:
    log.info("pipeline started with %d subjects", 3)  # below WARNING: not shipped
    log.warning("subject %s has no fieldmap; skipping distortion correction", "sub-01")
    try:
        _ = {"sub-02": 1}["sub-03"]
    except KeyError:
        log.exception("could not process subject %s", "sub-03")
    for subject in ("sub-04", "sub-05", "sub-06", "sub-07"):
        log.error("registration failed for %s", subject)  # folds into one + a count


@contextlib.contextmanager
def _private_config_home() -> Iterator[str]:
    """Point ``XDG_CONFIG_HOME`` at a temporary directory, then restore it and remove that."""
    previous = os.environ.get("XDG_CONFIG_HOME")
    with tempfile.TemporaryDirectory(prefix="migas-logging-demo-") as home:
        os.environ["XDG_CONFIG_HOME"] = home
        try:
            yield home
        finally:
            if previous is None:
                os.environ.pop("XDG_CONFIG_HOME", None)
            else:
                os.environ["XDG_CONFIG_HOME"] = previous


def run_demo(*, as_json: bool = False) -> int:
    """Run the demo; returns an exit status.

    0 when the breadcrumbs arrived, or when ``MIGAS_OPTOUT`` is set (then nothing is
    sent, and the output says so); 1 otherwise.
    """
    from migas_logging import config
    from migas_logging._table import table
    from migas_logging.collector import LocalCollector
    from migas_logging.handler import MigasHandler

    out = sys.stdout
    optout = config.optout()
    with _private_config_home(), LocalCollector(register=(PROJECT,)) as collector:
        if not as_json:
            print(f"1. local migas collector started at {collector.url}", file=out)
            print(
                "   (MIGAS_OPTOUT is set: the handler will send nothing and write nothing)"
                if optout
                else "   (the demo's user id goes to a temporary XDG_CONFIG_HOME, removed at "
                "the end: your ~/.config/migas/user_id is not written)",
                file=out,
            )
            print(
                "2. logging configured with dictConfig (console + MigasHandler at WARNING)",
                file=out,
            )
            print("3. the application logs:", file=out)
        # with --json, stdout carries only the JSON: the application's log goes to stderr
        console = "ext://sys.stderr" if as_json else "ext://sys.stdout"
        logging.config.dictConfig(_logging_config(collector.url, console=console))
        handler = next(h for h in logging.getLogger().handlers if isinstance(h, MigasHandler))
        _work(logging.getLogger("demo.pipeline"))
        handler.flush(5.0)
        stats = handler.stats.as_dict()
        rows = collector.breadcrumbs(project=PROJECT)
        logging.getLogger().removeHandler(handler)
        handler.close()
    ok = optout or (len(rows) >= 3 and stats["pending"] == 0)
    if as_json:
        result = {"collector": collector.url, "optout": optout, "breadcrumbs": rows}
        print(json.dumps({**result, "stats": stats}, indent=2, default=str))
    elif optout:
        print(
            f"4. the collector stored {len(rows)} breadcrumbs: MIGAS_OPTOUT is set, so the "
            "handler sent nothing (that is what opting out does; unset MIGAS_OPTOUT to see "
            "the demo's breadcrumbs)",
            file=out,
        )
        print(f"5. the handler's accounting: {stats}", file=out)
    else:
        print(f"4. the collector stored {len(rows)} breadcrumbs:", file=out)
        print(table(rows, COLUMNS, width=100), file=out)
        print(f"5. the handler's accounting: {stats}", file=out)
        print(
            "   (every record is sent, folded into a repeat count, or dropped with a reason)",
            file=out,
        )
    return 0 if ok else 1
