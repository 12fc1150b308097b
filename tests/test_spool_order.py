"""A run's outcome stays its latest breadcrumb when part of the run goes through the spool.

The server stamps breadcrumbs with its own clock, to the second, when they arrive, and
the dashboard shows a session's latest one as the run's outcome. A terminal breadcrumb
that went out live while other breadcrumbs of its run waited in the spool would be
hidden by them once they are replayed; so it follows them into the spool. Each test runs
a real process against a real collector on 127.0.0.1, then one ``spool send``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migas_logging.collector import LocalCollector, free_port

PROJECT = "nipreps/migas-logging"

pytestmark = pytest.mark.slow


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,), rate_limit=None) as c:
        yield c


def start(body: str, endpoint: str, spool: Path) -> subprocess.Popen[str]:
    script = "import logging, os, sys, time\nimport migas_logging\n" + textwrap.dedent(body)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIGAS_")}
    environ.update(MIGAS_ENDPOINT=endpoint, MIGAS_SPOOL_DIR=str(spool))
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def spool_send(spool: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "migas_logging", "spool", "send"),
            *("--spool-dir", str(spool), "--endpoint", url, "--rate", "1000/60"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def spooled(spool: Path) -> list[str]:
    """The spool's breadcrumb files: ``r`` for others, ``t`` for terminal ones."""
    return sorted(n.split("_")[2] for n in os.listdir(spool) if n.endswith(".json"))


def assert_outcome_is_latest(rows: list[dict[str, Any]]) -> None:
    """The run's terminal row (``sys.exit(3)``) is stored once, last, and in a later
    second than every other row of the session."""
    terminal = [r for r in rows if r["status_desc"].startswith("Exited with code 3")]
    assert 1 == len(terminal), rows
    assert terminal[0] is rows[-1], rows
    assert all(r["timestamp"] < terminal[0]["timestamp"] for r in rows[:-1]), rows


RUN = """
session = {session!r}
def report():
    print("dropped", sorted(h.stats.as_dict()["dropped"].items()), flush=True)
import atexit; atexit.register(report)  # before the handler's: runs after it
h = migas_logging.MigasHandler({project!r}, "1.0", track=True, spool=True, rate_limit=None,
                               fold_window=0, flush_deadline=2, session_id=session)
logging.getLogger().addHandler(h)
{during}
for i in range(3):
    logging.getLogger("node").error("step %d failed" % i)
{after}
sys.exit(3)
"""


