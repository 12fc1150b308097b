"""The process glue: exit, fork and multiprocessing hooks of the process-wide client.

- ``atexit``: the client's final flush and stop, within the process's one exit deadline
  (:func:`exit_deadline`), shared with the crash hooks' terminal breadcrumbs.
- ``os.register_at_fork``: before a fork, wait (briefly) until the worker has finished
  importing what it needs, so the child never inherits a half-imported module; in the
  child, fresh locks, queue and counts.
- multiprocessing: workers started by ``fork`` and ``forkserver`` end with
  ``os._exit()``, which skips ``atexit``; a multiprocessing finalizer flushes them instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from migas_logging.client import Client

__all__ = [
    "RunFlag",
    "exit_deadline",
    "exit_status",
    "register",
    "signals_deferred",
    "watch_exit",
]

# One deadline for the whole exit, whatever the number of hooks and projects: the first
# exit path that runs fixes it, every later one shares it.
_exit_deadline: tuple[int, float] | None = None
_registered = False
_mp_client: Client | None = None


def exit_deadline(seconds: float) -> float:
    """The process's exit deadline (``time.monotonic()``), fixed by its first caller."""
    global _exit_deadline  # noqa: PLW0603 - one exit per process
    pid = os.getpid()
    if _exit_deadline is None or _exit_deadline[0] != pid:
        _exit_deadline = (pid, time.monotonic() + seconds)
    return _exit_deadline[1]


def forget_exit_deadline() -> None:
    """For tests that exit many times in one process."""
    global _exit_deadline  # noqa: PLW0603
    _exit_deadline = None


_original_exit = sys.exit
_exit_seen: list[object] = []  # [status, the exception being handled] of sys.exit


def _exit(status: object = None, /) -> NoReturn:
    """``sys.exit`` that remembers the status (and the exception it replaced)."""
    if threading.current_thread() is threading.main_thread():
        _exit_seen[:] = [status, sys.exc_info()[1]]
    _original_exit(status)  # type: ignore[arg-type]  # any object, as sys.exit takes


def watch_exit() -> None:
    """Know the status of ``sys.exit(status)`` at exit (tracked runs; idempotent).

    Python tells ``atexit`` nothing about how the process ends. A run that ends with
    ``sys.exit(1)`` (fMRIPrep does, from a ``finally``) must not be reported as
    completed, so ``sys.exit`` is wrapped: it records the status and the exception being
    handled (the one a ``SystemExit`` in a ``finally`` replaces), then exits as before.
    ``raise SystemExit(n)`` and ``exit()`` of the interactive shell are not seen; a
    ``SystemExit`` that the application catches and survives is forgotten only by a
    later ``sys.exit``.
    """
    if sys.exit is not _exit:
        sys.exit = _exit


def unwatch_exit() -> None:
    """Give ``sys.exit`` back, where ours is still in place."""
    if sys.exit is _exit:
        sys.exit = _original_exit
    _exit_seen.clear()


def exit_status() -> tuple[object, BaseException | None] | None:
    """``(status, replaced exception)`` of the last ``sys.exit`` on the main thread."""
    if not _exit_seen:
        return None
    status, replaced = _exit_seen
    return status, replaced if isinstance(replaced, BaseException) else None


def describe_exit(status: object) -> tuple[str, str]:
    """The terminal status and ``status_desc`` for ``sys.exit(status)``.

    0 and None complete; any other code fails, named when it is an ``os.EX_*`` code;
    a message (``sys.exit("bad input")``) fails with the message.
    """
    if status is None or (isinstance(status, int) and not isinstance(status, bool) and not status):
        return "C", "Completed"
    if isinstance(status, int) and not isinstance(status, bool):
        names = {
            getattr(os, name): name
            for name in dir(os)
            if name.startswith("EX_") and name != "EX_OK" and isinstance(getattr(os, name), int)
        }
        name = names.get(status)
        return "F", f"Exited with code {status}" + (f" ({name})" if name else "")
    if isinstance(status, bool):
        return ("F", "Exited with code 1") if status else ("C", "Completed")
    try:
        text = str(status)
    except Exception:
        text = type(status).__name__
    return "F", f"Exited: {text[:400]}"


