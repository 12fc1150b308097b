"""Records prepared by a QueueHandler never leak their arguments or source lines.

The logging cookbook's QueueHandler -> QueueListener set-up (and Python 3.12's
dictConfig ``queue_handler``) hands a MigasHandler a record whose ``msg`` is the formatted
message with the traceback appended, ``args`` None and ``exc_info`` gone.
"""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import queue
import sys
from collections.abc import Iterator

import pytest

from migas_logging import MigasHandler
from migas_logging.collector import LocalCollector

PROJECT = "nipreps/migas-logging"
SECRET_ARG = "Jane Doe"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def load(name: str) -> None:
    raise ValueError("bad header")


def log_failure(logger: logging.Logger) -> None:
    try:
        load(SECRET_ARG)
    except ValueError:
        logger.exception("could not load %s", SECRET_ARG)


def assert_nothing_leaked(
    collector: LocalCollector, *, arguments_allowed: bool = False
) -> dict[str, object]:
    """No source line or traceback ever; no argument unless message="formatted" asked."""
    (row,) = collector.wait_for(1)
    bodies = b"".join(r.body for r in collector.requests())
    assert arguments_allowed or SECRET_ARG.encode() not in bodies
    assert b"load(" not in bodies  # no source line
    assert b"Traceback" not in bodies
    assert ("F", "ValueError") == (row["status"], row["error_type"])
    assert "bad header" in str(row["error_desc"])
    return row


@pytest.mark.parametrize("mode", ["template", "formatted", "json", "none"])
def test_cookbook_queue_listener(collector: LocalCollector, mode: str) -> None:
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    migas = MigasHandler(PROJECT, "1", endpoint=collector.url, excepthook=False, message=mode)
    listener = logging.handlers.QueueListener(q, migas)
    listener.start()
    logger = logging.getLogger(f"tool.{mode}")
    logger.propagate = False
    logger.handlers[:] = [logging.handlers.QueueHandler(q)]
    try:
        log_failure(logger)
    finally:
        listener.stop()
    migas.flush(5)
    row = assert_nothing_leaked(collector, arguments_allowed=mode == "formatted")
    assert f"tool.{mode}" in str(row["status_desc"])
    migas.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="dictConfig queue_handler is 3.12+")
def test_dictconfig_queue_handler(collector: LocalCollector) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "migas": {
                    "class": "migas_logging.MigasHandler",
                    "project": PROJECT,
                    "endpoint": collector.url,
                    "excepthook": False,
                },
                "queued": {"class": "logging.handlers.QueueHandler", "handlers": ["migas"]},
            },
            "loggers": {"tool312": {"handlers": ["queued"], "level": "INFO", "propagate": False}},
        }
    )
    queued = logging.getLogger("tool312").handlers[0]
    queued.listener.start()  # type: ignore[attr-defined]  # dictConfig does not start it
    log_failure(logging.getLogger("tool312"))
    queued.listener.stop()  # type: ignore[attr-defined]
    row = assert_nothing_leaked(collector)
    assert "tool312" == str(row["status_desc"]).split(":")[0].split(" ")[0]
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
