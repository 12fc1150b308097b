"""A structlog application (pure structlog, no standard-library logging).

``MigasProcessor`` goes into the processor chain BEFORE ``format_exc_info``: that
processor replaces the exception by a rendered string, and an exception that is gone
cannot be summarised (type, message, the last frames as ``module:function:line``).
The processor returns every event unchanged, so the JSON lines on stdout are exactly
what they would be without it.

What is sent is ``<logger>: <event>``: the event name, never the key-value pairs bound
to it (``subject="sub-01"`` stays on this machine) unless you name them in ``extras``.
Bind ``logger=`` to name the logger: pure structlog loggers have no name, and events
without one are sent as ``structlog: <event>``.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/structlog_app.py
"""

from __future__ import annotations

import os
import statistics
import sys

import structlog

from migas_logging.processors import MigasProcessor

PROJECT = "nipreps/migas-logging"
VERSION = "1.0.0"


def configure() -> MigasProcessor:
    """Configure structlog with the processor; returns it (for its stats)."""
    migas = MigasProcessor(PROJECT, VERSION, level="WARNING", extras=["step"])
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            migas,  # before format_exc_info, so that exceptions can be summarised
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    )
    return migas


def main() -> int:
    """Log a few events; WARNING and above become breadcrumbs."""
    migas = configure()
    log = structlog.get_logger().bind(logger="structlog_app")
    log.info("run started", subjects=2)  # below WARNING: not sent
    log.warning("step slow", step="registration", subject="sub-01")
    try:
        statistics.mean([])  # no usable volumes left for sub-02
    except statistics.StatisticsError:
        log.exception("step failed", step="motion", subject="sub-02")
    migas.handler.flush()
    print(migas.handler.stats, file=sys.stderr)
    return 0


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    sys.exit(main())
