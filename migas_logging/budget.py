"""One rate budget for all the processes of one user on one machine.

A migas server counts requests per client address in a sliding window (for example
1,000 per 60 s); every process behind that address shares it. :class:`MachineBudget`
keeps the budget in a small file that every process updates under ``fcntl.flock``.

The budget is a bucket of ``count`` tokens in which **a token spent at time t comes back
at t + period**. The file holds the times of the last ``count`` grants, oldest first in a
ring: a request is granted when the oldest of them is at least ``period`` old. So no
window of ``period`` seconds ever holds more than ``count`` grants, which is exactly what
the server's sliding window asks. (A classic bucket refilled at ``count / period`` per
second would let up to twice ``count`` through in one window: a full bucket spent at
once, then its refill.)

The budget never blocks its caller for long and never raises:

* the lock is tried without blocking, for at most ``lock_wait`` (50 ms) in all; the file
  work runs on a short-lived helper thread that is waited for as long, so a hung file
  system cannot hold the caller either;
* when the lock is busy or the helper slow, :meth:`MachineBudget.take` says no (try
  again shortly); if that lasts ``stuck_after`` seconds (a process holding the lock is
  stopped, the file system hangs), or the file cannot be used at all (no locks on this
  file system, read-only, not this user's), the process falls back to a budget of its
  own, as if it were alone on the machine, and tries the file again later.

:func:`start_jitter` spreads the ``Started`` breadcrumbs of processes that start
together over a few seconds.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from migas_logging._bounded import BoundedCalls, Busy
from migas_logging._files import NOFOLLOW, private_dir_problem
from migas_logging.exceptions import ConfigurationError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every process keeps its own budget
    fcntl = None  # type: ignore[assignment]

__all__ = ["MachineBudget", "start_jitter"]

_T = TypeVar("_T")

_MAGIC: Final = b"MIGASRB1"
_HEADER: Final = struct.Struct("<8sII")  # magic, slots, head
_SLOT: Final = struct.Struct("<d")
_MAX_COUNT: Final = 100_000
#: After the file failed, how long the process keeps its own budget before trying again.
_RETRY_FILE_AFTER: Final = 30.0


#: Seconds a grant stays spent beyond the server's window: the server counts a request
#: when it arrives, a little after the grant (a replay that used the whole budget at
#: once got one 429 when the window came round).
ARRIVAL_MARGIN = 1.0


def for_server_window(path: Path | str, count: int, period: float) -> MachineBudget:
    """The machine's budget for a server that takes ``count`` requests per ``period``
    seconds per address (each grant spent for ``period`` + :data:`ARRIVAL_MARGIN`)."""
    return MachineBudget(path, count, period + ARRIVAL_MARGIN)


def start_jitter(seed: str, spread: float) -> float:
    """A delay in ``[0, spread)`` that depends only on ``seed``.

    Give each process's session id: processes that start together then send their
    ``Started`` breadcrumbs spread over ``spread`` seconds instead of in one second, and
    a process always gets the same delay. Never raises (0.0 for a bad ``spread``).

    Args:
        seed: Any text (the session id).
        spread: The width of the interval, in seconds.

    .. versionadded:: 0.2.0
    """
    try:
        if not (isinstance(spread, (int, float)) and math.isfinite(spread) and spread > 0):
            return 0.0
        digest = hashlib.sha256(str(seed).encode("utf-8", "surrogatepass")).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2.0**64  # in [0, 1)
        return min(fraction * float(spread), math.nextafter(float(spread), 0.0))
    except Exception:
        return 0.0


def _when(now: object) -> float | None:
    """``now`` as seconds, or None (read the clock when deciding) if absent or unusable."""
    if now is not None:
        with contextlib.suppress(TypeError, ValueError):
            value = float(now)  # type: ignore[arg-type]
            if math.isfinite(value) and value >= 0:
                return value
    return None


class _Window:
    """The times of the last ``len(slots)`` grants, oldest at ``head``: pure logic."""

    __slots__ = ("head", "slots")

    def __init__(self, slots: list[float], head: int = 0) -> None:
        self.slots = slots
        self.head = head

    def next_token(self, now: float, period: float) -> float:
        """When the oldest grant's token comes back (a time in the future is ``now``)."""
        return min(self.slots[self.head], now) + period

    def clamp(self, now: float) -> bool:
        """Bring grants stamped after ``now`` (the clock went back) to ``now``; True if any."""
        changed = False
        for index, stamp in enumerate(self.slots):
            if stamp > now:
                self.slots[index] = now
                changed = True
        return changed

    def take(self, now: float, period: float) -> bool:
        if self.next_token(now, period) > now:
            return False
        self.slots[self.head] = now
        self.head = (self.head + 1) % len(self.slots)
        return True

    # -- the file's bytes -----------------------------------------------------------

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(_MAGIC, len(self.slots), self.head)
        return header + struct.pack(f"<{len(self.slots)}d", *self.slots)

    @classmethod
    def from_bytes(cls, data: bytes, count: int) -> tuple[_Window, bool]:
        """The window a file holds, fitted to ``count`` slots; True if it must be rewritten.

        An empty, foreign or damaged file gives a full budget. Grants of a file made
        for another ``count`` are kept, the most recent first.
        """
        times: list[float] = []
        if len(data) >= _HEADER.size:
            magic, slots, head = _HEADER.unpack_from(data)
            if magic == _MAGIC and len(data) == _HEADER.size + slots * _SLOT.size and head < slots:
                stored = list(struct.unpack_from(f"<{slots}d", data, _HEADER.size))
                if slots == count and all(math.isfinite(t) and t >= 0 for t in stored):
                    return cls(stored, head), False
                times = stored[head:] + stored[:head]  # oldest first
        clean = [t if math.isfinite(t) and t >= 0 else 0.0 for t in times][-count:]
        return cls([0.0] * (count - len(clean)) + clean, 0), True


