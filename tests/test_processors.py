"""The structlog processor: a drop-in that changes nothing the pipeline renders."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from migas_logging import MigasHandler
from migas_logging.collector import LocalCollector
from migas_logging.processors import MigasProcessor

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def processor(collector: LocalCollector, **options: Any) -> MigasProcessor:
    options.setdefault("excepthook", False)
    options.setdefault("rate_limit", None)
    return MigasProcessor(PROJECT, "1.0.0", endpoint=collector.url, **options)


def pipeline(*middle: Any) -> list[Any]:
    return [
        structlog.processors.add_log_level,
        *middle,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(sort_keys=True),
    ]


def render_all(processors: list[Any]) -> str:
    """Run the same events through a structlog pipeline; return what it printed."""
    out = io.StringIO()
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger("tool")
    log.info("starting", subjects=3)
    log.warning("slow step", step="bold")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("step failed", step="bold")
    log.error("bad input", path="/home/alice/in.nii")
    return out.getvalue()


class TestPureStructlog:
    def test_output_is_byte_for_byte_unchanged(self, collector: LocalCollector) -> None:
        """The rendered output with the processor equals the output without it."""
        without = render_all(pipeline())
        p = processor(collector)
        with_it = render_all(pipeline(p))
        assert without.splitlines()[:2] == with_it.splitlines()[:2]
        # tracebacks hold line numbers of this file only; compare the parsed events
        assert [json.loads(x) for x in without.splitlines()] == [
            json.loads(x) for x in with_it.splitlines()
        ]
        p.handler.flush(5)
        assert 3 == len(collector.breadcrumbs())

    def test_event_dict_not_mutated(self, collector: LocalCollector) -> None:
        """The processor returns the very dict it got, with the same contents."""
        p = processor(collector)
        event = {"event": "x", "level": "error", "exc_info": False, "k": [1]}
        snapshot = json.dumps(event, sort_keys=True)
        assert p(None, "error", event) is event
        assert snapshot == json.dumps(event, sort_keys=True)

    def test_exceptions_arrive_as_failed_with_type(self, collector: LocalCollector) -> None:
        """error events with exc_info arrive as F with the exception type and frames."""
        p = processor(collector)
        render_all(pipeline(p))
        p.handler.flush(5)
        rows = {r["status_desc"]: r for r in collector.breadcrumbs()}
        failed = rows["structlog: step failed"]
        assert ("F", "ZeroDivisionError") == (failed["status"], failed["error_type"])
        assert "render_all" in failed["error_desc"]
        assert "R" == rows["structlog: slow step"]["status"]
        assert "alice" not in json.dumps(list(rows.values()))

    def test_level_is_respected(self, collector: LocalCollector) -> None:
        """Events below the processor's level are not sent."""
        p = processor(collector, level="ERROR")
        render_all(pipeline(p))
        p.handler.flush(5)
        assert ["F", "F"] == [r["status"] for r in collector.breadcrumbs()]

    def test_placed_after_format_exc_info_warns_once(
        self, collector: LocalCollector, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After format_exc_info there is no exception to read: a clear warning, once."""
        p = processor(collector)
        chain = [
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            p,
            structlog.processors.JSONRenderer(),
        ]
        with caplog.at_level(logging.WARNING, logger="migas_logging"):
            render_all(chain)
            render_all(chain)
        assert 1 == caplog.text.count("put MigasProcessor before it")

    def test_survives_dictconfig(self, collector: LocalCollector) -> None:
        """Reconfiguring stdlib logging does not close the processor's handler."""
        p = processor(collector)
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        p(None, "error", {"event": "after dictConfig"})
        p.handler.flush(5)
        assert ["structlog: after dictConfig"] == [
            r["status_desc"] for r in collector.breadcrumbs()
        ]

    def test_never_raises(self, collector: LocalCollector) -> None:
        """Whatever the event dict holds, the processor returns it."""

        class Evil:
            def __str__(self) -> str:
                raise RuntimeError("no")

        p = processor(collector)
        for event in (
            {},
            {"event": Evil()},
            {"event": "x", "exc_info": "weird"},
            {"event": "x", "level": 42},
        ):
            assert p(None, "error", event) is event  # type: ignore[arg-type]

    def test_shares_the_process_pipeline_and_session(self, collector: LocalCollector) -> None:
        """Processor and handler share one worker and one session id."""
        p = processor(collector)
        h = MigasHandler(PROJECT, "1", endpoint=collector.url, excepthook=False)
        assert p.handler._client is h._client
        p(None, "error", {"event": "from structlog"})
        h.handle(logging.makeLogRecord({"name": "std", "levelno": 40, "msg": "from stdlib"}))
        h.flush(5)
        assert 1 == len({r["session_id"] for r in collector.breadcrumbs()})
        h.close()


class TestStdlibRoute:
    def _configure(
        self, collector: LocalCollector, *, with_processor: bool, with_handler: bool
    ) -> tuple[MigasProcessor | None, io.StringIO]:
        out = io.StringIO()
        p = processor(collector) if with_processor else None
        handlers: dict[str, Any] = {
            "console": {"class": "logging.StreamHandler", "stream": out, "formatter": "structlog"},
        }
        if with_handler:
            handlers["migas"] = {
                "class": "migas_logging.MigasHandler",
                "project": PROJECT,
                "endpoint": collector.url,
                "excepthook": False,
                "rate_limit": None,
            }
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {
                    "structlog": {
                        "()": structlog.stdlib.ProcessorFormatter,
                        "processor": structlog.processors.JSONRenderer(sort_keys=True),
                    }
                },
                "handlers": handlers,
                "loggers": {
                    "svc": {"handlers": list(handlers), "level": "INFO", "propagate": False}
                },
            }
        )
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                *([p] if p is not None else []),
                structlog.processors.format_exc_info,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
        return p, out

    def _emit(self) -> None:
        log = structlog.get_logger("svc")
        log.info("started")
        log.error("disk full", device="sda")
        try:
            raise KeyError("k")
        except KeyError:
            log.exception("lookup failed")

    def _migas_handler(self) -> MigasHandler:
        return next(h for h in logging.getLogger("svc").handlers if isinstance(h, MigasHandler))

    def test_handler_only(self, collector: LocalCollector) -> None:
        """Recommended over stdlib: the handler alone sends structlog's events once."""
        _, out = self._configure(collector, with_processor=False, with_handler=True)
        self._emit()
        self._migas_handler().flush(5)
        rows = collector.breadcrumbs()
        assert ["F", "F"] == [r["status"] for r in rows]
        assert '"event": "disk full"' in out.getvalue()

    def test_processor_and_handler_send_once(self, collector: LocalCollector) -> None:
        """Both configured: each event is sent once, the handler counts a duplicate."""
        p, out = self._configure(collector, with_processor=True, with_handler=True)
        self._emit()
        h = self._migas_handler()
        assert p is not None
        p.handler.flush(5)
        h.flush(5)
        rows = collector.breadcrumbs()
        assert 2 == len(rows)
        assert {"duplicate": 2} == h.stats.as_dict()["dropped"]
        assert "KeyError" in [r["error_type"] for r in rows]
        assert 3 == len(out.getvalue().splitlines())
