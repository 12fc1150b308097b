"""MigasHandler: records become breadcrumbs, delivered without hurting the application.

Every test talks HTTP to a real LocalCollector on 127.0.0.1.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migas_logging import MigasHandler, client
from migas_logging.collector import LocalCollector, free_port
from migas_logging.exceptions import ConfigurationError
from migas_logging.transport import Transport

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


@pytest.fixture
def log(request: pytest.FixtureRequest) -> logging.Logger:
    """A fresh logger per test, not propagating to root."""
    logger = logging.getLogger(f"app.{request.node.name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger  # type: ignore[misc]
    for h in logger.handlers[:]:
        logger.removeHandler(h)
        h.close()


def make(collector: LocalCollector, log: logging.Logger, **options: Any) -> MigasHandler:
    options.setdefault("excepthook", False)
    options.setdefault("rate_limit", None)
    h = MigasHandler(PROJECT, "1.0.0", endpoint=collector.url, **options)
    log.addHandler(h)
    return h


def accounted(stats: dict[str, Any]) -> int:
    return stats["sent"] + stats["folded"] + sum(stats["dropped"].values())


class TestConfiguration:
    def test_dictconfig_with_plain_values(self, collector: LocalCollector) -> None:
        """dictConfig builds the handler from plain keyword values, and it ships."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "migas": {
                        "class": "migas_logging.MigasHandler",
                        "project": PROJECT,
                        "version": "2.0",
                        "level": "WARNING",
                        "endpoint": collector.url,
                        "rate_limit": "50/60",
                        "statuses": {"WARNING": "R", "ERROR": "F"},
                        "extras": ["step"],
                        "excepthook": False,
                    }
                },
                "loggers": {"dc": {"handlers": ["migas"], "level": "DEBUG", "propagate": False}},
            }
        )
        logger = logging.getLogger("dc")
        logger.info("not shipped")
        logger.warning("step %s slow", "bold", extra={"step": "bold", "secret": "x"})
        logger.error("step %s failed", "bold")
        handler = logger.handlers[0]
        assert isinstance(handler, MigasHandler)
        handler.flush(5)
        rows = collector.breadcrumbs()
        assert [("R", "dc: step %s slow [step=bold]"), ("F", "dc: step %s failed")] == [
            (r["status"], r["status_desc"]) for r in rows
        ]
        assert "2.0" == rows[0]["project_version"]
        assert all("secret" not in (r["status_desc"] or "") for r in rows)
        logger.removeHandler(handler)
        handler.close()

    def test_fileconfig_ini(self, collector: LocalCollector, tmp_path: Path) -> None:
        """fileConfig builds it from ini args and kwargs."""
        ini = tmp_path / "logging.ini"
        ini.write_text(
            textwrap.dedent(f"""
            [loggers]
            keys=root,fc
            [handlers]
            keys=migas
            [formatters]
            keys=
            [logger_root]
            level=WARNING
            handlers=
            [logger_fc]
            level=INFO
            handlers=migas
            qualname=fc
            propagate=0
            [handler_migas]
            class=migas_logging.MigasHandler
            level=ERROR
            args=('{PROJECT}', '3.1')
            kwargs={{'endpoint': '{collector.url}', 'excepthook': False}}
        """)
        )
        logging.config.fileConfig(ini, disable_existing_loggers=False)
        logger = logging.getLogger("fc")
        logger.warning("below the handler level")
        logger.error("disk full")
        handler = logger.handlers[0]
        assert isinstance(handler, MigasHandler)
        handler.flush(5)
        rows = collector.breadcrumbs()
        assert [("F", "fc: disk full", "3.1")] == [
            (r["status"], r["status_desc"], r["project_version"]) for r in rows
        ]
        logger.removeHandler(handler)
        handler.close()

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"project": None}, "needs project='owner/repo'"),
            ({"project": "fmriprep"}, "'fmriprep'"),
            ({"project": PROJECT, "endpoint": "ftp://x"}, "'ftp://x'"),
            ({"project": PROJECT, "timeout": "soon"}, "'soon'"),
            ({"project": PROJECT, "rate_limit": "lots"}, "'lots'"),
            ({"project": PROJECT, "statuses": {"LOUD": "F"}}, "'LOUD'"),
            ({"project": PROJECT, "statuses": {"ERROR": "X"}}, "'X'"),
            ({"project": PROJECT, "message": "all"}, "'all'"),
            ({"project": PROJECT, "queue_size": 0}, "queue_size"),
            ({"project": PROJECT, "flush_deadline": -1}, "flush_deadline"),
            ({"project": PROJECT, "level": "LOUD"}, "'LOUD' is not a logging level"),
        ],
    )
    def test_bad_configuration_fails_at_once(self, options: dict[str, Any], match: str) -> None:
        """Bad values raise ConfigurationError (a ValueError) naming the value."""
        with pytest.raises(ConfigurationError, match=match):
            MigasHandler(**options, excepthook=False)

    def test_bad_configuration_registers_nothing(self) -> None:
        """A handler that fails to configure is not left in logging's shutdown list."""
        before = len(logging._handlerList)  # type: ignore[attr-defined]
        with pytest.raises(ConfigurationError):
            MigasHandler(PROJECT, timeout="never", excepthook=False)
        assert before == len(logging._handlerList)  # type: ignore[attr-defined]

    def test_status_mapping(self, collector: LocalCollector, log: logging.Logger) -> None:
        """Records get the status of the highest threshold they reach."""
        h = make(
            collector, log, level="DEBUG", statuses={"DEBUG": "R", "WARNING": "S", "CRITICAL": "F"}
        )
        assert ("R", "S", "S", "F") == tuple(h.status_for(lv) for lv in (10, 30, 40, 50))


