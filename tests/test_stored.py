"""The ``stored`` command's logic in-process, with an injected clock (no real waiting)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from migas_logging._stored import StoredError, run_stored
from migas_logging.collector import LocalCollector

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def post(c: LocalCollector, project: str = PROJECT, status: str = "R") -> None:
    body = {"project": project, "project_version": "1.0", "proc": {"status": status}}
    requests.post(c.url + "/api/breadcrumb?wait=true", json=body, timeout=10)


class FakeTime:
    """A clock that ``sleep`` advances, and an action to run at each poll."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 0.0
        self.polls = 0
        self._on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.polls += 1
        if self._on_sleep is not None:
            self._on_sleep(self.polls)


def run(c: LocalCollector, fake: FakeTime, **options: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_stored(
        endpoint=c.url,
        timeout=5,
        out=out,
        err=err,
        clock=fake.clock,
        sleep=fake.sleep,
        **options,
    )
    return code, out.getvalue(), err.getvalue()


class TestFollow:
    def test_follow_timeout_is_kept_without_waiting(self, collector: LocalCollector) -> None:
        """The deadline counts on the injected clock: 10 s of polling take no real time."""
        fake = FakeTime()
        started = time.monotonic()
        code, out, _ = run(collector, fake, follow=True, follow_timeout=10.0)
        assert 0 == code
        assert 20 == fake.polls  # every 0.5 s
        assert time.monotonic() - started < 30  # generous: only HTTP on loopback
        assert out.startswith("seq")

    def test_missing_rows_at_the_deadline_fail(self, collector: LocalCollector) -> None:
        """With --limit unmet at the deadline: status 1 and how many came."""
        code, _, err = run(collector, FakeTime(), follow=True, follow_timeout=2.0, limit=3)
        assert 1 == code
        assert "0 of 3 breadcrumb(s) arrived in time" in err

    def test_rows_that_arrive_are_printed_up_to_the_limit(self, collector: LocalCollector) -> None:
        """Rows stored while following are printed once each; --limit ends it."""
        post(collector)

        def arrive(poll: int) -> None:
            if poll == 2:
                post(collector, status="F")
                post(collector, status="C")
                post(collector, status="S")

        fake = FakeTime(arrive)
        code, out, _ = run(collector, fake, follow=True, as_json=True, limit=3)
        assert 0 == code
        assert ["R", "F", "C"] == [json.loads(line)["status"] for line in out.splitlines()]
        assert 2 == fake.polls

    def test_refusals_are_noted_once_as_they_come(self, collector: LocalCollector) -> None:
        """A breadcrumb the collector refuses while following is noted on stderr, once."""

        def refused(poll: int) -> None:
            if poll == 1:
                post(collector, project="some/one")

        code, _, err = run(collector, FakeTime(refused), follow=True, follow_timeout=2.0)
        assert 0 == code
        assert 1 == err.count("refused 1 breadcrumb(s) of 'some/one'")


def test_unreachable_collector_is_a_stored_error() -> None:
    """A refused connection raises StoredError with a one-line reason."""
    from migas_logging.collector import free_port

    with pytest.raises(StoredError, match="cannot connect"):
        run_stored(endpoint=f"http://127.0.0.1:{free_port()}", timeout=2)
