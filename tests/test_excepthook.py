"""Crash capture and the run lifecycle, with real scripts in subprocesses.

Each test runs a small program in a fresh interpreter against a LocalCollector in the
test process, and checks what the collector stored, what the program printed, and its
exit status, against the same program run without migas where that matters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import migas_logging
from migas_logging import excepthook
from migas_logging.collector import LocalCollector, free_port

PROJECT = "nipreps/migas-logging"

pytestmark = pytest.mark.slow

PRELUDE = """
import logging, logging.config, os, sys, threading, time
URL = {url!r}
def setup(**options):
    handler = dict(options)
    handler.setdefault("class", "migas_logging.MigasHandler")
    handler.setdefault("project", {project!r})
    handler.setdefault("version", "1.2.3")
    handler.setdefault("endpoint", URL)
    logging.config.dictConfig({{
        "version": 1, "disable_existing_loggers": False,
        "handlers": {{"migas": handler}},
        "root": {{"handlers": ["migas"], "level": "INFO"}},
    }})
"""


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def run(
    url: str,
    body: str,
    *,
    timeout: float = 30,
    env: dict[str, str] | None = None,
    signal_after: float | None = None,
) -> subprocess.CompletedProcess[str]:
    code = PRELUDE.format(url=url, project=PROJECT) + textwrap.dedent(body)
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MIGAS_OPTOUT", None)
    if signal_after is None:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    assert proc.stdout is not None
    assert "ready" in proc.stdout.readline()
    time.sleep(signal_after)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "ready\n" + out, err)


def last(collector: LocalCollector) -> dict[str, Any]:
    rows = collector.breadcrumbs()
    assert rows, "nothing stored"
    return rows[-1]


class TestMainThreadCrash:
    def test_crash_is_the_last_breadcrumb_traceback_and_exit_unchanged(
        self, collector: LocalCollector
    ) -> None:
        """dictConfig alone reports the crash; the traceback prints; the exit code is 1."""
        body = """
            setup()
            logging.getLogger("app").warning("about to fail")
            raise ValueError("boom in /home/alice/data.csv")
        """
        result = run(collector.url, body)
        baseline = run(collector.url, 'raise ValueError("boom in /home/alice/data.csv")')
        assert baseline.returncode == result.returncode == 1
        assert "ValueError: boom in /home/alice/data.csv" in result.stderr
        rows = collector.breadcrumbs()
        assert ["R", "F"] == [r["status"] for r in rows]
        crash = rows[-1]
        assert ("ValueError", "Errored") == (crash["error_type"], crash["status_desc"])
        assert "boom in <path>" in crash["error_desc"]
        assert "alice" not in crash["error_desc"]
        assert crash["timestamp"] > rows[0]["timestamp"]  # not tied with the earlier one
        assert 1 == len({r["session_id"] for r in rows})

    def test_keyboard_interrupt_is_suspended(self, collector: LocalCollector) -> None:
        """KeyboardInterrupt gives S / Suspended, and the exit status is unchanged."""
        # (the hook prepares in the background first: see the excepthook docstring)
        result = run(collector.url, "setup()\ntime.sleep(0.5)\nraise KeyboardInterrupt")
        baseline = run(collector.url, "raise KeyboardInterrupt")
        assert baseline.returncode == result.returncode
        assert ("S", "Suspended") == (last(collector)["status"], last(collector)["status_desc"])

    def test_sys_exit_is_not_a_crash(self, collector: LocalCollector) -> None:
        """sys.exit(3) exits with 3 and reports nothing."""
        result = run(collector.url, "setup()\nsys.exit(3)")
        assert 3 == result.returncode
        assert [] == collector.breadcrumbs()

    def test_os_exit_sends_nothing(self, collector: LocalCollector) -> None:
        """os._exit skips every hook: nothing can be sent (documented)."""
        result = run(collector.url, "setup(track=True)\nos._exit(4)", env={})
        assert 4 == result.returncode
        assert all(r["status"] == "R" for r in collector.breadcrumbs())

    def test_crash_with_server_down_exits_within_deadline(self) -> None:
        """A dead server: the crash is not delivered, the process exits promptly."""
        url = f"http://127.0.0.1:{free_port()}"
        start = time.monotonic()
        result = run(url, "setup(flush_deadline=1.0)\nlogging.error('x')\nraise RuntimeError('y')")
        elapsed = time.monotonic() - start
        assert 1 == result.returncode
        assert "RuntimeError: y" in result.stderr
        assert elapsed < 1.0 + 4.0  # interpreter start + deadline, very generous on CI

    def test_crash_with_server_hanging_exits_within_deadline(
        self, collector: LocalCollector
    ) -> None:
        """A hanging server: the exit still comes at the deadline."""
        collector.fault("hang")
        start = time.monotonic()
        result = run(
            collector.url,
            "setup(flush_deadline=1.0, timeout=30)\nlogging.error('x')\nraise RuntimeError('y')",
        )
        assert 1 == result.returncode
        assert time.monotonic() - start < 1.0 + 4.0

    def test_crash_while_worker_mid_request_and_queue_full(
        self, collector: LocalCollector
    ) -> None:
        """With the queue full and a slow server, the crash still lands, last."""
        collector.fault("delay", seconds=0.2)
        body = """
            setup(queue_size=3, fold_window=0, rate_limit=None, flush_deadline=3)
            for i in range(20):
                logging.error(f"distinct {i}")
            raise OSError("disk gone")
        """
        result = run(collector.url, body)
        assert 1 == result.returncode
        crash = last(collector)
        assert ("F", "OSError") == (crash["status"], crash["error_type"])


class TestThreadCrash:
    def test_thread_crash_reported_with_thread_name(self, collector: LocalCollector) -> None:
        """A worker thread's crash is reported with its name; its traceback still prints."""
        body = """
            setup()
            t = threading.Thread(target=lambda: 1 / 0, name="loader-3")
            t.start(); t.join()
            print("main goes on")
        """
        result = run(collector.url, body)
        assert 0 == result.returncode
        assert "ZeroDivisionError" in result.stderr
        assert "main goes on" in result.stdout
        crash = last(collector)
        assert ("F", "ZeroDivisionError") == (crash["status"], crash["error_type"])
        assert "Errored in thread loader-3" == crash["status_desc"]


