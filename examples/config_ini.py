"""Configure the handler with ``logging.config.fileConfig`` (``logging.ini``, next to it).

In an ini file the handler's constructor arguments are ``args`` (positional: project,
version) and ``kwargs`` (every other option), both Python literals.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/config_ini.py
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("logging.ini")


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
    logging.config.fileConfig(CONFIG, disable_existing_loggers=False)
    run()
