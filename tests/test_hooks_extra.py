"""sys.unraisablehook and the before_send hook of the crash and lifecycle breadcrumbs."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from migas_logging import MigasHandler
from migas_logging.breadcrumb import Breadcrumb
from migas_logging.collector import LocalCollector
from migas_logging.exceptions import ConfigurationError

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


class Leaky:
    def __del__(self) -> None:
        raise RuntimeError("cleanup of /home/jdoe/scratch failed")


class TestUnraisable:
    def test_reported_as_r_and_chained(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", seen.append)
        handler = MigasHandler(PROJECT, "1", endpoint=collector.url)
        Leaky()
        gc.collect()
        handler.flush(5)
        (row,) = collector.wait_for(1)
        assert ("R", "RuntimeError") == (row["status"], row["error_type"])
        assert "Unraisable exception in Leaky.__del__" == row["status_desc"]
        assert "jdoe" not in row["error_desc"]
        assert 1 == len(seen)  # the previous hook still ran
        handler.close()
        assert sys.unraisablehook == seen.append  # given back


class TestBeforeSend:
    def test_rewrites_and_drops(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sys, "unraisablehook", lambda u: None)
        monkeypatch.setattr(threading, "excepthook", lambda a: None)
        hints: list[dict[str, Any]] = []

        def before_send(crumb: Breadcrumb, hint: dict[str, Any]) -> Breadcrumb | None:
            hints.append(hint)
            if hint["kind"] == "unraisable":
                return None
            return crumb.replace(error_type="Classified", error_desc="by the app")

        handler = MigasHandler(PROJECT, "1", endpoint=collector.url, before_send=before_send)
        Leaky()
        gc.collect()
        t = threading.Thread(target=lambda: 1 / 0, name="worker-1")
        t.start()
        t.join()
        handler.flush(5)
        (row,) = collector.wait_for(1)
        assert ("F", "Classified", "by the app") == (
            row["status"],
            row["error_type"],
            row["error_desc"],
        )
        assert ["unraisable", "thread"] == [h["kind"] for h in hints]
        assert {"filtered": 1} == handler.stats.as_dict()["dropped"]
        handler.close()

    def test_a_failing_hook_sends_the_breadcrumb_as_is(
        self,
        collector: LocalCollector,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(threading, "excepthook", lambda a: None)

        def broken(crumb: Breadcrumb, hint: dict[str, Any]) -> Breadcrumb | None:
            raise KeyError("oops")

        handler = MigasHandler(PROJECT, "1", endpoint=collector.url, before_send=broken)
        with caplog.at_level(logging.WARNING, logger="migas_logging"):
            t = threading.Thread(target=lambda: 1 / 0)
            t.start()
            t.join()
            handler.flush(5)
        (row,) = collector.wait_for(1)
        assert "ZeroDivisionError" == row["error_type"]
        assert any("before_send failed" in r.getMessage() for r in caplog.records)
        handler.close()

    def test_not_callable_fails_at_configuration(self) -> None:
        with pytest.raises(ConfigurationError, match="before_send"):
            MigasHandler(PROJECT, "1", before_send="not a function")