class TestLifecycle:
    def test_normal_run_started_then_completed_with_counts(
        self, collector: LocalCollector
    ) -> None:
        """track=True: R Started first, exactly one C Completed last, with the counts."""
        body = """
            setup(track=True)
            for i in range(3):
                logging.warning("same warning")
        """
        result = run(collector.url, body)
        assert 0 == result.returncode, result.stderr
        rows = collector.breadcrumbs()
        assert "Started" == rows[0]["status_desc"]
        terminal = [r for r in rows if r["status"] in "CFS"]
        assert 1 == len(terminal)
        assert terminal[0] is rows[-1]
        # the counts are read after the exit flush: the warning and Started were sent
        assert rows[-1]["status_desc"].startswith("Completed [sent 2, folded 2")

    def test_sys_exit_with_tracking_is_failed_with_the_code(
        self, collector: LocalCollector
    ) -> None:
        """sys.exit(3) with tracking: F with the code (0.1 said C Completed: a failed run
        counted as a success), exit status 3 unchanged."""
        result = run(collector.url, "setup(track=True)\nsys.exit(3)")
        assert 3 == result.returncode
        row = last(collector)
        assert ("F", "Exited with code 3") == (row["status"], row["status_desc"][:18])

    def test_crash_with_tracking_has_one_terminal(self, collector: LocalCollector) -> None:
        """A crash with tracking: F is the only terminal breadcrumb, and the last."""
        run(collector.url, "setup(track=True)\nraise ValueError('x')")
        rows = collector.breadcrumbs()
        assert ["F"] == [r["status"] for r in rows if r["status"] in "CFS"]
        assert "F" == rows[-1]["status"]

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_sigterm_is_terminated_and_still_dies_by_the_signal(
        self, collector: LocalCollector
    ) -> None:
        """SIGTERM: S Terminated (SIGTERM) last, and the process dies by SIGTERM."""
        body = """
            setup(track=True)
            print("ready", flush=True)
            while True:
                time.sleep(0.05)
        """
        result = run(collector.url, body, signal_after=0.3)
        assert -signal.SIGTERM == result.returncode
        final = last(collector)
        assert ("S", True) == (
            final["status"],
            final["status_desc"].startswith("Terminated (SIGTERM)"),
        )

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_sigterm_chains_to_the_previous_handler(self, collector: LocalCollector) -> None:
        """An application's own SIGTERM handler still runs."""
        body = """
            import signal
            def mine(signum, frame):
                print("app handler ran", flush=True)
                sys.exit(0)
            signal.signal(signal.SIGTERM, mine)
            setup(track=True)
            print("ready", flush=True)
            while True:
                time.sleep(0.05)
        """
        result = run(collector.url, body, signal_after=0.3)
        assert "app handler ran" in result.stdout
        assert 0 == result.returncode
        assert "S" == last(collector)["status"]


