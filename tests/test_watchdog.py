"""The watchdog: a guard's sockets are shut down at its deadline, and only then."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator

import pytest
import requests

from migas_logging import _watchdog
from migas_logging._watchdog import Guard, WatchedAdapter
from migas_logging.collector import LocalCollector
from migas_logging.transport import Transport

#: Generous bound on how late a deadline may be kept on a loaded machine.
LATE = 2.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(30)  # a per-read timeout far beyond the deadlines below
    yield a, b
    a.close()
    b.close()


def blocked_read(sock: socket.socket, guard: Guard) -> tuple[bytes, float]:
    """Read from ``sock`` inside ``guard``; return what came and how long it took."""
    start = time.monotonic()
    with guard:
        guard.watch(sock)
        try:
            data = sock.recv(16)
        except OSError:
            data = b""
    return data, time.monotonic() - start


class TestGuard:
    def test_deadline_wakes_a_blocked_read(self, pair: tuple[socket.socket, ...]) -> None:
        """A read that would wait 30 s ends at the deadline, with end-of-file."""
        a, _ = pair
        guard = Guard(time.monotonic() + 0.3)
        data, elapsed = blocked_read(a, guard)
        assert b"" == data
        assert guard.expired
        assert 0.2 < elapsed < 0.3 + LATE

    def test_a_guard_that_ended_leaves_its_socket_alone(
        self, pair: tuple[socket.socket, ...]
    ) -> None:
        """After the guard ends in time, its deadline passing does not touch the socket."""
        a, b = pair
        guard = Guard(time.monotonic() + 0.2)
        with guard:
            guard.watch(a)
        time.sleep(0.5)
        assert not guard.expired
        b.sendall(b"still here")
        assert b"still here" == a.recv(16)

    def test_a_socket_watched_after_the_deadline_is_shut_at_once(
        self, pair: tuple[socket.socket, ...]
    ) -> None:
        """A socket registered late (a new connection) does not escape the deadline."""
        a, _ = pair
        guard = Guard(time.monotonic() - 1)
        with guard:
            time.sleep(0.2)  # the watchdog expires it
            guard.watch(a)
            assert b"" == a.recv(16)
        assert guard.expired

    def test_guards_on_threads_keep_their_own_deadlines(self) -> None:
        """Several threads, several deadlines: each read ends at its own."""
        results: dict[float, float] = {}
        pairs = [socket.socketpair() for _ in range(3)]

        def run(sock: socket.socket, after: float) -> None:
            sock.settimeout(30)
            results[after] = blocked_read(sock, Guard(time.monotonic() + after))[1]

        threads = [
            threading.Thread(target=run, args=(p[0], after))
            for p, after in zip(pairs, (0.2, 0.8, 1.6), strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for p in pairs:
            p[0].close()
            p[1].close()
        assert [0.2, 0.8, 1.6] == sorted(results)
        assert results[0.2] < results[0.8] < results[1.6] < 1.6 + LATE

    def test_the_guard_is_per_thread(self) -> None:
        """Inside a guard, another thread's sockets are not registered with it."""
        guard = Guard(time.monotonic() + 5)
        seen: list[Guard | None] = []
        with guard:
            t = threading.Thread(
                target=lambda: seen.append(getattr(_watchdog._current, "guard", None))
            )
            t.start()
            t.join()
            assert guard is _watchdog._current.guard
        assert [None] == seen
        assert getattr(_watchdog._current, "guard", None) is None


