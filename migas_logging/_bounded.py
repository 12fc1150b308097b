"""File work on a helper thread that the caller waits for only so long.

A hung file system (an NFS server that went away) can make any file operation block
forever. Code that must keep a bound (the exit's deadline, the machine budget's short
waits) runs such work through :class:`BoundedCalls`: on a daemon thread, waited for at
most ``timeout``. With ``exclusive``, one call at a time: while an earlier call has not
come back, later ones are refused at once (:class:`Busy`) instead of piling up stuck
threads. Without it, each call has its own thread and a slow one (a loaded machine, not
a hung disk) still finishes its work after the caller stopped waiting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BoundedCalls", "Busy"]

_T = TypeVar("_T")


class Busy(Exception):
    """The work did not come back in time, or an earlier call still has not."""


class BoundedCalls:
    """Runs work on short-lived helper threads, one at a time (see the module docstring).

    Args:
        name: The helper threads' name.
        exclusive: Refuse a call while an earlier one has not come back.
    """

    def __init__(self, name: str, *, exclusive: bool = True) -> None:
        self._name = name
        self._exclusive = exclusive
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: threading.Thread | None = None  # a call that has not come back

    def run(
        self,
        work: Callable[[], _T],
        timeout: float,
        *,
        late: Callable[[_T], object] | None = None,
    ) -> _T:
        """``work()``'s value, waited for at most ``timeout`` seconds.

        Raises:
            Busy: it did not end in time (then ``late(value)`` runs on the helper thread
                when it does), or (``exclusive``) an earlier call has not come back yet.
            Exception: whatever ``work`` raised.
        """
        if self._pid != os.getpid():  # a forked child: no helper thread, a fresh lock
            self._pid, self._lock, self._pending = os.getpid(), threading.Lock(), None
        with self._lock:
            pending = self._pending
            if pending is not None and pending.is_alive():
                raise Busy
            self._pending = None
        box: list[tuple[bool, object]] = []
        box_lock = threading.Lock()
        given_up = threading.Event()

        def run() -> None:
            try:
                outcome: tuple[bool, object] = (True, work())
            except BaseException as exc:  # handed to the caller below
                outcome = (False, exc)
            with box_lock:
                box.append(outcome)
                too_late = given_up.is_set()
            if too_late and outcome[0] and late is not None:
                late(outcome[1])  # type: ignore[arg-type]

        thread = threading.Thread(target=run, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is finalizing: no new threads
            return work()
        thread.join(max(0.0, timeout))
        with box_lock:
            if not box:  # (an answer that came meanwhile is still used)
                given_up.set()
        if not box:
            if self._exclusive:
                with self._lock:
                    self._pending = thread
            raise Busy
        ok, value = box[0]
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]