class RunFlag:
    """One byte shared with forked children: set when the run that made it ended.

    A child forked by the run (``os.fork``, multiprocessing's ``fork``) that is still
    logging when the parent ends its run, by a crash say, must not deliver anything after
    the parent's terminal breadcrumb: the dashboard reads each session's latest one.
    The child checks the flag before each try and drops what is left (``shutdown``).
    A child's request already in flight when the parent ends can still land after it.
    """

    def __init__(self) -> None:
        import mmap

        self._owner = os.getpid()
        self._map: mmap.mmap | None
        try:
            self._map = mmap.mmap(-1, 1)  # anonymous and shared: children see our writes
        except (OSError, ValueError):
            self._map = None

    def end(self) -> None:
        """The run of this process ends now."""
        if self._map is not None and os.getpid() == self._owner:
            with contextlib.suppress(Exception):
                self._map[0] = 1

    def ended_elsewhere(self) -> bool:
        """True in a forked child once the parent's run has ended."""
        try:
            return self._map is not None and os.getpid() != self._owner and self._map[0] == 1
        except Exception:
            return False


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back while the exit sends its last breadcrumbs.

    A second Ctrl-C (or a SIGTERM) during the exit must not interrupt the bounded wait
    for the terminal breadcrumb: the signal is recorded and the caller acts on it after
    (see :func:`die_by_signal`). Only on the main thread, where handlers can be set.
    """
    got: list[int] = []
    saved: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError, TypeError):
                saved[signum] = signal.signal(signum, lambda s, _f: got.append(s))
    try:
        yield got
    finally:
        for number, previous in saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(number, previous)  # type: ignore[arg-type]


def die_by_signal(signum: int) -> None:
    """Flush logging and the standard streams, then die by ``signum`` by default."""
    import logging

    with contextlib.suppress(Exception):
        logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(Exception):
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def register(client: Client) -> None:
    """Install the hooks once per process (idempotent)."""
    global _registered  # noqa: PLW0603
    if not _registered:
        _registered = True
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    _register_mp_finalizer(client)


_die_at_end: list[int] = []


def die_at_end(signum: int) -> None:
    """Die by ``signum`` once the exit has sent what it can.

    An unhandled KeyboardInterrupt must end the process by SIGINT (a parent sees -2, a
    shell 130), as CPython does; but CPython forgets it when any thread runs ``exec`` on
    source text (an import that builds a dataclass, say) between the interrupt and the
    exit, which the worker's first imports may do. So the exit re-raises it itself.
    """
    _die_at_end[:] = [signum]


def _at_exit() -> None:
    from migas_logging.client import current_client

    client = current_client()
    if client is not None and client.worker._pid == os.getpid():
        with signals_deferred() as got, contextlib.suppress(Exception):
            deadline = exit_deadline(client.flush_deadline)
            client.stop(max(0.0, deadline - time.monotonic()))
        if got:
            die_by_signal(got[0])
    if _die_at_end:
        die_by_signal(_die_at_end[0])


def _before_fork() -> None:
    from migas_logging.client import current_client

    client = current_client()
    if client is not None and client.worker.alive():
        with contextlib.suppress(Exception):
            client.sender.prepared.wait(2.0)
    if client is not None:
        _register_mp_finalizer(client)


def _after_fork_in_child() -> None:
    from migas_logging import client as _client

    _client._after_fork_in_child()


def _register_mp_finalizer(client: Client) -> None:
    """Arrange that multiprocessing's ``os._exit`` children flush before they exit.

    A finalizer registered in the parent is copied into forked children; the child's
    bootstrap clears them, so the after-fork hook of multiprocessing registers it again
    in the child (``fork``, and ``forkserver``, whose children import the main module
    before their bootstrap).
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    global _mp_client  # noqa: PLW0603
    if client is _mp_client:
        return
    _mp_client = client
    with contextlib.suppress(Exception):
        mp_util.register_after_fork(client, _child_finalizer)


def _child_finalizer(client: Client) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        with contextlib.suppress(Exception):
            mp_util.Finalize(None, _at_exit, exitpriority=0)
