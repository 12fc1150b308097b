"""A nipype-like command-line tool that ends its runs the way fMRIPrep does.

It has the shape of a NiPreps BIDS App, without nipype: a ``NodeExecutionError`` of its
own, raised with nipype's real message, stands for a failed node. The telemetry is one
entry in the ``dictConfig`` the tool already has:

- ``track=True``: ``R`` / ``Started`` when logging is configured, one terminal
  breadcrumb at exit;
- ``session_id``: the run's UUID, as fMRIPrep passes it to ``migas.setup()``;
- ``enabled``: off with ``--notrack`` or ``--debug``, as fMRIPrep skips its set-up;
- ``preset="nipype"``: the failed node named, path-free, in the terminal breadcrumb;
- ``ignore_loggers``: nipype's own loggers, whose records about a failed node
  (``Node ... failed to run on host ...``, ``Saving crash info to ...``) repeat what
  the terminal breadcrumb says, with paths and host names.

The run ends as fMRIPrep's does: ``finally: sys.exit(code)``. The workflow's exception
never reaches an excepthook, yet the run is reported as ``F`` / ``Exited with code 1``
with ``error_type`` ``NodeExecutionError`` and an ``error_desc`` that names the node.

Try it against a local collector (``migas-logging serve`` accepts the project
``nipreps/migas-logging`` by default)::

    migas-logging serve &
    export MIGAS_ENDPOINT=http://127.0.0.1:8080
    python examples/nipype_tool.py /data/ds003 /data/out     # fails: F, exit 1
    python examples/nipype_tool.py /data/ds003 /data/out --skip-convert   # C, exit 0
    python examples/nipype_tool.py /data/ds003 /data/out --notrack        # sends nothing
    curl http://127.0.0.1:8080/_collector/breadcrumbs
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

PROJECT = "nipreps/migas-logging"  # your GitHub owner/repo, registered on the server
VERSION = "1.0.0"

IMPORTANT = 25  # the NiPreps level between INFO and WARNING, for milestones
logging.addLevelName(IMPORTANT, "IMPORTANT")

log = logging.getLogger("nipype_tool")
nipype_log = logging.getLogger("nipype.workflow")  # what nipype logs on


class NodeExecutionError(RuntimeError):
    """Stands for ``nipype.pipeline.engine.nodes.NodeExecutionError``."""


class Node:
    """A workflow node that runs one command (nipype is not imported)."""

    def __init__(self, name: str, cmdline: str, stderr: str = "") -> None:
        self.name = name
        self.cmdline = cmdline
        self.stderr = stderr

    def run(self) -> None:
        """Run the command; a command that fails raises as nipype's ``Node.run()`` does."""
        if not self.stderr:
            nipype_log.info('[Node] Finished "%s".', self.name)
            return
        raise NodeExecutionError(
            f"Exception raised while executing Node {self.name}.\n\n"
            f"Cmdline:\n\t{self.cmdline}\nStdout:\n\nStderr:\n\t{self.stderr}\n"
            "Traceback:\n\tRuntimeError: subprocess exited with code 1."
        )


def run_workflow(nodes: Sequence[Node], crash_dir: Path) -> None:
    """Run the nodes in order, logging a failure as nipype's Linear plugin does."""
    for node in nodes:
        try:
            node.run()
        except NodeExecutionError:
            crash_file = crash_dir / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{node.name}.txt"
            nipype_log.error("Node %s failed to run on host %s.", node.name, socket.gethostname())
            nipype_log.error("Saving crash info to %s", crash_file)
            nipype_log.error("could not run node: sub_01_wf.%s", node.name)
            raise


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The tool's command line, as a BIDS App's."""
    parser = argparse.ArgumentParser(description="Preprocess a BIDS dataset (a sketch).")
    parser.add_argument("bids_dir", type=Path, help="the BIDS dataset")
    parser.add_argument("output_dir", type=Path, help="where derivatives go")
    parser.add_argument("--notrack", action="store_true", help="send no telemetry")
    parser.add_argument("--debug", action="store_true", help="debug mode (sends no telemetry)")
    parser.add_argument("--session-id", help="the run's UUID (default: a new one)")
    parser.add_argument(
        "--skip-convert", action="store_true", help="skip the node that fails (a clean run)"
    )
    return parser.parse_args(argv)


def logging_config(*, enabled: bool, session_id: str) -> dict[str, Any]:
    """The tool's logging: the console, plus a MigasHandler for milestones and the run."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s: %(message)s"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
            "migas": {
                "class": "migas_logging.MigasHandler",
                "project": PROJECT,
                "version": VERSION,
                "level": "IMPORTANT",  # milestones (R) and up; ERROR and above are F
                "track": True,  # R Started now, the terminal breadcrumb at exit
                "session_id": session_id,
                "enabled": enabled,
                "preset": "nipype",
                "ignore_loggers": ["nipype.workflow", "nipype.interface", "nipype.utils"],
            },
        },
        "root": {"handlers": ["console", "migas"], "level": "INFO"},
    }


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the tool; always ends with ``sys.exit``, as fMRIPrep's ``main()`` does."""
    args = parse_args(argv)
    run_uuid = f"{time.strftime('%Y%m%d-%H%M%S')}_{args.session_id or uuid.uuid4()}"
    logging.config.dictConfig(
        logging_config(
            enabled=not (args.notrack or args.debug),
            session_id=run_uuid.split("_", 1)[-1],  # the UUID part, as fMRIPrep sends it
        )
    )
    log.log(IMPORTANT, "workflow start")  # R "nipype_tool: workflow start"

    t1w = args.bids_dir / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    nodes = [Node("validate_t1w", f"nib-ls {t1w}")]
    if not args.skip_convert:
        nodes.append(
            Node(
                "convert_t1w",
                f"mri_convert --out_type mgz {t1w} {args.output_dir / 'T1.mgz'}",
                stderr=f"ERROR: cannot determine file type for {t1w}",
            )
        )

    errno = 1  # an error exit unless the workflow finishes
    try:
        run_workflow(nodes, args.output_dir / "log" / run_uuid)
    except Exception as exc:
        nipype_log.critical("nipype_tool failed: %s", exc)  # console only: ignored logger
        raise
    else:
        log.log(IMPORTANT, "nipype_tool finished successfully!")
        errno = 0
    finally:
        # Replaces the workflow's exception: no excepthook sees it, but the run is
        # reported as F / "Exited with code 1", with the node's error.
        sys.exit(errno)


if __name__ == "__main__":
    if not os.environ.get("MIGAS_ENDPOINT"):
        sys.exit("set MIGAS_ENDPOINT to a local collector, e.g. http://127.0.0.1:8080")
    main()
