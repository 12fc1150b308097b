"""A long-running service: a work loop that stops after N iterations or on a signal.

The service handles SIGTERM and SIGINT itself (it finishes the current iteration, then
leaves the loop). Its signal handlers are installed BEFORE the ``MigasHandler`` with
``track=True``: the handler's own signal handlers then chain to them, note the signal,
and the run's terminal breadcrumb says why it ended:

- the loop ran its ``--iterations``: ``C`` / ``Completed [sent N, folded N, dropped N]``;
- SIGTERM (``kill``, a container stop): ``S`` / ``Terminated (SIGTERM) [...]``;
- SIGINT (Ctrl-C): ``S`` / ``Suspended``.

(Installed AFTER the handler, the service's handlers would replace its handlers instead
of being chained to, and every graceful stop would be reported as ``Completed``.)

Repeated warnings fold: the first goes out at once, the repeats within ``fold_window``
seconds become one more breadcrumb with ``[repeated N more times in ...]``.

Try it::

    migas-logging serve &
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/service.py --iterations 20
    MIGAS_ENDPOINT=http://127.0.0.1:8080 python examples/service.py &  kill %2
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from migas_logging import MigasHandler

PROJECT = "nipreps/migas-logging"
VERSION = "1.0.0"

log = logging.getLogger("service")
stop = threading.Event()


def request_stop(signum: int, frame: FrameType | None) -> None:
    """Signal handler: finish the current iteration, then leave the loop."""
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loop until ``--iterations`` are done or a signal arrives."""
    parser = argparse.ArgumentParser(description="A service with a work loop.")
    parser.add_argument("--iterations", type=int, default=0, help="0: run until stopped")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between runs")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    handler = MigasHandler(PROJECT, VERSION, level="WARNING", track=True, fold_window=30)
    logging.getLogger().addHandler(handler)

    log.info("service started (pid %d)", os.getpid())
    print("ready", flush=True)  # lets a supervisor (or a test) know the loop is running
    iteration = 0
    while not stop.wait(args.interval):
        iteration += 1
        if iteration % 3 == 0:
            log.warning("queue backlog above %d items", 100)  # folds after the first
        if args.iterations and iteration >= args.iterations:
            break
    log.info("service stopping after %d iterations", iteration)
    return 0


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    sys.exit(main())
