"""A wall-clock bound on an HTTP request made with ``requests``.

``requests`` and ``urllib3`` time each socket operation, not a request: a server that
sends one byte every 0.3 s never trips a 1 s read timeout, and can hold a request for
as long as it likes. Here a request runs inside a :class:`Guard` that carries its
deadline (a ``time.monotonic()`` value). The connections of a :class:`WatchedAdapter`
register each socket they use with the guard of the request running on their thread,
and one daemon thread per process, the watchdog, shuts those sockets down when the
deadline passes: the blocked read wakes at once with end-of-file, the request fails,
and the guard says it expired.

An aborted connection is closed by ``urllib3`` like any broken one; the next request
opens a fresh one, so the keep-alive pool stays usable. A guard that ends in time
forgets its sockets, so a connection that goes back to the pool is never touched.

The watchdog starts with :func:`start` (a transport calls it when it is made) or with
the first guard of a process, and again in a forked child. If it cannot start (Python
3.12 refuses new threads once the interpreter is shutting down), :meth:`Guard.__enter__`
returns False and the request keeps only its per-operation timeouts: each wait is
bounded, the whole is not.

Not covered by the watchdog: name resolution (the system resolver's own limits) and the
TCP connect and TLS handshake of a new connection, which end before its socket can be
registered; the caller bounds them per attempt with a connect timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["Guard", "WatchedAdapter", "start"]


def _shut(sock: socket.socket) -> None:
    """Shut a socket down for both directions, which wakes a thread blocked on it.

    ``socket.socket.shutdown`` is called directly so that a TLS socket's own
    ``shutdown`` (which also drops its TLS state) does not run under another thread.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass  # already closed or never connected


class Guard:
    """The deadline of one request and the sockets it uses.

    Use it as a context manager around the whole request, reading of the answer
    included, on the thread that makes the request.

    Args:
        deadline: a ``time.monotonic()`` value.
    """

    __slots__ = ("_done", "_lock", "_previous", "_sockets", "deadline", "expired", "watched")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        """True once the deadline passed while the request still ran."""
        self.watched = 0
        """How many sockets were registered: 0 means no connection came up."""
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = False
        self._previous: Guard | None = None

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has passed)."""
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            if any(s is sock for s in self._sockets):
                return
            self.watched += 1
            if self.expired:
                _shut(sock)
            else:
                self._sockets.append(sock)

    def expire(self) -> None:
        """The deadline passed: shut down every socket of the request."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)
            self._sockets.clear()

    def __enter__(self) -> bool:
        """Arm the guard; return False when no watchdog can run (per-read bounds only)."""
        self._previous = getattr(_current, "guard", None)
        _current.guard = self
        return _WATCHDOG.arm(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._done = True
            self._sockets.clear()
        _current.guard = self._previous
        _WATCHDOG.disarm(self)


_current = threading.local()


def _watch(sock: socket.socket | None) -> None:
    guard: Guard | None = getattr(_current, "guard", None)
    if guard is not None:
        guard.watch(sock)


#: The longest single wait of the watchdog, in seconds.
_IDLE = 3600.0


class _Watchdog:
    """One daemon thread that expires guards at their deadlines.

    Its lock is reentrant, and the list of guards is replaced rather than edited in
    place, so that a signal handler that makes a request while the main thread is in
    :meth:`arm` or :meth:`disarm` neither deadlocks nor removes the wrong guard (at
    worst its own guard goes unwatched).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._guards: list[Guard] = []
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        with self._cond:
            return self._start()

    def _start(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(
            target=self._run, args=(self._cond,), name="migas-logging-watchdog", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return False
        self._thread = thread
        return True

    def arm(self, guard: Guard) -> bool:
        with self._cond:
            if not self._start():
                return False
            self._guards = [*self._guards, guard]
            self._cond.notify()
        return True

    def disarm(self, guard: Guard) -> None:
        with self._cond:
            self._guards = [g for g in self._guards if g is not guard]

    def _run(self, cond: threading.Condition) -> None:
        with cond:
            while True:
                now = time.monotonic()
                due = [g for g in self._guards if g.deadline <= now]
                if due:
                    self._guards = [g for g in self._guards if g.deadline > now]
                    for guard in due:
                        with contextlib.suppress(Exception):  # never end the thread
                            guard.expire()
                wait = min((g.deadline for g in self._guards), default=now + _IDLE) - now
                cond.wait(min(wait, _IDLE))  # a far deadline must not overflow the wait


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._reset)


def start() -> bool:
    """Start the watchdog thread now, if it is not running; False if it cannot start."""
    return _WATCHDOG.start()


# --- connections that register their sockets ---------------------------------------


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection: connect() is not called again
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


#: urllib3's public way to choose a pool's connection class: ``ConnectionCls`` on the
#: pool class, and a pool manager's ``pool_classes_by_scheme``.
_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}


class WatchedAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections register their sockets with the guard.

    Direct connections and HTTP(S) proxies are watched; a SOCKS proxy keeps its own
    connection classes (per-operation timeouts only).
    """

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if fresh and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
