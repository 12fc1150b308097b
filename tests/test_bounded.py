"""BoundedCalls: file work on a helper thread, waited for only so long, one at a time."""

from __future__ import annotations

import threading
import time

import pytest

from migas_logging._bounded import BoundedCalls, Busy


def helpers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_the_value_comes_back() -> None:
    assert 42 == BoundedCalls("t-value").run(lambda: 42, 5)


def test_an_exception_comes_back() -> None:
    def fail() -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        BoundedCalls("t-error").run(fail, 5)


def test_a_stuck_call_is_busy_and_the_next_is_refused_at_once() -> None:
    """A hung file system: the caller stops waiting; later calls start no new thread
    until the stuck one comes back; its late value goes to ``late``."""
    calls = BoundedCalls("t-stuck")
    release = threading.Event()
    late: list[int] = []
    start = time.monotonic()
    with pytest.raises(Busy):
        calls.run(lambda: release.wait(30) and 7, 0.1, late=late.append)
    assert time.monotonic() - start < 10
    ran: list[int] = []
    for _ in range(50):
        with pytest.raises(Busy):
            calls.run(lambda: ran.append(1), 5)  # refused without waiting
    assert [] == ran
    assert 1 == len(helpers("t-stuck"))
    release.set()
    for thread in helpers("t-stuck"):
        thread.join(10)
    assert [7] == late
    assert 3 == calls.run(lambda: 3, 5)  # it came back: calls run again


def test_no_late_call_for_an_answer_in_time() -> None:
    late: list[int] = []
    assert 1 == BoundedCalls("t-in-time").run(lambda: 1, 5, late=late.append)
    assert [] == late


def test_not_exclusive_a_slow_call_still_completes_beside_the_next() -> None:
    """The spool's calls: a slow one (a loaded machine) is not waited for, but it still
    does its work, and the next call is not refused."""
    calls = BoundedCalls("t-shared", exclusive=False)
    release = threading.Event()
    done: list[str] = []
    with pytest.raises(Busy):
        calls.run(lambda: release.wait(30) and done.append("slow"), 0.1)
    assert 5 == calls.run(lambda: 5, 5)
    release.set()
    for thread in helpers("t-shared"):
        thread.join(10)
    assert ["slow"] == done
