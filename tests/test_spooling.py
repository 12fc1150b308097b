"""The spool in the delivery path: a run on a node without a network keeps its
breadcrumbs, and a later process (or `spool send`) delivers them, terminal last."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migas_logging.collector import LocalCollector, free_port

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def _closed_port() -> int:
    return free_port()


def run(body: str, endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = "import logging, os, sys, time\nimport migas_logging\n" + textwrap.dedent(body)
    environ = dict(os.environ, MIGAS_ENDPOINT=endpoint)
    environ.pop("MIGAS_OPTOUT", None)
    environ.pop("MIGAS_SPOOL_DIR", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


OFFLINE_RUN = f"""
h = migas_logging.MigasHandler({PROJECT!r}, "1.0", track=True, spool=True,
                               rate_limit=None, fold_window=0, flush_deadline=2)
logging.getLogger().addHandler(h)
for i in range(3):
    logging.getLogger("node").error("step %d failed" % i)
start = time.monotonic()
def report():
    print("stats", h.stats.as_dict()["dropped"], flush=True)
import atexit; atexit.register(report)
raise RuntimeError("the node has no network")
"""


@pytest.mark.slow
class TestSpool:
    def test_offline_run_is_kept_then_sent_by_spool_send(
        self, collector: LocalCollector, tmp_path: Path
    ) -> None:
        spool = tmp_path / "spool"
        start = time.monotonic()
        proc = run(OFFLINE_RUN, f"http://127.0.0.1:{_closed_port()}", MIGAS_SPOOL_DIR=str(spool))
        assert 1 == proc.returncode, proc.stderr
        assert time.monotonic() - start < 15
        files = [p for p in spool.iterdir() if p.is_file()]
        assert 5 == len(files), proc.stdout + proc.stderr  # R, 3 records, F
        assert oct(spool.stat().st_mode & 0o777) == "0o700"
        assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in files)
        send = subprocess.run(
            [
                sys.executable,
                "-m",
                "migas_logging",
                "spool",
                "send",
                "--spool-dir",
                str(spool),
                "--endpoint",
                collector.url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == send.returncode, send.stdout + send.stderr
        rows = collector.wait_for(5)
        assert ["R", "F", "F", "F", "F"] == [r["status"] for r in rows]
        assert "RuntimeError" == rows[-1]["error_type"]  # the terminal, last
        assert 1 == len({r["session_id"] for r in rows})
        assert [] == [p for p in spool.iterdir() if p.is_file()]

    def test_a_later_process_replays_in_the_background(
        self, collector: LocalCollector, tmp_path: Path
    ) -> None:
        spool = tmp_path / "spool"
        run(OFFLINE_RUN, f"http://127.0.0.1:{_closed_port()}", MIGAS_SPOOL_DIR=str(spool))
        later = run(
            f"""
            h = migas_logging.MigasHandler({PROJECT!r}, "2.0", spool=True, excepthook=False)
            logging.getLogger().addHandler(h)
            logging.getLogger("later").error("online again")
            h.flush(5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(
                p.is_file() for p in __import__("pathlib").Path({str(spool)!r}).iterdir()
            ):
                time.sleep(0.2)
            """,
            collector.url,
            MIGAS_SPOOL_DIR=str(spool),
        )
        assert 0 == later.returncode, later.stderr
        rows = collector.wait_for(6)
        offline = [r for r in rows if r["project_version"] == "1.0"]
        assert 5 == len(offline)
        assert "RuntimeError" == offline[-1]["error_type"]
        assert [] == [p for p in spool.iterdir() if p.is_file()]

    def test_off_by_default_and_under_optout(self, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        body = f"""
            h = migas_logging.MigasHandler({PROJECT!r}, "1.0", excepthook=False)
            logging.getLogger().addHandler(h)
            logging.getLogger("x").error("lost, not kept")
            """
        endpoint = f"http://127.0.0.1:{_closed_port()}"
        run(body, endpoint, XDG_CACHE_HOME=str(cache))
        assert not cache.exists()  # no spool unless asked for
        run(
            body.replace('1.0",', '1.0", spool=True,'),
            endpoint,
            XDG_CACHE_HOME=str(cache),
            MIGAS_OPTOUT="1",
        )
        assert not cache.exists()  # opt-out: no files, whatever the application asked
        run(
            body.replace('1.0",', '1.0", spool=True,'),
            endpoint,
            XDG_CACHE_HOME=str(cache),
            MIGAS_SPOOL_DIR="",
        )
        assert not cache.exists()  # the end user's empty MIGAS_SPOOL_DIR turns it off