class TestInstallUninstall:
    def test_chains_and_restores(self, collector: LocalCollector) -> None:
        """install chains to the previous hook; uninstall restores it exactly."""
        seen: list[str] = []

        def theirs(t: type[BaseException], e: BaseException, tb: Any) -> None:
            seen.append(type(e).__name__)

        sys.excepthook = theirs
        thread_before = threading.excepthook
        hook = migas_logging.install_excepthook(
            PROJECT, "1", endpoint=collector.url, interactive=True
        )
        assert sys.excepthook != theirs
        assert hook is migas_logging.install_excepthook(
            PROJECT, "1", endpoint=collector.url, interactive=True
        )
        hook.uninstall()
        hook.uninstall()
        assert sys.excepthook is theirs
        assert threading.excepthook is thread_before

    def test_later_hook_is_not_removed(self, collector: LocalCollector) -> None:
        """A hook installed after ours stays; ours becomes a pass-through."""
        hook = migas_logging.install_excepthook(
            PROJECT, "1", endpoint=collector.url, interactive=True
        )
        ours = sys.excepthook
        seen: list[str] = []

        def later(t: type[BaseException], e: BaseException, tb: Any) -> None:
            seen.append("later")
            ours(t, e, tb)

        sys.excepthook = later
        hook.uninstall()
        assert sys.excepthook is later
        sys.excepthook(ValueError, ValueError("x"), None)
        assert ["later"] == seen
        assert [] == collector.breadcrumbs()  # ours passed it through without reporting

    def test_interactive_sessions_left_alone(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With sys.ps1 set, nothing is installed unless asked."""
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
        before = sys.excepthook
        hook = migas_logging.install_excepthook(PROJECT, "1", endpoint=collector.url)
        assert sys.excepthook is before
        assert not hook.installed

    def test_ignored_exceptions(self, collector: LocalCollector) -> None:
        """Exceptions in the ignore list are passed on, not reported."""
        hook = excepthook.CrashHook(
            PROJECT, "1", endpoint=collector.url, interactive=True, ignore=(LookupError,)
        ).install()
        sys.excepthook(KeyError, KeyError("k"), None)
        assert [] == collector.breadcrumbs()
        hook.uninstall()


class TestAudit:
    def test_crash_breadcrumb_is_in_the_audit_trail(
        self, collector: LocalCollector, tmp_path: Any
    ) -> None:
        """The synchronous crash breadcrumb is audited like the worker's."""
        import json

        path = tmp_path / "audit.jsonl"
        run(collector.url, f"setup(audit_file={str(path)!r})\nraise ValueError('x')")
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        assert ["sent"] == [x["event"] for x in lines]
        assert "ValueError" == lines[-1]["breadcrumb"]["proc"]["error_type"]
