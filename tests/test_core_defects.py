"""Regression tests for defects of issue 11 found by attacking the core's promises.

Each test is named after the defect it holds, and failed on cf3fd98 (the 0.1 core).
In-process tests talk real HTTP to a LocalCollector; exits run in subprocesses.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migas_logging import MigasHandler, worker
from migas_logging.collector import LocalCollector

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT, "nipreps/a", "nipreps/b", "nipreps/c")) as c:
        yield c


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


class TestHostileRecords:
    def test_record_with_name_none_does_not_raise(self, collector: LocalCollector) -> None:
        """A record built by makeLogRecord without a name (socket and queue receivers do
        that) raised AttributeError out of handle(); now it is sent like any record."""
        handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url, excepthook=False)
        for name in (None, 42):
            record = logging.makeLogRecord({"name": name, "msg": "hello", "levelno": 40})
            record.levelname = "ERROR"
            handler.handle(record)
        handler.flush(5)
        assert 2 == handler.stats.sent
        descs = sorted(c["status_desc"] for c in collector.wait_for(2))
        assert ["42: hello", "None: hello"] == descs
        handler.close()


class TestOnePathForCrashes:
    def test_thread_crash_storm_respects_queue_and_rate_cap(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """3,000 thread crashes with queue_size=100 were all queued and sent past the
        rate cap; now they pass the same cap and bound as log records."""
        monkeypatch.setattr(threading, "excepthook", lambda args: None)  # ours chains to it
        handler = MigasHandler(
            PROJECT, "1.0", endpoint=collector.url, queue_size=100, rate_limit="10/60"
        )
        hook = threading.excepthook

        class Args:
            exc_type = ValueError
            exc_traceback = None
            thread = threading.current_thread()

            def __init__(self, i: int) -> None:
                self.exc_value = ValueError(f"crash {i}")

        for i in range(3000):
            hook(Args(i))  # type: ignore[arg-type]
        handler.flush(5)
        stats = handler.stats.as_dict()
        assert stats["sent"] <= 10
        assert stats["dropped"].get("rate_cap", 0) >= 2990
        assert 3000 == stats["emitted"]
        assert 0 == stats["pending"]
        handler.close()

    def test_asyncio_exception_is_reported_once(self, collector: LocalCollector) -> None:
        """The documented asyncio handler reported the exception, then asyncio's default
        handler logged it and the MigasHandler reported it again: two breadcrumbs."""
        from migas_logging.excepthook import asyncio_exception_handler

        handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url)
        root = logging.getLogger()
        root.addHandler(handler)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(asyncio_exception_handler)

            async def fail() -> None:
                raise RuntimeError("task failed")

            task = loop.create_task(fail())
            await asyncio.sleep(0.05)
            del task
            gc.collect()
            await asyncio.sleep(0.05)

        asyncio.run(main())
        gc.collect()
        handler.flush(5)
        root.removeHandler(handler)
        crumbs = [c for c in collector.breadcrumbs() if c["error_type"] == "RuntimeError"]
        assert 1 == len(crumbs)
        assert 1 == handler.stats.dropped.get("duplicate", 0)
        handler.close()


class TestStructlogDuplicateRule:
    def test_unrelated_record_is_not_taken_for_a_structlog_event(
        self, collector: LocalCollector
    ) -> None:
        """An event sent by MigasProcessor in a pure structlog set-up left a mark that made
        the next stdlib record of the same level and text count as ``duplicate``."""
        structlog = pytest.importorskip("structlog")
        from migas_logging.processors import MigasProcessor

        processor = MigasProcessor(PROJECT, "1.0", endpoint=collector.url, fold_window=0)
        log = structlog.wrap_logger(
            structlog.ReturnLogger(),
            processors=[structlog.processors.add_log_level, processor],
        )
        log.error("step failed")
        handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url, fold_window=0)
        _logger("unrelated", handler).error("step failed")
        handler.flush(5)
        processor.handler.flush(5)
        assert 0 == handler.stats.dropped.get("duplicate", 0)
        assert 1 == handler.stats.sent
        assert 2 == len(collector.wait_for(2))
        handler.close()


class TestAudit:
    def test_unwritable_audit_file_is_reported_once_quietly(
        self, collector: LocalCollector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unwritable audit file printed logging's '--- Logging error ---' traceback on
        the application's stderr for every breadcrumb."""
        audit = tmp_path / "missing-dir" / "audit.jsonl"
        handler = MigasHandler(
            PROJECT, "1.0", endpoint=collector.url, audit_file=str(audit), fold_window=0
        )
        logger = _logger("audited", handler)
        for i in range(5):
            logger.warning("event %d", i)
        handler.flush(5)
        assert 5 == handler.stats.sent
        assert "Logging error" not in capsys.readouterr().err
        handler.close()


