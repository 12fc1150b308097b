"""The machine budget: one sliding-window budget shared by processes through a locked file."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import stat
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migas_logging import budget as budget_module
from migas_logging.budget import MachineBudget, for_server_window, start_jitter
from migas_logging.exceptions import ConfigurationError

T0 = 1_700_000_000.0


def most_in_a_window(times: list[float], period: float) -> int:
    """The most of ``times`` that fall in one window [t, t + period)."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - period:
            first += 1
        best = max(best, last - first + 1)
    return best


def spent(path: Path) -> int:
    """How many tokens the file shows as spent (grant times not zero)."""
    data = path.read_bytes()
    _, slots, _ = struct.unpack_from("<8sII", data)
    return sum(1 for t in struct.unpack_from(f"<{slots}d", data, 16) if t > 0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "budget"


class TestWindow:
    def test_count_per_period(self, path: Path) -> None:
        """count grants at once, then none until the first token comes back a period later."""
        budget = MachineBudget(path, 3, 60)
        assert [True, True, True, False] == [budget.take(T0) for _ in range(4)]
        assert 60.0 == budget.wait_time(T0)
        assert 30.0 == budget.wait_time(T0 + 30)
        assert not budget.take(T0 + 59.9)
        assert budget.take(T0 + 60)
        assert 0.0 == budget.wait_time(T0 + 60)  # the other two came back too
        assert budget.take(T0 + 60)
        assert budget.take(T0 + 60)
        assert not budget.take(T0 + 60)

    def test_a_server_window_keeps_a_margin_for_the_arrival(self, path: Path) -> None:
        """The server counts a request when it arrives, after its grant: a token comes
        back a window and a second after it was spent, so a replay that spends the whole
        budget at once is not answered 429 when the window comes round."""
        budget = for_server_window(path, 2, 60)
        assert [True, True, False] == [budget.take(T0) for _ in range(3)]
        assert not budget.take(T0 + 60.5)
        assert budget.take(T0 + 61)

    def test_a_token_comes_back_one_period_after_it_was_spent(self, path: Path) -> None:
        """Unlike a bucket refilled at a constant rate, no burst follows a burst."""
        budget = MachineBudget(path, 2, 10)
        assert budget.take(T0)
        assert budget.take(T0 + 5)
        assert not budget.take(T0 + 9)
        assert budget.take(T0 + 10)
        assert not budget.take(T0 + 14)
        assert budget.take(T0 + 15)

    @settings(max_examples=60, deadline=None)
    @given(
        count=st.integers(1, 6),
        gaps=st.lists(st.floats(0, 7, allow_nan=False), min_size=1, max_size=60),
    )
    def test_never_more_than_count_in_any_window(
        self, tmp_path_factory: pytest.TempPathFactory, count: int, gaps: list[float]
    ) -> None:
        """Whatever the request times, no window of one period holds more than count grants."""
        budget = MachineBudget(tmp_path_factory.mktemp("b") / "budget", count, 10)
        now, granted = T0, []
        for gap in gaps:
            now += gap
            if budget.take(now):
                granted.append(now)
        assert most_in_a_window(granted, 10) <= count

    def test_a_clock_that_went_back_waits_at_most_a_period(self, path: Path) -> None:
        """Grants stamped in the future (the clock was set back) do not block for longer."""
        budget = MachineBudget(path, 1, 60)
        assert budget.take(T0 + 86400)
        assert not budget.take(T0)
        assert 60.0 == budget.wait_time(T0)
        assert budget.take(T0 + 60)

    @pytest.mark.parametrize("now", [None, float("nan"), float("inf"), -5.0, "soon"])
    def test_a_bad_now_is_the_time(self, path: Path, now: Any) -> None:
        """take and wait_time never raise on a bad now: they use the clock."""
        budget = MachineBudget(path, 1, 60)
        assert budget.take(now)
        assert 59 < budget.wait_time(now) <= 60


class TestFile:
    def test_processes_share_one_file(self, path: Path) -> None:
        """Two budgets on one file draw on one budget."""
        first, second = MachineBudget(path, 3, 60), MachineBudget(path, 3, 60)
        assert first.take(T0)
        assert second.take(T0)
        assert first.take(T0)
        assert not second.take(T0)
        assert 0o600 == stat.S_IMODE(path.stat().st_mode)
        assert 0o700 == stat.S_IMODE(path.parent.stat().st_mode)
        assert 0 == first.local_decisions + second.local_decisions

    def test_a_file_of_another_count_keeps_its_recent_grants(self, path: Path) -> None:
        """A process configured with another count keeps the grants already made."""
        old = MachineBudget(path, 5, 60)
        for offset in range(4):
            assert old.take(T0 + offset)
        new = MachineBudget(path, 2, 60)
        assert not new.take(T0 + 10)  # the two most recent grants fill it
        assert 52.0 == new.wait_time(T0 + 10)
        bigger = MachineBudget(path, 10, 60)
        assert [True] * 8 + [False] == [bigger.take(T0 + 20) for _ in range(9)]

    @pytest.mark.parametrize("content", [b"", b"garbage", b"MIGASRB1" + b"\xff" * 40])
    def test_a_damaged_file_gives_a_full_budget(self, path: Path, content: bytes) -> None:
        """A file that is not a budget is rewritten."""
        path.parent.mkdir(mode=0o700)
        path.write_bytes(content)
        budget = MachineBudget(path, 2, 60)
        assert [True, True, False] == [budget.take(T0) for _ in range(3)]
        assert 2 == spent(path)

    def test_a_future_or_nan_grant_in_the_file_is_repaired(self, path: Path) -> None:
        """Non-finite times are treated as long ago."""
        path.parent.mkdir(mode=0o700)
        path.write_bytes(struct.pack("<8sII2d", b"MIGASRB1", 2, 0, float("nan"), float("inf")))
        assert MachineBudget(path, 2, 60).take(T0)

    def test_a_planted_link_is_not_followed(self, path: Path, tmp_path: Path) -> None:
        """A symbolic link at the budget's path is not written through."""
        path.parent.mkdir(mode=0o700)
        target = tmp_path / "target"
        target.write_bytes(b"keep")
        path.symlink_to(target)
        budget = MachineBudget(path, 1, 60)
        assert budget.take(T0)
        assert budget.problem
        assert b"keep" == target.read_bytes()


class TestFallback:
    def test_an_unusable_directory_gives_a_budget_of_its_own(self, tmp_path: Path) -> None:
        """A file system that cannot hold the file: the process keeps count alone."""
        (tmp_path / "file").write_text("x", encoding="utf-8")
        budget = MachineBudget(tmp_path / "file" / "budget", 2, 60)
        assert [True, True, False] == [budget.take(T0) for _ in range(3)]
        assert 60.0 == budget.wait_time(T0)
        assert "cannot use the budget file" in (budget.problem or "")
        assert 4 == budget.local_decisions

    def test_a_directory_others_may_write_is_not_used(self, path: Path) -> None:
        """The file's directory must be private, like the spool's."""
        path.parent.mkdir()
        path.parent.chmod(0o777)
        budget = MachineBudget(path, 1, 60)
        assert budget.take(T0)
        assert not path.exists()
        assert "writable by group or others" in (budget.problem or "")

    def test_the_file_is_tried_again_later(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a failure the file is left alone for a while, then used again."""
        blocker = tmp_path / "state"
        blocker.write_text("x", encoding="utf-8")
        budget = MachineBudget(blocker / "budget", 1, 60)
        assert budget.take(T0)
        blocker.unlink()
        assert not budget.take(T0)  # still its own budget: 1 spent
        monkeypatch.setattr(budget_module, "_RETRY_FILE_AFTER", 0.0)
        assert budget.take(T0)  # the file again, with a full budget
        assert (blocker / "budget").exists()
        assert budget.problem is None

    @pytest.fixture
    def held(self, path: Path) -> Iterator[None]:
        """Another process holds the file's lock."""
        path.parent.mkdir(mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        os.close(fd)

    @pytest.mark.usefixtures("held")
    def test_a_busy_lock_says_wait_without_blocking(self, path: Path) -> None:
        """While the lock is held elsewhere: no, quickly; wait_time says try again soon."""
        budget = MachineBudget(path, 5, 60, stuck_after=60)
        start = time.monotonic()
        assert not budget.take(T0)
        assert budget.wait_time(T0) == budget.lock_wait
        assert time.monotonic() - start < 2.0  # two calls of about 0.1 s at most
        assert 0 == budget.local_decisions

    @pytest.mark.usefixtures("held")
    def test_a_lock_busy_for_too_long_gives_a_budget_of_its_own(self, path: Path) -> None:
        """A lock held for longer than stuck_after (a stopped process): allowed, alone."""
        budget = MachineBudget(path, 5, 60, stuck_after=0.0)
        assert not budget.take(T0)  # busy now: the first sign
        time.sleep(0.01)
        assert budget.take(T0)
        assert "busy" in (budget.problem or "")

    def test_a_hung_file_system_does_not_hold_the_caller(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The file work hangs: take answers in about lock_wait, then falls back."""
        release = threading.Event()
        monkeypatch.setattr(
            MachineBudget, "_with_file", lambda self, work, cancelled: release.wait(30)
        )
        budget = MachineBudget(path, 5, 60, stuck_after=0.3)
        try:
            start = time.monotonic()
            assert not budget.take(T0)
            assert not budget.take(T0)  # the hung call has not come back: still busy
            assert time.monotonic() - start < 2.0
            time.sleep(0.4)
            assert budget.take(T0)  # hung for longer than stuck_after: its own budget
            assert 1 == budget.local_decisions
        finally:
            release.set()

    def test_no_helper_thread_at_shutdown(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Python 3.12 refuses new threads in atexit handlers: the file is used inline."""

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        monkeypatch.setattr(threading.Thread, "start", refuse)
        budget = MachineBudget(path, 2, 60)
        assert [True, True, False] == [budget.take(T0) for _ in range(3)]
        assert 0 == budget.local_decisions
        assert 2 == spent(path)

    def test_a_bug_allows(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unexpected error never reaches the caller (and never silences telemetry)."""

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("bug")

        monkeypatch.setattr(MachineBudget, "_decide", broken)
        budget = MachineBudget(path, 1, 60)
        assert budget.take(T0)
        assert 0.0 == budget.wait_time(T0)

    @pytest.mark.parametrize(
        ("count", "period"), [(0, 60), (True, 60), (1.5, 60), (10**6, 60), (5, 0), (5, "x")]
    )
    def test_bad_configuration_is_loud(self, path: Path, count: Any, period: Any) -> None:
        """count and period are the developer's: a bad one is a ConfigurationError."""
        with pytest.raises(ConfigurationError):
            MachineBudget(path, count, period)


class TestStartJitter:
    def test_deterministic_and_in_range(self) -> None:
        """One seed, one delay; every delay in [0, spread)."""
        assert start_jitter("abc", 5.0) == start_jitter("abc", 5.0)
        delays = [start_jitter(f"session-{i}", 10.0) for i in range(2000)]
        assert all(0.0 <= d < 10.0 for d in delays)
        assert 4.5 < sum(delays) / len(delays) < 5.5  # spread evenly, not bunched
        assert 9 == len({int(d) for d in delays[:200]} - {0})  # every second is used

    @pytest.mark.parametrize("spread", [0, -1, float("nan"), float("inf"), "3"])
    def test_a_bad_spread_is_no_delay(self, spread: Any) -> None:
        """Never raises."""
        assert 0.0 == start_jitter("abc", spread)


# --- many processes, one file -------------------------------------------------------


def _hammer(path: str, count: int, period: float, seconds: float, start: Any, out: Any) -> None:
    budget = MachineBudget(path, count, period)
    start.wait(30)
    granted: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if budget.take():
            assert budget.last_grant is not None
            granted.append(budget.last_grant)
        time.sleep(0.001)
    out.put((granted, budget.local_decisions))


def hammer(path: Path, processes: int, count: int, period: float, seconds: float) -> list[Any]:
    ctx = multiprocessing.get_context("forkserver")  # 20 spawns cost seconds; forks do not
    ctx.set_forkserver_preload([__name__])  # each fork has this module already
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(str(path), count, period, seconds, start, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert 0 == proc.exitcode
    return results


@pytest.mark.slow
class TestManyProcesses:
    def test_twenty_processes_never_exceed_the_budget(self, path: Path) -> None:
        """20 processes hammer 50/60 s for a while: 50 grants in all, never more."""
        results = hammer(path, 20, 50, 60.0, 1.0)
        granted = [t for times, _ in results for t in times]
        assert 0 == sum(local for _, local in results), "a process fell back to its own budget"
        assert len(granted) <= 50
        assert 50 == spent(path)  # every token was spent
        assert len(granted) >= 25  # (a helper thread late by 0.1 s wastes its grant)

    def test_tokens_come_back_and_no_window_holds_more(self, path: Path) -> None:
        """6 processes on 5 per 0.5 s for 1.2 s: grants keep coming, never 6 in a window."""
        results = hammer(path, 6, 5, 0.5, 1.2)
        granted = [t for times, _ in results for t in times]
        assert most_in_a_window(granted, 0.5) <= 5
        assert len(granted) >= 10  # the budget came back at least once