class TestMessages:
    def test_template_carries_no_arguments(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """The default sends the unformatted template: no argument data leaves."""
        h = make(collector, log)
        log.error("subject %s failed", "sub-PRIVATE")
        h.flush(5)
        (row,) = collector.breadcrumbs()
        assert f"{log.name}: subject %s failed" == row["status_desc"]
        assert "PRIVATE" not in str(row)

    def test_formatted(self, collector: LocalCollector, log: logging.Logger) -> None:
        """message='formatted' sends the full message (still redacted)."""
        h = make(collector, log, message="formatted")
        log.error("reading %s failed", "/home/alice/data/sub-01.nii.gz")
        h.handle(
            logging.makeLogRecord(
                {
                    "name": log.name,
                    "levelno": 40,
                    "msg": "bad format %d",
                    "args": ("not a number",),
                }
            )
        )
        h.flush(5)
        rows = collector.breadcrumbs()
        assert "reading <path> failed" in rows[0]["status_desc"]
        assert "bad format %d" in rows[1]["status_desc"]

    def test_none(self, collector: LocalCollector, log: logging.Logger) -> None:
        """message='none' sends only the logger's name."""
        h = make(collector, log, message="none")
        log.error("secret %s", "x")
        h.flush(5)
        assert log.name == collector.breadcrumbs()[0]["status_desc"]

    def test_exception_becomes_error_fields(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """exc_info gives error_type and a path-free error_desc with frames."""
        h = make(collector, log)
        try:
            open("/home/alice/secret/file.txt")  # noqa: SIM115
        except OSError:
            log.exception("could not read input")
        h.flush(5)
        (row,) = collector.breadcrumbs()
        assert "FileNotFoundError" == row["error_type"]
        assert "alice" not in row["error_desc"]
        assert "/home" not in row["error_desc"]
        assert "test_handler" in row["error_desc"]

    def test_broken_str_is_safe(self, collector: LocalCollector, log: logging.Logger) -> None:
        """A message object whose __str__ raises still gives a valid breadcrumb."""

        class Broken:
            def __str__(self) -> str:
                raise RuntimeError("no")

            __repr__ = __str__

        h = make(collector, log)
        h.handle(logging.makeLogRecord({"name": log.name, "levelno": 40, "msg": Broken()}))
        h.flush(5)
        assert 1 == len(collector.breadcrumbs())
        assert 1 == h.stats.sent

    def test_huge_and_invalid_text_arrives_whole(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """Megabyte, NUL and lone-surrogate messages arrive shortened and storable."""
        h = make(collector, log, message="formatted")
        log.error("x" * 1_000_000)
        log.error("nul\x00 and \ud800 surrogate")
        h.flush(5)
        assert 2 == len(collector.breadcrumbs())
        assert [] == collector.lost()
        assert all(len(r.body) <= 2500 for r in collector.requests())


class TestDelivery:
    def test_emit_does_not_wait_for_a_hanging_server(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """With the server hanging, logging calls return; the worker waits, not the app."""
        collector.fault("hang")
        h = make(collector, log, timeout=30)
        start = time.monotonic()
        for i in range(200):
            log.error("error %d", i)
        assert time.monotonic() - start < 5  # a blocking emit would take 30 s per call
        h.flush(0.1)

    def test_queue_full_drops_newest_and_counts(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """A full queue drops the newest records, counted as queue_full."""
        collector.fault("hang")
        h = make(collector, log, queue_size=5, timeout=30, fold_window=0)
        for i in range(50):
            log.error(f"distinct {i}")
        stats = h.stats.as_dict()
        assert stats["dropped"]["queue_full"] >= 44
        assert 50 == stats["emitted"]
        assert 50 == accounted(stats) + stats["pending"]

    def test_repeats_fold_into_one_with_a_count(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """Repeats within the window fold; the count goes out in a summary breadcrumb."""
        h = make(collector, log)
        for i in range(10):
            log.error("step %s failed", i)
        log.error("another thing")
        h.flush(5)
        stats = h.stats.as_dict()
        assert (2, 9, 1) == (stats["sent"], stats["folded"], stats["summaries"])
        descs = [r["status_desc"] for r in collector.breadcrumbs()]
        assert 3 == len(descs)
        assert any("repeated 9 more times" in d for d in descs)

    def test_rate_cap(self, collector: LocalCollector, log: logging.Logger) -> None:
        """Past the per-process cap, records are dropped and counted as rate_cap."""
        h = make(collector, log, rate_limit="3/60", fold_window=0)
        for i in range(10):
            log.error(f"distinct {i}")
        h.flush(5)
        stats = h.stats.as_dict()
        assert (3, {"rate_cap": 7}) == (stats["sent"], stats["dropped"])
        assert 3 == len(collector.breadcrumbs())

    def test_429_pauses_without_retrying(self, log: logging.Logger) -> None:
        """After a 429 nothing is sent during the window; at the deadline the rest drop."""
        with LocalCollector(register=(PROJECT,), rate_limit=(2, 60)) as c:
            h = make(c, log, fold_window=0)
            for i in range(6):
                log.error(f"distinct {i}")
            c.wait_for_requests(3, timeout=5)
            time.sleep(0.5)
            assert 3 == len(c.requests())  # no retry while limited
            client.current_client().stop(0.3)  # type: ignore[union-attr]
            stats = h.stats.as_dict()
            assert 2 == stats["sent"]
            assert 4 == stats["dropped"]["rate_limited"]

    def test_flush_during_a_429_window_keeps_the_records(self, log: logging.Logger) -> None:
        """A mid-run flush while rate limited waits, and drops nothing."""
        with LocalCollector(register=(PROJECT,), rate_limit=(1, 60)) as c:
            h = make(c, log, fold_window=0)
            log.error("first")
            log.error("second")
            c.wait_for_requests(2, timeout=5)
            assert h.flush(0.3) is None
            stats = h.stats.as_dict()
            assert (1, {}, 1) == (stats["sent"], stats["dropped"], stats["pending"])

    def test_5xx_retried_then_delivered(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """A 5xx is retried with backoff; when the server recovers, it is delivered."""
        collector.fault("status", status=503, count=2)
        h = make(collector, log)
        log.error("flaky")
        h.flush(10)
        assert 1 == h.stats.sent
        assert 3 == len(collector.requests())

    def test_5xx_gives_up_after_retries(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """A persistent 5xx: bounded retries, then dropped as failed."""
        collector.fault("status", status=500)
        h = make(collector, log, retries=1)
        log.error("always failing")
        h.flush(10)
        assert {"failed": 1} == h.stats.as_dict()["dropped"]
        assert 2 == len(collector.requests())

    @pytest.mark.parametrize("status", [400, 413, 422])
    def test_refusals_are_not_retried(
        self, collector: LocalCollector, log: logging.Logger, status: int
    ) -> None:
        """400/413/422 are final: dropped as server_refused, no retry."""
        collector.fault("status", status=status)
        h = make(collector, log)
        log.error("refused")
        h.flush(5)
        assert {"server_refused": 1} == h.stats.as_dict()["dropped"]
        assert 1 == len(collector.requests())

    def test_garbage_answers_are_retried_then_dropped(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """A 2xx with garbage is not counted as sent."""
        collector.fault("garbage")
        h = make(collector, log, retries=1)
        log.error("x")
        h.flush(10)
        assert {"failed": 1} == h.stats.as_dict()["dropped"]

    def test_circuit_breaker_stops_paying_per_record(self, log: logging.Logger) -> None:
        """With the server down, attempts stop after a few failures (circuit open)."""
        attempts: list[int] = []

        class Counting(Transport):
            def send(self, crumb: Any, **kwargs: Any) -> Any:
                attempts.append(1)
                return super().send(crumb, **kwargs)

        settings = client.ClientSettings.resolve(
            f"http://127.0.0.1:{free_port()}", 1.0, retries=5, fold_window=0, rate_limit=None
        )
        pipe = client.install(settings, transport_factory=Counting)
        h = MigasHandler(PROJECT, "1", endpoint=pipe.endpoint, excepthook=False, rate_limit=None)
        log.addHandler(h)
        for i in range(20):
            log.error(f"distinct {i}")
        time.sleep(3)
        assert 3 <= len(attempts) <= 6
        pipe.stop(0.2)
        stats = h.stats.as_dict()
        assert 20 == accounted(stats) + stats["pending"]

    def test_flush_never_waits_past_its_deadline(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """flush(0.3) with a hanging server returns after about 0.3 s, not the timeout."""
        collector.fault("hang")
        h = make(collector, log, timeout=30)
        log.error("stuck")
        start = time.monotonic()
        h.flush(0.3)
        assert time.monotonic() - start < 3

    def test_dictconfig_reconfiguration_does_not_wait(self, collector: LocalCollector) -> None:
        """dictConfig closes the old handler under logging's lock: no deadline wait there."""
        collector.fault("hang")
        cfg = {
            "version": 1,
            "handlers": {
                "migas": {
                    "class": "migas_logging.MigasHandler",
                    "project": PROJECT,
                    "endpoint": collector.url,
                    "timeout": 30,
                    "flush_deadline": 20,
                    "excepthook": False,
                }
            },
            "root": {"handlers": ["migas"], "level": "WARNING"},
        }
        logging.config.dictConfig(cfg)
        logging.getLogger("rc").error("pending while reconfiguring")
        start = time.monotonic()
        logging.config.dictConfig(cfg)
        assert time.monotonic() - start < 10  # waiting would take the 20 s deadline
        logging.getLogger("rc").error("still works")

    def test_after_close_records_are_ignored(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """After close(), records are ignored quietly and counted as closed."""
        h = make(collector, log)
        h.close()
        h.close()  # idempotent
        h.handle(logging.makeLogRecord({"name": "x", "levelno": 40, "msg": "late"}))
        assert {"closed": 1} == h.stats.as_dict()["dropped"]
        assert [] == collector.requests()


class TestNoRecursion:
    def test_root_at_debug_stays_quiet(self, collector: LocalCollector) -> None:
        """Root at DEBUG with the handler at DEBUG: only the application's record ships."""
        root = logging.getLogger()
        root.setLevel(logging.DEBUG)
        h = MigasHandler(PROJECT, "1", level="DEBUG", endpoint=collector.url, excepthook=False)
        root.addHandler(h)
        logging.getLogger("app").error("one")
        h.flush(5)
        time.sleep(0.3)
        rows = collector.breadcrumbs()
        assert ["app: one"] == [r["status_desc"] for r in rows]
        assert 1 == h.stats.emitted

    def test_own_and_http_loggers_are_never_shipped(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """migas_logging.*, urllib3 and requests records never reach emit()."""
        h = make(collector, log)
        for name in ("migas_logging.worker", "urllib3.connectionpool", "requests"):
            logging.getLogger(name).addHandler(h)
            logging.getLogger(name).error("internal")
            logging.getLogger(name).removeHandler(h)
        assert 0 == h.stats.emitted


class TestProcesses:
    def test_many_threads_lose_nothing_unaccounted(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """8 threads x 100 records: every record is sent, folded or dropped, exactly."""
        h = make(collector, log, queue_size=10_000)

        def run(t: int) -> None:
            for i in range(100):
                log.error(f"thread {t} record {i % 10}")

        threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert h.flush(0) is None
        client.current_client().flush(20)  # type: ignore[union-attr]
        stats = h.stats.as_dict()
        assert 800 == stats["emitted"]
        assert 0 == stats["pending"]
        assert 800 == accounted(stats)
        assert (80, 720) == (stats["sent"], stats["folded"])
        assert 80 + stats["summaries"] == len(collector.breadcrumbs())

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_forked_child_gets_its_own_worker(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """A forked child ships its own records with a fresh worker; nothing is doubled."""
        collector.fault("delay", seconds=0.3, count=1)
        h = make(collector, log, fold_window=0)
        log.error("parent before fork")  # still in flight when we fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                log.error("child record")
                h.flush(5)
                s = h.stats.as_dict()
                code = 0 if (s["emitted"], s["sent"]) == (1, 1) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        h.flush(5)
        assert 0 == os.waitstatus_to_exitcode(status)
        descs = sorted(r["status_desc"] for r in collector.breadcrumbs())
        assert [f"{log.name}: child record", f"{log.name}: parent before fork"] == descs
        sessions = {r["session_id"] for r in collector.breadcrumbs()}
        assert 1 == len(sessions)  # the child is part of the same run


class TestOptout:
    def test_optout_no_traffic_no_files(
        self,
        collector: LocalCollector,
        log: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
        xdg: Path,
    ) -> None:
        """MIGAS_OPTOUT: zero connections, no user-id file, records counted as optout."""
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        h = make(collector, log, excepthook=True)
        log.error("nothing leaves")
        h.flush(1)
        assert [] == collector.requests()
        assert not xdg.exists()
        assert {"optout": 1} == h.stats.as_dict()["dropped"]
        assert sys.excepthook is sys.__excepthook__ or "CrashHook" not in repr(sys.excepthook)

    def test_optout_set_later_stops_sending(
        self, collector: LocalCollector, log: logging.Logger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Opting out while running stops traffic from then on."""
        h = make(collector, log)
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        log.error("x")
        h.flush(2)
        assert [] == collector.requests()
        assert {"optout": 1} == h.stats.as_dict()["dropped"]


class TestInternalReports:
    def test_problems_reported_once(
        self, collector: LocalCollector, log: logging.Logger, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A refusing server is reported once on the package's logger, not per record."""
        collector.fault("status", status=422)
        h = make(collector, log, fold_window=0)
        with caplog.at_level(logging.WARNING, logger="migas_logging"):
            for i in range(5):
                log.error(f"r{i}")
            h.flush(5)
        assert 1 == caplog.text.count("refused")
