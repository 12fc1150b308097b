"""The rules that keep a run's terminal breadcrumb its session's latest, without a network.

Pure logic with an injected clock or hand-set state: when the terminal breadcrumb can keep
its second after the latest delivery (``Sender.spacing_fits``), and what may still go to
the spool once it went out live (``Worker._keepable``). The same rules are tested end to
end, through real HTTP, in ``tests/test_spool_order.py``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from migas_logging.admission import Admission
from migas_logging.client import ClientSettings
from migas_logging.delivery import Sender
from migas_logging.ledger import Ledger
from migas_logging.policy import DeliveryPolicy
from migas_logging.worker import Entry, Route, Worker

PROJECT = "nipreps/migas-logging"


def sender(flush_deadline: float = 2.0, timeout: float = 5.0) -> Sender:
    settings = ClientSettings.resolve(
        "http://127.0.0.1:9", timeout, flush_deadline=flush_deadline, rate_limit=None
    )
    return Sender(settings, DeliveryPolicy(), lambda *a: None)


class TestSpacingFits:
    def test_nothing_delivered_yet(self) -> None:
        assert sender().spacing_fits(PROJECT)

    def test_time_left_for_the_gap(self) -> None:
        s = sender()
        now = time.monotonic()
        s.last_delivery[PROJECT] = now
        s.exit_at(now + 2.0)  # 1.05 s of gap and 0.3 s of reserve fit in 2 s
        assert s.spacing_fits(PROJECT)

    def test_no_time_left_for_the_gap(self) -> None:
        s = sender()
        now = time.monotonic()
        s.last_delivery[PROJECT] = now
        s.exit_at(now + 1.0)
        assert not s.spacing_fits(PROJECT)

    def test_a_slow_server_keeps_more_for_the_terminal_try(self) -> None:
        s = sender()
        now = time.monotonic()
        s.last_delivery[PROJECT] = now
        s.exit_at(now + 2.0)
        s.latency = 0.5  # four answers of this server take 2 s: no time for the gap
        assert not s.spacing_fits(PROJECT)

    def test_another_project_is_not_in_the_way(self) -> None:
        s = sender()
        now = time.monotonic()
        s.last_delivery["other/project"] = now
        s.exit_at(now + 0.5)
        assert s.spacing_fits(PROJECT)

    def test_a_delivery_long_ago(self) -> None:
        s = sender()
        now = time.monotonic()
        s.last_delivery[PROJECT] = now - 5.0
        s.exit_at(now + 0.4)
        assert s.spacing_fits(PROJECT)


class FakeSpool:
    """Stands in for the SpoolKeeper: records what the worker keeps, writes nothing."""

    def __init__(self) -> None:
        self.kept: list[Entry] = []
        self.held: list[Entry] = []
        self.behind = False  # what keep_behind answers
        self.released = 0

    def keep(self, entry: Entry, *, held: bool = False) -> bool:
        self.kept.append(entry)
        if held:
            self.held.append(entry)
        return True

    def keep_behind(self, entry: Entry) -> bool:
        return self.behind

    def release_held(self) -> None:
        self.released += 1

    def replay(self) -> bool:
        return False


def worker() -> tuple[Worker, list[Entry]]:
    w = Worker(
        Admission(fold_window=0, rate_cap=None, queue_size=100),
        Ledger(),
        sender(),
        lambda *a: None,
    )
    spool = FakeSpool()
    w.spool = spool  # type: ignore[assignment]
    return w, spool.kept


def entry(seq: int, *, terminal: bool = False, attempts: int = 0) -> Entry:
    e = Entry(seq, Route(lambda data, ctx: data), None, terminal=terminal)
    e.attempts = attempts
    return e


class TestWhatGoesToTheSpool:
    @pytest.mark.parametrize(
        ("result", "attempts", "kept"),
        [
            ("unreachable", 1, True),
            ("rate_limited", 1, True),
            ("shutdown", 0, True),  # untried at the exit: it cannot have been stored
            ("shutdown", 1, False),  # tried and cut short: it may be stored
            ("unconfirmed", 1, False),
            ("server_refused", 1, False),
            ("failed", 3, False),
            ("sent", 1, False),
        ],
    )
    def test_by_outcome(self, result: str, attempts: int, kept: bool) -> None:
        w, _ = worker()
        assert kept == w._keepable(entry(1, attempts=attempts), result)

    def test_nothing_more_of_the_run_once_its_terminal_went_live(self) -> None:
        """Replayed after the outcome, a record would hide it on the dashboard."""
        w, _ = worker()
        w.terminal_live = True
        assert not w._keepable(entry(1, attempts=1), "unreachable")
        assert not w._keepable(entry(2), "shutdown")
        # the terminal breadcrumb itself, unreachable after all, is still kept
        assert w._keepable(entry(3, terminal=True, attempts=1), "unreachable")

    def test_keep_rest_writes_the_terminal_first(self) -> None:
        """With breadcrumbs still queued at the exit, the terminal one is kept first
        (it matters most when time runs out) and then the queued ones."""
        w, kept = worker()
        w._queue.put((1, Route(lambda d, c: d), "a", False))
        w._queue.put(None)  # a wake-up, not an entry
        w._queue.put((2, Route(lambda d, c: d), "b", False))
        w.pending = 3
        w._terminals.append(entry(3, terminal=True))
        w.keep_rest()
        assert [3, 1, 2] == [e.seq for e in kept]
        assert [True, False, False] == [e.terminal for e in kept]
        assert [3] == [e.seq for e in w.spool.held]  # type: ignore[union-attr]
        assert 1 == w.spool.released  # type: ignore[union-attr]
        assert 0 == w.pending
        assert w.ledger.total.dropped == {"spooled": 3}

    def test_keep_rest_leaves_a_lone_terminal_to_go_live(self) -> None:
        """Nothing queued (a try in flight at most): the terminal may still go out live."""
        w, kept = worker()
        w._terminals.append(entry(1, terminal=True))
        w.pending = 1
        w.keep_rest()
        assert [] == kept
        assert 1 == len(w._terminals)

    def test_keep_rest_without_a_spool_does_nothing(self) -> None:
        w, _ = worker()
        w.spool = None
        w._queue.put((1, Route(lambda d, c: d), "a", False))
        w.keep_rest()
        assert not w._queue.empty()


def test_a_terminal_kept_behind_the_spool_is_not_tried(monkeypatch: Any) -> None:
    """When the spool says so, the terminal entry is spooled and never sent."""
    w, _ = worker()
    w.spool.behind = True  # type: ignore[union-attr]
    tried: list[Entry] = []
    monkeypatch.setattr(w.sender, "settle", lambda e, **kw: tried.append(e) or "sent")
    w.pending = 1
    w._settle(entry(1, terminal=True))
    assert [] == tried
    assert w.ledger.total.dropped == {"spooled": 1}
    assert not w.terminal_live
    w.spool.behind = False  # type: ignore[union-attr]
    w.pending = 1
    w._settle(entry(2, terminal=True))
    assert 1 == len(tried)
    assert w.terminal_live


def test_what_waits_behind_an_exit_without_a_server_is_kept_at_once(monkeypatch: Any) -> None:
    """At the exit, a try that found no server settles what is queued behind it with the
    same reason (the next second will not change that): kept, without a try each."""
    w, kept = worker()
    tried: list[Entry] = []

    def settle(e: Entry, **kw: Any) -> str:
        tried.append(e)
        w.sender.drop_queued = "unreachable"
        return "unreachable"

    monkeypatch.setattr(w.sender, "settle", settle)
    for seq in (2, 3):
        w._queue.put((seq, Route(lambda d, c: d), "x", False))
    w.pending = 3
    w._settle(entry(1, attempts=1))
    assert [1] == [e.seq for e in tried]
    assert [1, 2, 3] == [e.seq for e in kept]
    assert w.ledger.total.dropped == {"spooled": 3}
    assert w._queue.empty()


def test_a_spool_write_that_ends_after_the_exit_gave_up_is_taken_back(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """During the exit a slow write (a struggling file system) is waited for only until
    the deadline's grace; counted dropped, its file is removed when it lands after all,
    so that it is never replayed."""
    from migas_logging.breadcrumb import Breadcrumb, Context
    from migas_logging.replay import SpoolKeeper
    from migas_logging.spool import Spool

    s = sender()
    keeper = SpoolKeeper(str(tmp_path / "spool"), None, s, lambda *a: None)
    real_write = Spool._write

    def slow_write(self: Spool, name: str, body: bytes, final: str | None = None) -> None:
        time.sleep(0.6)
        real_write(self, name, body, final)

    monkeypatch.setattr(Spool, "_write", slow_write)
    e = entry(1)
    e.crumb = Breadcrumb(PROJECT, "1", "3.11", Context(session_id="s"), status="R")
    s.exit_at(time.monotonic())  # the deadline is now: 0.2 s of grace for writing
    start = time.monotonic()
    assert not keeper.keep(e)
    assert time.monotonic() - start < 0.55  # did not wait for the write
    helpers = [t for t in threading.enumerate() if t.name == "migas-spool"]
    assert helpers  # the write goes on, on its helper thread
    for helper in helpers:
        helper.join(10)  # the write landed, and was taken back
    assert [] == [n for n in os.listdir(tmp_path / "spool") if n.endswith(".json")]
    s.exit_deadline = 0.0  # no exit: the write is waited for
    assert keeper.keep(e)
    assert 1 == len([n for n in os.listdir(tmp_path / "spool") if n.endswith(".json")])
