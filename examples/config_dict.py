"""Configure the handler with ``logging.config.dictConfig`` and a plain dict.

The handler is one more entry under ``handlers``; its options are plain values, and a
bad one fails here, in ``dictConfig``, with a ``ValueError`` that names it and the fix.
``endpoint`` is not given: the handler reads ``MIGAS_ENDPOINT``.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/config_dict.py
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "migas": {
            "class": "migas_logging.MigasHandler",
            "project": "nipreps/migas-logging",  # your owner/repo, registered on the server
            "version": "1.0.0",
            "level": "WARNING",  # WARNING is sent as R (running), ERROR and above as F
            "rate_limit": "30/60",
        },
    },
    "root": {"handlers": ["console", "migas"], "level": "INFO"},
}


def run() -> None:
    """What every configuration example logs: one INFO, one WARNING, one ERROR."""
    log = logging.getLogger("myapp.pipeline")
    log.info("starting with %d subjects", 2)  # below the handler's level: not sent
    log.warning("subject %s has no fieldmap", "sub-01")  # R
    try:
        {}["sub-02"]
    except KeyError:
        log.exception("could not process %s", "sub-02")  # F, with error_type KeyError


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    logging.config.dictConfig(LOGGING)
    run()
