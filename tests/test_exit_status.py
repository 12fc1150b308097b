"""A tracked run ends with the right terminal breadcrumb, whatever way it ends.

Each way of ending runs in a subprocess against a LocalCollector; the session's latest
stored breadcrumb must say how the run ended (the dashboard reads exactly that one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from migas_logging.collector import LocalCollector
from migas_logging.process import describe_exit

PROJECT = "nipreps/migas-logging"

PRELUDE = """
import logging, logging.config, os, signal, sys, threading, time
logging.config.dictConfig({"version": 1,
    "handlers": {"m": {"class": "migas_logging.MigasHandler", "project": %r,
                       "version": "1.0", "track": True}},
    "root": {"handlers": ["m"], "level": "WARNING"}})
print("ready", flush=True)
"""


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def run(collector: LocalCollector, body: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MIGAS_ENDPOINT=collector.url)
    env.pop("MIGAS_OPTOUT", None)
    script = PRELUDE % PROJECT + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def latest(collector: LocalCollector) -> dict[str, object]:
    rows = collector.wait_for(2, timeout=15)
    assert "Started" == rows[0]["status_desc"]
    return rows[-1]


ENDINGS = [
    # name, body, exit status, terminal status, status_desc starts with, error_type
    ("return", "pass", 0, "C", "Completed", None),
    ("exit-0", "sys.exit(0)", 0, "C", "Completed", None),
    ("exit-none", "sys.exit(None)", 0, "C", "Completed", None),
    ("exit-1", "sys.exit(1)", 1, "F", "Exited with code 1", None),
    ("exit-2", "sys.exit(2)", 2, "F", "Exited with code 2", None),
    ("exit-ex-config", "sys.exit(os.EX_CONFIG)", 78, "F", "Exited with code 78 (EX_CONFIG)", None),
    ("exit-message", "sys.exit('bad input file')", 1, "F", "Exited: bad input file", None),
    (
        "exit-in-finally",
        """
        def main():
            raise MemoryError("the node ran out")
        try:
            main()
        finally:
            sys.exit(1)
        """,
        1,
        "F",
        "Exited with code 1",
        "OutOfMemory",  # the replaced MemoryError, classified
    ),
    ("uncaught", "raise ValueError('boom')", 1, "F", "Errored", "ValueError"),
    (
        "keyboard-interrupt",
        "raise KeyboardInterrupt",
        -signal.SIGINT,
        "S",
        "Suspended",
        "KeyboardInterrupt",
    ),
    (
        "sigterm",
        "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)",
        -signal.SIGTERM,
        "S",
        "Terminated (SIGTERM)",
        None,
    ),
    (
        "sigint",
        "os.kill(os.getpid(), signal.SIGINT); time.sleep(5)",
        -signal.SIGINT,
        "S",
        "Suspended",
        "KeyboardInterrupt",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "code", "status", "desc", "error_type"),
    [pytest.param(*e[1:], id=e[0]) for e in ENDINGS],
)
def test_the_latest_breadcrumb_says_how_the_run_ended(
    collector: LocalCollector,
    body: str,
    code: int,
    status: str,
    desc: str,
    error_type: str | None,
) -> None:
    proc = run(collector, body)
    assert code == proc.returncode, proc.stderr
    row = latest(collector)
    assert status == row["status"], row
    assert str(row["status_desc"]).startswith(desc), row
    assert error_type == row["error_type"], row


class TestDescribeExit:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (None, ("C", "Completed")),
            (0, ("C", "Completed")),
            (False, ("C", "Completed")),
            (True, ("F", "Exited with code 1")),
            (3, ("F", "Exited with code 3")),
            (os.EX_NOINPUT, ("F", f"Exited with code {os.EX_NOINPUT} (EX_NOINPUT)")),
            ("no", ("F", "Exited: no")),
            (["odd"], ("F", "Exited: ['odd']")),
        ],
    )
    def test_rules(self, status: object, expected: tuple[str, str]) -> None:
        assert expected == describe_exit(status)

    def test_a_message_is_bounded(self) -> None:
        assert len(describe_exit("x" * 10_000)[1]) < 420
