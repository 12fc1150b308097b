"""How each library is set up inside a child process, the way an application would.

Every setup logs through ``logging.getLogger("bench.app")`` (``propagate=False``, level
DEBUG; the handlers that send take WARNING and above, sentry-sdk ERROR and above as
events and INFO and above as breadcrumbs, its defaults), and
``logging.lastResort`` is removed so that "no handler" measures the logging machinery,
not a write to stderr. Each returns a :class:`Setup` with a ``drain`` that waits until
what was logged so far is delivered (or emptied), called between timed batches only.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks._common import PROJECT, VERSION

LOGGER_NAME = "bench.app"


@dataclass
class Setup:
    """A configured library, ready to be logged through."""

    logger: logging.Logger
    drain: Callable[[], None] = lambda: None
    drain_waits: bool = False
    """True when ``drain`` waits for a background thread (the process goes idle)."""
    stats: Callable[[], dict[str, Any]] = dict


class MigasClientHandler(logging.Handler):
    """The official client in a logging handler: one ``migas.add_breadcrumb`` per record.

    This is the obvious integration for an application that uses the official client
    (it has no logging integration of its own): the call is synchronous, on the
    application's thread.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Send the record as one breadcrumb, synchronously."""
        import migas  # type: ignore[import-untyped]

        try:
            kwargs: dict[str, Any] = {
                "status": "F" if record.levelno >= logging.ERROR else "R",
                "status_desc": f"{record.name}: {record.getMessage()}",
            }
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                kwargs["error_type"] = type(exc).__name__
                kwargs["error_desc"] = str(exc)
            migas.add_breadcrumb(PROJECT, VERSION, **kwargs)
        except Exception:
            self.handleError(record)


def _logger() -> logging.Logger:
    logging.lastResort = None
    logging.Logger.manager.emittedNoHandlerWarning = True
    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log


def configure(lib: str, url: str, sentry_dsn: str, healthy: bool) -> Setup:
    """Set ``lib`` up to send to ``url`` (or ``sentry_dsn``); see the module docstring.

    Args:
        lib: a key of :data:`benchmarks._common.LIBRARIES`.
        url: the collector's base URL (loopback).
        sentry_dsn: the DSN of the sentry sink (loopback).
        healthy: whether the server answers; only then does ``drain`` wait for delivery.
    """
    log = _logger()
    if lib == "none":
        return Setup(log)
    if lib == "null":
        log.addHandler(logging.NullHandler())
        return Setup(log)
    if lib == "queue":
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        log.addHandler(logging.handlers.QueueHandler(q))

        def empty() -> None:
            while not q.empty():
                q.get_nowait()

        return Setup(log, empty)
    if lib == "http":
        host = url.removeprefix("http://")
        http = logging.handlers.HTTPHandler(host, "/api/breadcrumb", method="POST")
        http.setLevel(logging.WARNING)
        log.addHandler(http)
        return Setup(log)
    if lib == "sentry":
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration

        sentry_sdk.init(
            dsn=sentry_dsn,
            release="bench@1.0.0",  # else sentry-sdk runs `git rev-parse` to find one
            integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        )

        def sentry_flush() -> None:
            if healthy:
                sentry_sdk.flush(timeout=10)

        return Setup(log, sentry_flush, drain_waits=True)
    if lib == "migas":
        import migas

        migas.setup(endpoint=url + "/graphql", save_config=False)
        log.addHandler(MigasClientHandler(logging.WARNING))
        return Setup(log)
    if lib == "migas_logging":
        from migas_logging import MigasHandler

        handler = MigasHandler(
            PROJECT,
            VERSION,
            level=logging.WARNING,
            endpoint=url,
            rate_limit=None,
            queue_size=1_000_000,
        )
        log.addHandler(handler)

        def migas_flush() -> None:
            if healthy:
                handler.flush(timeout=10)

        return Setup(log, migas_flush, drain_waits=True, stats=handler.stats.as_dict)
    raise ValueError(f"unknown library {lib!r}")
