"""A command-line tool (argparse) that reports its runs to a migas server.

One ``MigasHandler`` with ``track=True`` is the whole telemetry set-up: the run is
reported as ``R`` / ``Started``, every warning and error the tool logs becomes a
breadcrumb, and the run ends with exactly one terminal breadcrumb: ``C`` / ``Completed``,
or ``F`` / ``Errored`` when it crashes (the traceback still prints).

Try it against a local collector (``migas-logging serve`` accepts the project
``nipreps/migas-logging`` by default)::

    migas-logging serve &
    export MIGAS_ENDPOINT=http://127.0.0.1:8080
    python examples/cli_tool.py sub-01 missing-02 sub-03
    python examples/cli_tool.py --crash sub-01
    curl http://127.0.0.1:8080/_collector/breadcrumbs
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from migas_logging import MigasHandler

PROJECT = "nipreps/migas-logging"  # your GitHub owner/repo, registered on the server
VERSION = "1.0.0"

log = logging.getLogger("cli_tool")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The tool's command line."""
    parser = argparse.ArgumentParser(description="Process some subjects.")
    parser.add_argument("subjects", nargs="+", help="subject ids; 'missing-*' have no data")
    parser.add_argument("--crash", action="store_true", help="fail with an uncaught error")
    parser.add_argument("-v", "--verbose", action="store_true", help="print INFO messages")
    return parser.parse_args(argv)


def setup_logging(verbose: bool) -> None:
    """Console output as usual, plus telemetry for WARNING and above."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    # The endpoint comes from MIGAS_ENDPOINT; track=True adds Started / Completed.
    root.addHandler(MigasHandler(PROJECT, VERSION, level="WARNING", track=True))


def process(subject: str) -> bool:
    """Pretend to process one subject; returns whether it had data."""
    if subject.startswith("missing"):
        # Sent as "cli_tool: no data for %s; skipped": the subject id stays here.
        log.warning("no data for %s; skipped", subject)
        return False
    log.info("processed %s", subject)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.crash:
        raise RuntimeError("the tool crashed on purpose (--crash)")
    done = sum(process(subject) for subject in args.subjects)
    print(f"{done} of {len(args.subjects)} subjects processed")
    return 0


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    sys.exit(main())