class MachineBudget:
    """A budget of ``count`` requests per ``period`` seconds shared through a file.

    Every process that opens the same ``path`` draws on the same budget. The file
    (mode 0600) and its directory (made 0700 if missing) must be this user's.

    Args:
        path: The budget file (beside the spool, for example).
        count: Requests allowed per window (the server's, for example 1,000).
        period: The window, in seconds (for example 60).
        lock_wait: The longest the caller waits for the lock or the file, in seconds.
        stuck_after: How long the lock may stay busy before this process falls back to
            a budget of its own, in seconds.

    Raises:
        ConfigurationError: ``count`` is not a whole number from 1 to 100,000, or a
            duration is not a positive number.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        path: Path | str,
        count: int,
        period: float,
        *,
        lock_wait: float = 0.05,
        stuck_after: float = 2.0,
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_COUNT:
            raise ConfigurationError(
                f"MachineBudget count={count!r}: give a whole number from 1 to {_MAX_COUNT}"
            )
        for name, value in (("period", period), ("lock_wait", lock_wait)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"MachineBudget {name}={value!r}: give seconds above 0")
        if not isinstance(stuck_after, (int, float)) or not stuck_after >= 0:
            raise ConfigurationError(f"MachineBudget stuck_after={stuck_after!r}: give seconds")
        self.path = Path(path)
        self.count = count
        self.period = float(period)
        self.lock_wait = float(lock_wait)
        self.stuck_after = float(stuck_after)
        self._local = _Window([0.0] * count)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._dir_ok = False
        self._busy_since: float | None = None
        self._file_failed_at: float | None = None
        self._calls = BoundedCalls("migas-budget")  # one helper at a time (a hung disk?)
        #: Why the file is not used now (the process keeps its own budget), or None.
        self.problem: str | None = None
        #: Decisions made with this process's own budget because the file failed.
        self.local_decisions = 0
        #: The time of the last grant (seconds since the epoch), or None.
        self.last_grant: float | None = None

    def __repr__(self) -> str:
        return f"MachineBudget({str(self.path)!r}, count={self.count}, period={self.period:g})"

    # -- the API ------------------------------------------------------------------------

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one.

        Args:
            now: Seconds since the epoch. Default: the clock, read while the file is
                locked, so that grants are stamped in the order they are made (a time
                read before waiting for the lock may be older than a grant made
                meanwhile). Every process must use the same clock.

        Returns:
            True: send now (:attr:`last_grant` is its time). False: wait (see
            :meth:`wait_time`). Never raises, and returns within about twice
            ``lock_wait``.
        """
        try:
            when = _when(now)
            granted, stamp = self._decide(
                lambda fd: self._take_in(fd, when),
                lambda: self._local_take(when),
                busy=(False, 0.0),
            )
        except Exception:
            return True  # a bug here must not silence the application's telemetry
        if granted:
            self.last_grant = stamp
        return granted

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until :meth:`take` may succeed (0.0: now).

        While the lock is busy this is ``lock_wait``. Never raises.
        """
        try:
            when = _when(now)
            return self._decide(
                lambda fd: self._wait_in(fd, when),
                lambda: self._local_wait(when),
                busy=self.lock_wait,
            )
        except Exception:
            return 0.0

    # -- choosing between the file and this process's own budget -----------------------

    def _decide(self, shared: Callable[[int], _T], local: Callable[[], _T], *, busy: _T) -> _T:
        """``shared(fd)`` on the locked file; ``busy`` while the lock is briefly busy;
        ``local()`` (this process's own budget) when the file cannot be used."""
        self._after_fork()
        clock = time.monotonic()
        with self._lock:
            failed_at = self._file_failed_at
        if failed_at is None or clock - failed_at > _RETRY_FILE_AFTER:
            try:
                result = self._bounded(lambda cancelled: self._with_file(shared, cancelled))
            except Busy:
                with self._lock:
                    since = self._busy_since = self._busy_since or clock
                if clock - since <= self.stuck_after:
                    return busy
                self._failed(
                    f"the budget file {self.path} has been busy for {clock - since:.1f} s"
                )
            except OSError as exc:
                self._failed(f"cannot use the budget file {self.path}: {exc.strerror or exc}")
            else:
                with self._lock:
                    self._busy_since = None
                    self._file_failed_at = None
                    self.problem = None
                return result
        with self._lock:
            self.local_decisions += 1
            return local()

    def _local_take(self, now: float | None) -> tuple[bool, float]:
        stamp = time.time() if now is None else now
        self._local.clamp(stamp)
        return self._local.take(stamp, self.period), stamp

    def _local_wait(self, now: float | None) -> float:
        stamp = time.time() if now is None else now
        self._local.clamp(stamp)
        return max(0.0, self._local.next_token(stamp, self.period) - stamp)

    def _failed(self, problem: str) -> None:
        with self._lock:
            self.problem = problem
            self._file_failed_at = time.monotonic()
            self._busy_since = None

    def _after_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:  # a forked child: no helper thread, and a fresh lock
            self._pid = pid
            self._lock = threading.Lock()
            self._busy_since = None

    def _bounded(self, work: Callable[[threading.Event], _T]) -> _T:
        """Run ``work(cancelled)`` on a helper thread, waiting about ``lock_wait`` for it.

        When the wait ends first, ``cancelled`` is set: work that has not begun its change
        of the file by then gives up, so a late answer rarely wastes a token.
        """
        cancelled = threading.Event()
        try:
            return self._calls.run(lambda: work(cancelled), self.lock_wait * 2)
        except Busy:
            cancelled.set()
            raise

    # -- the file -----------------------------------------------------------------------

    def _with_file(self, work: Callable[[int], _T], cancelled: threading.Event) -> _T:
        """Open the file, lock it (bounded), run ``work(fd)``, unlock and close.

        Raises ``Busy`` without running ``work`` if ``cancelled`` is set once locked.
        """
        if fcntl is None:  # pragma: no cover - not POSIX
            raise OSError("file locks are not available on this system")
        if not self._dir_ok:
            problem = private_dir_problem(self.path.parent, create=True)
            if problem is not None:
                raise OSError(f"{self.path.parent} {problem}")
            self._dir_ok = True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o600)
        try:
            geteuid = getattr(os, "geteuid", None)
            if geteuid is not None and os.fstat(fd).st_uid != geteuid():
                raise OSError("the budget file belongs to another user")
            self._lock_file(fd)
            try:
                if cancelled.is_set():
                    raise Busy  # the caller stopped waiting: change nothing
                return work(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _lock_file(self, fd: int) -> None:
        """Take the exclusive lock, trying without blocking for ``lock_wait`` in all."""
        assert fcntl is not None
        deadline = time.monotonic() + self.lock_wait
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy from None
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    def _read(self, fd: int) -> tuple[_Window, bool]:
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, _HEADER.size + _MAX_COUNT * _SLOT.size), 0)
        return _Window.from_bytes(data, self.count)

    def _write(self, fd: int, window: _Window) -> None:
        data = window.to_bytes()
        os.pwrite(fd, data, 0)  # one write: a process that dies leaves old or new state
        if os.fstat(fd).st_size != len(data):
            os.ftruncate(fd, len(data))

    def _take_in(self, fd: int, now: float | None) -> tuple[bool, float]:
        window, rewrite = self._read(fd)
        stamp = time.time() if now is None else now  # read under the lock
        rewrite = window.clamp(stamp) or rewrite
        granted = window.take(stamp, self.period)
        if granted or rewrite:
            self._write(fd, window)
        return granted, stamp

    def _wait_in(self, fd: int, now: float | None) -> float:
        window, rewrite = self._read(fd)
        stamp = time.time() if now is None else now
        if window.clamp(stamp) or rewrite:
            self._write(fd, window)
        return max(0.0, window.next_token(stamp, self.period) - stamp)