class TestWatchdogThread:
    def test_one_thread_for_every_guard(self, pair: tuple[socket.socket, ...]) -> None:
        """However many guards, one watchdog thread runs, started at most once."""
        for _ in range(20):
            with Guard(time.monotonic() + 0.01):
                pass
        names = [t.name for t in threading.enumerate()]
        assert 1 == names.count("migas-logging-watchdog")

    def test_a_far_deadline_does_not_stop_the_thread(
        self, pair: tuple[socket.socket, ...]
    ) -> None:
        """A deadline 1e15 s away (a huge timeout) is waited for in slices, not at once."""
        assert _watchdog.start()
        thread = _watchdog._WATCHDOG._thread
        with Guard(time.monotonic() + 1e15):
            time.sleep(0.2)  # the watchdog computes its wait
        assert thread is not None
        assert thread.is_alive()  # an overflowing wait would have killed it
        a, _ = pair
        guard = Guard(time.monotonic() + 0.3)
        data, elapsed = blocked_read(a, guard)
        assert (b"", True) == (data, guard.expired)
        assert elapsed < 0.3 + LATE

    def test_a_signal_handler_request_inside_arm_does_not_deadlock(self) -> None:
        """A request made by a signal handler while the main thread arms a guard."""
        code = textwrap.dedent(
            """
            import time
            from migas_logging import _watchdog
            with _watchdog._WATCHDOG._cond:  # where the main thread may be at the signal
                with _watchdog.Guard(time.monotonic() + 5) as armed:
                    print(armed)
            """
        )
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
        assert "True" == run.stdout.strip(), run.stderr

    def test_without_a_thread_a_guard_still_works(
        self, monkeypatch: pytest.MonkeyPatch, pair: tuple[socket.socket, ...]
    ) -> None:
        """No thread can start (interpreter shutdown): the guard says so and does no harm."""
        dog = _watchdog._Watchdog()

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        monkeypatch.setattr(_watchdog, "_WATCHDOG", dog)
        monkeypatch.setattr(threading.Thread, "start", refuse)
        a, b = pair
        guard = Guard(time.monotonic() + 0.1)
        with guard as armed:
            guard.watch(a)
            b.sendall(b"x")
            assert b"x" == a.recv(1)
        assert not armed
        assert not _watchdog.start()

    def test_a_forked_child_gets_its_own_watchdog(self) -> None:
        """In a forked child the deadline still holds (the parent's thread is not there)."""
        with Guard(time.monotonic() + 0.01):
            pass  # the parent's watchdog runs
        a, b = socket.socketpair()
        a.settimeout(30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                data, elapsed = blocked_read(a, Guard(time.monotonic() + 0.3))
                code = 0 if data == b"" and elapsed < 0.3 + LATE else 2
            finally:
                os._exit(code)
        start = time.monotonic()
        while time.monotonic() - start < 30:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child's read was not ended by its deadline")
        a.close()
        b.close()
        assert 0 == os.waitstatus_to_exitcode(status)


class TestAdapter:
    """The one place that reaches into urllib3's pool classes; fails loudly if it moves."""

    @pytest.mark.parametrize("url", ["http://127.0.0.1:1", "https://127.0.0.1:1"])
    def test_pools_make_watched_connections(self, url: str) -> None:
        """urllib3 still takes its connection class from the pool manager's pool classes."""
        adapter = WatchedAdapter()
        pool = adapter.poolmanager.connection_from_url(url)
        assert pool.ConnectionCls in (
            _watchdog._WatchedHTTPConnection,
            _watchdog._WatchedHTTPSConnection,
        )

    def test_a_request_registers_its_socket(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A real request through a Transport registers its socket with its guard."""
        guards: list[Guard] = []

        class Recording(Guard):
            __slots__ = ()

            def __init__(self, deadline: float) -> None:
                super().__init__(deadline)
                guards.append(self)

        monkeypatch.setattr(_watchdog, "Guard", Recording)
        with LocalCollector() as collector:
            transport = Transport(collector.url, 5)
            transport.graphql("query { __typename }")
            transport.graphql("query { __typename }")  # on the kept-alive connection
        assert [1, 1] == [g.watched for g in guards]

    def test_a_given_session_gets_watched_adapters(self) -> None:
        """A session handed over with stock adapters has them replaced; its own are kept."""
        session = requests.Session()

        class Mine(requests.adapters.HTTPAdapter):
            pass

        mine = Mine()
        session.mount("https://", mine)
        Transport("http://127.0.0.1:1", 1, session=session)
        assert isinstance(session.get_adapter("http://x"), WatchedAdapter)
        assert session.get_adapter("https://x") is mine