class TestSignalReentry:
    def test_record_logged_while_this_thread_holds_the_pipeline_lock(
        self, collector: LocalCollector
    ) -> None:
        """A signal handler that logs while the main thread flushes re-entered the
        pipeline's lock and deadlocked; now the record is counted ``reentrant``."""
        handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url)
        logger = _logger("reentry", handler)
        pipeline = worker.current_pipeline()
        assert pipeline is not None
        done = threading.Event()

        def interrupted() -> None:  # what a signal handler sees: this thread holds it
            with pipeline._lock:
                logger.error("from a signal handler")
            done.set()

        thread = threading.Thread(target=interrupted, daemon=True)
        thread.start()
        assert done.wait(10), "logging inside the pipeline's lock deadlocked"
        assert 1 == handler.stats.dropped.get("reentrant", 0)
        logger.error("afterwards")
        handler.flush(5)
        assert 1 == handler.stats.sent
        handler.close()


PRELUDE = """
import logging, logging.config, os, sys, threading, time
URL = {url!r}
def handler(project, **options):
    return dict({{"class": "migas_logging.MigasHandler", "project": project,
                  "version": "1.0", "endpoint": URL}}, **options)
"""


def _run(
    url: str, body: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    script = PRELUDE.format(url=url) + textwrap.dedent(body)
    env = dict(os.environ, MIGAS_ENDPOINT=url)
    env.pop("MIGAS_OPTOUT", None)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc, time.monotonic() - start


@pytest.mark.slow
class TestExit:
    def test_four_projects_with_a_hanging_server_share_one_exit_deadline(
        self, collector: LocalCollector
    ) -> None:
        """Four tracked handlers for four projects took one full deadline each (8 s with
        a 2 s deadline) to exit against a hanging server."""
        collector.fault("hang")
        _, baseline = _run(collector.url, "import migas_logging.handler\n")
        proc, elapsed = _run(
            collector.url,
            """
            logging.config.dictConfig({"version": 1, "handlers": {
                n: handler(p, track=True, flush_deadline=2) for n, p in
                (("a", "nipreps/a"), ("b", "nipreps/b"), ("c", "nipreps/c"),
                 ("d", "nipreps/migas-logging"))},
                "root": {"handlers": ["a", "b", "c", "d"], "level": "INFO"}})
            logging.getLogger("app").warning("one")
            """,
        )
        collector.clear_fault()
        assert 0 == proc.returncode, proc.stderr
        # the bug took 8 s and more; one deadline is 2 s (+ the interpreter's start-up)
        assert elapsed - baseline < 5.0, elapsed

    def test_terminal_breadcrumb_survives_logging_shutdown(
        self, collector: LocalCollector
    ) -> None:
        """With track=True, calling logging.shutdown() (or close()) before the exit
        uninstalled the hook and lost the terminal breadcrumb."""
        proc, _ = _run(
            collector.url,
            """
            logging.config.dictConfig({"version": 1,
                "handlers": {"m": handler("nipreps/migas-logging", track=True)},
                "root": {"handlers": ["m"], "level": "INFO"}})
            logging.shutdown()
            """,
        )
        assert 0 == proc.returncode, proc.stderr
        statuses = [c["status"] for c in collector.wait_for(2)]
        assert ["R", "C"] == statuses

    def test_dictconfig_reloads_send_one_started_and_free_old_handlers(
        self, collector: LocalCollector
    ) -> None:
        """300 dictConfig reloads with track=True sent 300 ``Started`` and kept 300
        handlers alive."""
        proc, _ = _run(
            collector.url,
            """
            import gc, weakref
            from migas_logging import MigasHandler
            refs = []
            for i in range(300):
                logging.config.dictConfig({"version": 1,
                    "handlers": {"m": handler("nipreps/migas-logging", track=True)},
                    "root": {"handlers": ["m"], "level": "INFO"}})
                refs.extend(weakref.ref(h) for h in logging.getLogger().handlers)
            gc.collect()
            alive = sum(1 for r in refs if r() is not None)
            print("alive", alive)
            """,
            timeout=120,
        )
        assert 0 == proc.returncode, proc.stderr
        alive = int(proc.stdout.split("alive")[1])
        assert alive <= 2, proc.stdout
        crumbs = collector.wait_for(2)
        time.sleep(0.5)
        statuses = [c["status"] for c in collector.breadcrumbs()]
        assert 1 == statuses.count("R"), statuses
        assert "C" == statuses[-1]
        assert crumbs

    def test_forked_child_gets_the_default_sigterm_back(self, collector: LocalCollector) -> None:
        """A forked child kept the tracking SIGTERM handler. A Python-level handler can
        miss a signal that lands just before a blocking wait, so ``Pool.terminate()``
        hung now and then on a worker blocked on the queue lock (3 runs in 40 under
        load). The child must have the kernel's default back, as before tracking."""
        proc, _ = _run(
            collector.url,
            """
            import signal
            logging.config.dictConfig({"version": 1,
                "handlers": {"m": handler("nipreps/migas-logging", track=True)},
                "root": {"handlers": ["m"], "level": "INFO"}})
            print("parent", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
            pid = os.fork()
            if pid == 0:
                ok = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
                os._exit(0 if ok else 3)
            print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            """,
        )
        assert 0 == proc.returncode, proc.stderr
        assert "parent False" in proc.stdout  # tracking did install its handler
        assert "child 0" in proc.stdout, proc.stdout
