"""error_detail="type": only the exception's class name leaves, in records and crashes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from migas_logging import MigasHandler
from migas_logging.collector import LocalCollector
from migas_logging.exceptions import ConfigurationError

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def test_type_only_in_records_and_thread_crashes(
    collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threading, "excepthook", lambda a: None)
    handler = MigasHandler(
        PROJECT, "1", endpoint=collector.url, error_detail="type", rate_limit=None
    )
    logger = logging.getLogger("detail")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        raise ValueError("subject sub-03 has no T1w")
    except ValueError:
        logger.exception("subject failed")
    t = threading.Thread(target=lambda: {}["sub-04"])
    t.start()
    t.join()
    handler.flush(5)
    rows = collector.wait_for(2)
    assert {"ValueError", "KeyError"} == {r["error_type"] for r in rows}
    assert all(r["error_desc"] is None for r in rows)
    bodies = b"".join(r.body for r in collector.requests())
    assert b"sub-03" not in bodies
    assert b"sub-04" not in bodies
    handler.close()


def test_default_sends_the_redacted_message(collector: LocalCollector) -> None:
    handler = MigasHandler(PROJECT, "1", endpoint=collector.url, excepthook=False)
    logger = logging.getLogger("detail2")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        raise ValueError("subject sub-03 has no T1w")
    except ValueError:
        logger.exception("subject failed")
    handler.flush(5)
    (row,) = collector.wait_for(1)
    assert "sub-03" in row["error_desc"]  # exception messages are sent (redacted) by default
    handler.close()


def test_bad_value_fails_at_configuration() -> None:
    with pytest.raises(ConfigurationError, match="error_detail"):
        MigasHandler(PROJECT, "1", error_detail="everything")
