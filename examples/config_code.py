"""Configure the handler in plain code.

``MigasHandler`` is a ``logging.Handler``: make one and add it to a logger. Positional
arguments are the project, the version and the level; every other option is a keyword.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/config_code.py
"""

from __future__ import annotations

import logging
import os
import sys

from migas_logging import MigasHandler


def configure() -> MigasHandler:
    """Console output for INFO and above, telemetry for WARNING and above."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handler = MigasHandler("nipreps/migas-logging", "1.0.0", "WARNING", rate_limit="30/60")
    logging.getLogger().addHandler(handler)
    return handler


def run() -> None:
    """One INFO (not sent), one WARNING, one ERROR with an exception."""
    log = logging.getLogger("myapp.pipeline")
    log.info("starting with %d subjects", 2)
    log.warning("subject %s has no fieldmap", "sub-01")
    try:
        {}["sub-02"]
    except KeyError:
        log.exception("could not process %s", "sub-02")


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    handler = configure()
    run()
    handler.flush()  # optional: the exit flush would do it too
    print(f"telemetry: {handler.stats.as_dict()}")
