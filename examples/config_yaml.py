"""Configure the handler from a YAML file (``logging.yaml``, next to this script).

YAML is the ``dictConfig`` schema written as a file; ``pip install
'migas-logging[yaml]'`` brings PyYAML. Quote versions: ``version: 1.10`` would be read
as the number 1.1.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/config_yaml.py
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from pathlib import Path

import yaml

CONFIG = Path(__file__).with_name("logging.yaml")


def run() -> None:
    """One INFO (not sent), one WARNING with a named extra, one ERROR with an exception."""
    log = logging.getLogger("myapp.pipeline")
    log.info("starting with %d subjects", 2)
    log.warning("subject %s has no fieldmap", "sub-01", extra={"step": "fieldmap"})
    try:
        {}["sub-02"]
    except KeyError:
        log.exception("could not process %s", "sub-02")


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    logging.config.dictConfig(yaml.safe_load(CONFIG.read_text()))
    run()
