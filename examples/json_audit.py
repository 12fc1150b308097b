"""JSON logging and the audit trail.

Three JSON streams, each with its own job:

- the application's own log, as JSON lines on stdout: python-json-logger's
  ``JsonFormatter`` on an ordinary ``StreamHandler`` (nothing to do with telemetry);
- ``message="json"``: each breadcrumb's ``status_desc`` is a compact JSON object of the
  logger's name, the message template and the named ``extras``, easy to query on the
  server side;
- ``audit_file=``: every breadcrumb this process sent, exactly as sent, and every one it
  dropped, with the reason, one JSON line each: what a user can read to see for
  themselves what the tool's telemetry contains. (``MIGAS_AUDIT_FILE`` does the same
  without a code change: a user can turn it on for any tool.)

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/json_audit.py migas-audit.jsonl
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter

from migas_logging import MigasHandler


def configure(audit_file: Path) -> MigasHandler:
    """JSON lines on stdout, JSON breadcrumbs, and an audit trail."""
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    migas = MigasHandler(
        "nipreps/migas-logging",
        "1.0.0",
        level="WARNING",
        message="json",  # status_desc: {"logger": ..., "message": <template>, "step": ...}
        extras=["step"],  # only these extra={...} keys are sent; "subject" is not
        audit_file=str(audit_file),
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(console)
    root.addHandler(migas)
    return migas


def main(audit_file: Path) -> int:
    """Log, flush, then show what the audit trail says was sent."""
    migas = configure(audit_file)
    log = logging.getLogger("myapp.pipeline")
    log.info("run started", extra={"step": "init"})  # below WARNING: not sent
    log.warning("step %s slow", "bet", extra={"step": "bet", "subject": "sub-01"})
    log.error("step %s failed", "recon", extra={"step": "recon", "subject": "sub-01"})
    migas.flush()
    for line in audit_file.read_text().splitlines():
        entry = json.loads(line)
        print(f"audit: {entry['event']}: {entry['breadcrumb']['proc']['status_desc']}")
    return 0


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "migas-audit.jsonl")))