class TestTheOutcomeStaysLatest:
    def test_a_busy_worker_at_the_exit(self, collector: LocalCollector, tmp_path: Path) -> None:
        """The worker is stuck on a hanging try when the exit comes: the queued records
        go to the spool, and the terminal breadcrumb follows them (sent live, it would
        be stored before them). After one ``spool send`` nothing is lost and the
        outcome is the session's latest."""
        spool, session = tmp_path / "spool", str(uuid.uuid4())
        collector.fault("hang", count=1)  # the Started breadcrumb's try never ends
        during = "h.flush(1.0)  # Started is on its way, and stuck"
        run = RUN.format(session=session, project=PROJECT, during=during, after="")
        proc = start(run, collector.url, spool)
        out, err = proc.communicate(timeout=60)
        assert 3 == proc.returncode, err
        assert "('spooled', 4)" in out, out + err  # 3 records and the terminal one
        assert ["r", "r", "r", "t"] == spooled(spool)
        assert [] == collector.breadcrumbs(session_id=session, status="F")  # not live
        collector.clear_fault()  # the stuck try may be stored now: it came first anyway
        send = spool_send(spool, collector.url)
        assert 0 == send.returncode, send.stdout + send.stderr
        rows = collector.breadcrumbs(session_id=session)
        assert 3 == sum("step " in str(r) for r in rows), rows
        assert_outcome_is_latest(rows)

    def test_records_spooled_earlier_in_the_run(self, tmp_path: Path) -> None:
        """The node had no network when the run started (kept: unreachable); the
        server is back and takes a record live just before the run ends: the terminal
        breadcrumb does not go out live ahead of the spooled ones, it waits in the
        spool behind them."""
        spool, session = tmp_path / "spool", str(uuid.uuid4())
        port = free_port()
        run = f"""
            h = migas_logging.MigasHandler({PROJECT!r}, "1.0", track=True, spool=True,
                rate_limit=None, fold_window=0, flush_deadline=2, retries=0,
                session_id={session!r})
            logging.getLogger().addHandler(h)
            logging.getLogger("node").error("step 0 failed")  # two failures: circuit closed
            h.flush(5)
            print("offline", h.stats.as_dict()["dropped"], flush=True)
            sys.stdin.readline()
            logging.getLogger("node").warning("back online")
            h.flush(5)
            print("online", h.stats.as_dict()["dropped"], flush=True)
            sys.exit(3)
            """
        proc = start(run, f"http://127.0.0.1:{port}", spool)
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            said = proc.stdout.readline()
            assert "'spooled': 2" in said, said  # Started and the record
            with LocalCollector(register=(PROJECT,), rate_limit=None, port=port) as collector:
                proc.stdin.write("\n")
                proc.stdin.flush()
                out, err = proc.communicate(timeout=60)
                assert 3 == proc.returncode, err
                live = collector.breadcrumbs(session_id=session)
                assert ["node: back online"] == [r["status_desc"] for r in live], (live, out)
                assert ["r", "r", "t"] == spooled(spool), out + err
                send = spool_send(spool, collector.url)
                assert 0 == send.returncode, send.stdout + send.stderr
                rows = collector.breadcrumbs(session_id=session)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert 4 == len(rows), rows
        assert_outcome_is_latest(rows)

    def test_a_healthy_run_goes_out_live(self, collector: LocalCollector, tmp_path: Path) -> None:
        """Nothing in the spool and time for the gap: everything live, the spool unused."""
        spool, session = tmp_path / "spool", str(uuid.uuid4())
        after = "h.flush(5)\ntime.sleep(1.1)  # the gap, before the exit"
        run = RUN.format(session=session, project=PROJECT, during="", after=after)
        proc = start(run, collector.url, spool)
        out, err = proc.communicate(timeout=60)
        assert 3 == proc.returncode, err
        rows = collector.breadcrumbs(session_id=session)
        assert 5 == len(rows), out + err
        assert_outcome_is_latest(rows)
        assert not spool.exists() or [] == spooled(spool)


class TestAHungSpool:
    @pytest.mark.parametrize("stuck", ["_write", "holds"])
    def test_the_exit_keeps_its_deadline(self, tmp_path: Path, stuck: str) -> None:
        """The spool's file system hangs (an NFS home whose server went away): writing a
        file, or listing the directory, never returns. The worker is stuck in it before
        the exit; the exit still ends by its deadline, and nothing it gave up on is
        replayed later."""
        spool, session = tmp_path / "spool", str(uuid.uuid4())
        run = f"""
            import threading
            from migas_logging import spool as spool_module
            def hang(*args, **kwargs):
                threading.Event().wait()  # a hung file system: never returns
            setattr(spool_module.Spool, {stuck!r}, hang)
            h = migas_logging.MigasHandler({PROJECT!r}, "1.0", track=True, spool=True,
                rate_limit=None, fold_window=0, flush_deadline=1, retries=0,
                session_id={session!r})
            logging.getLogger().addHandler(h)
            logging.getLogger("node").error("step 0 failed")
            h.flush(1)  # the worker is stuck on the spool now (or, for holds, at the end)
            print("exiting", time.monotonic(), flush=True)
            sys.exit(3)
            """
        proc = start(run, f"http://127.0.0.1:{free_port()}", spool)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()  # it hung: the failure below says so
                proc.wait()
        ended = time.monotonic()
        assert 3 == proc.returncode, err
        exiting = float(out.split("exiting ")[1].split()[0])
        # deadline 1 s, 0.2 s of grace for writing; generous for loaded CI machines
        assert ended - exiting < 6, (ended - exiting, err)
        assert "Traceback" not in err
