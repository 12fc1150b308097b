"""structlog over the standard library, without sending anything twice.

An application that uses structlog on top of ``logging`` has two streams: its own
structlog events, and the records of the libraries it uses (plain ``logging``). A
``MigasHandler`` on the root logger catches both, but it sees structlog events only
after structlog rendered them: with ``ProcessorFormatter.wrap_for_formatter`` the
record's message is the whole event dict (every bound value), and with a renderer at
the end of the chain it is the rendered line. So this set-up uses both:

- ``MigasProcessor`` in the structlog chain sends structlog events (the event name,
  the exception summary, only the ``extras`` you name), and marks them as sent;
- ``MigasHandler`` on the root logger sends the libraries' records, and skips the
  structlog events the processor already sent (counted as ``dropped["duplicate"]``).

Give both the same level. Run it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/structlog_stdlib.py
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from migas_logging import MigasHandler
from migas_logging.processors import MigasProcessor

PROJECT = "nipreps/migas-logging"
VERSION = "1.0.0"


def configure() -> tuple[MigasProcessor, MigasHandler]:
    """structlog through ``logging``, rendered to the console by ProcessorFormatter."""
    shared = [structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level]
    migas = MigasProcessor(PROJECT, VERSION, level="WARNING")
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            migas,  # before format_exc_info and before the hand-over to logging
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=shared,  # the libraries' records get the same fields
        )
    )
    handler = MigasHandler(PROJECT, VERSION, level="WARNING")
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return migas, handler


def main() -> int:
    """One structlog warning, one structlog error, one library error."""
    migas, handler = configure()
    log = structlog.get_logger("app")
    log.warning("cache miss", key="sub-01")  # sent once, by the processor
    try:
        {}["sub-02"]
    except KeyError:
        log.exception("lookup failed", key="sub-02")  # sent once, by the processor
    logging.getLogger("somelib.io").error("read failed after %d tries", 3)  # by the handler
    handler.flush()
    print(f"processor: {migas.handler.stats}", file=sys.stderr)
    print(f"handler:   {handler.stats}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    sys.exit(main())
