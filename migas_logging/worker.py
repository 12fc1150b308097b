"""The process-wide delivery pipeline: fold, cap, queue, send in the background.

One :class:`Pipeline` per process carries the breadcrumbs of every
:class:`~migas_logging.MigasHandler` (and of the structlog processor) to the server.
Sharing one pipeline means one keep-alive connection, one session id, one rate cap and one
place that folds repeats, whatever the number of handlers.

The application's thread does little: :meth:`Pipeline.submit` takes a lock that is never
held across I/O, folds a repeat or takes a token from the rate cap, and puts a small
event on a bounded queue. It never waits on the network and never raises. Everything
else (building the breadcrumb, redaction, fitting, HTTP) happens on one daemon thread,
started on first use.

What happens to each record is counted in a :class:`Stats` (per handler, and in total):
every record that reaches a handler's ``emit()`` ends as exactly one of ``sent``,
``folded`` or ``dropped[reason]``:

| reason | when |
| --- | --- |
| ``queue_full`` | the bounded queue was full (the newest record is dropped) |
| ``rate_cap`` | over the per-process rate cap |
| ``server_refused`` | the server refused the breadcrumb for good (400, 413, 422) |
| ``rate_limited`` | the server's 429 window outlasted the flush deadline at exit |
| ``failed`` | 5xx, timeouts or broken answers, after the bounded retries |
| ``unreachable`` | no connection (the server is down) when the deadline came |
| ``shutdown`` | still queued when the exit (or ``stop``) deadline passed |
| ``optout`` | ``MIGAS_OPTOUT`` is set |
| ``closed`` | the handler was already closed |
| ``duplicate`` | the structlog processor (or the crash hook) already sent this event |
| ``reentrant`` | logged by a signal handler that interrupted this package's own lock |
| ``error`` | an internal error in this package (reported once on its own logger) |

Server answers drive the pacing: a ``429`` pauses all sending for the server's window
(60 s, or ``Retry-After``) without retrying in between, since rejected requests count
against the window; ``5xx`` and timeouts get bounded retries with exponential backoff and
jitter; repeated connection failures open a circuit breaker that stops trying for a
while (30 s, doubling to 5 minutes) instead of paying a timeout per breadcrumb.

Exit: an ``atexit`` hook flushes within the flush deadline (2 s by default), whatever
the server does. ``flush()`` never waits past its deadline, and does not wait at all
when called while ``logging``'s module lock is held by the calling thread (that is what
``dictConfig`` does when it closes the old handlers): the worker may need that lock to
log, so waiting there could only end at the deadline.

Fork: the child of ``os.fork()`` gets a fresh queue, fresh locks and, on its first
record, its own worker thread and connection. What the parent had queued is the
parent's to send.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import random
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migas_logging import config

if TYPE_CHECKING:
    from migas_logging._audit import AuditTrail
    from migas_logging.breadcrumb import Breadcrumb, Context
    from migas_logging.transport import Outcome, Transport

__all__ = ["DROP_REASONS", "Pipeline", "RateCap", "Stats", "get_pipeline", "reset"]

DROP_REASONS = (
    "queue_full",
    "rate_cap",
    "server_refused",
    "rate_limited",
    "failed",
    "unreachable",
    "shutdown",
    "optout",
    "closed",
    "duplicate",
    "reentrant",
    "error",
)

_log = logging.getLogger("migas_logging.worker")

#: The most fold windows kept open at once (distinct records within a window).
_MAX_FOLDS = 1024

#: Drops that leave no audit line: nothing was going to be sent anyway.
_UNAUDITED = frozenset({"optout", "duplicate", "reentrant"})


def _count(counter: dict[str, int], reason: str) -> None:
    """``counter[reason] += 1``, for the worker thread. (On the application's thread,
    ``submit`` and ``account`` write the same thing inline: a record logged at the
    recursion limit must be counted exactly once, and there even this call can fail.)"""
    counter[reason] = counter.get(reason, 0) + 1


class Stats:
    """What became of the records one handler (or the whole process) was given.

    Every record that reaches ``emit()`` is counted in ``emitted`` and ends in exactly one
    of ``sent``, ``folded`` or ``dropped[reason]`` (see the module docstring). While a
    record waits in the queue or is being sent it is ``pending``; after a flush,
    ``emitted == sent + folded + sum(dropped.values()) + pending``.

    ``summaries`` counts the extra breadcrumbs that carried folded repeats' counts.
    The counters change under the pipeline's lock; a snapshot taken while records flow
    may be a moment old, one taken after :meth:`Pipeline.flush` is exact.
    """

    __slots__ = ("__weakref__", "dropped", "emitted", "folded", "sent", "summaries")

    def __init__(self) -> None:
        self.emitted = 0
        self.sent = 0
        self.folded = 0
        self.summaries = 0
        self.dropped: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Records accepted and not yet sent, folded or dropped."""
        return self.emitted - self.sent - self.folded - sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        """A snapshot: ``emitted``, ``sent``, ``folded``, ``dropped`` (by reason), ``pending``."""
        dropped = {k: v for k, v in self.dropped.copy().items() if v}
        return {
            "emitted": self.emitted,
            "sent": self.sent,
            "folded": self.folded,
            "summaries": self.summaries,
            "dropped": dropped,
            "pending": self.emitted - self.sent - self.folded - sum(dropped.values()),
        }

    def _reset(self) -> None:
        self.emitted = self.sent = self.folded = self.summaries = 0
        self.dropped = Counter()

    def __repr__(self) -> str:
        return f"Stats({self.as_dict()})"


class RateCap:
    """A token bucket: at most ``count`` breadcrumbs per ``period`` seconds, in bursts.

    Args:
        count: breadcrumbs per period (also the burst size).
        period: the period, seconds.

    Accepts ``"30/60"``, ``"30/min"``, ``(30, 60)``, ``[30, 60]`` and ``None`` (no cap)
    through :meth:`parse`, so that ``dictConfig`` and ini files can give it as plain text.
    """

    __slots__ = ("_last", "_tokens", "count", "period")

    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.period = period
        self._tokens = float(count)
        self._last = time.monotonic()

    @classmethod
    def parse(cls, value: object) -> RateCap | None:
        """Build a cap from its configuration form (see the class docstring).

        Raises:
            ConfigurationError: the value is not a count over a period.
        """
        from migas_logging.exceptions import ConfigurationError

        if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
            return None
        units = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
        try:
            if isinstance(value, str):
                count_text, _, period_text = value.partition("/")
                period_text = period_text.strip().lower() or "60"
                if period_text in units:
                    period = units[period_text]
                else:
                    period = float(period_text.rstrip("s"))
                count = int(count_text)
            elif isinstance(value, list | tuple) and len(value) == 2:
                count, period = int(value[0]), float(value[1])
            else:
                raise ValueError(value)
            if count < 1 or not (period > 0):
                raise ValueError(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"rate_limit {value!r} is not a count per period; use for example '30/60' "
                f"(30 breadcrumbs per 60 s), '10/min', (30, 60), or None for no cap"
            ) from None
        return cls(count, period)

    def take(self, now: float) -> bool:
        """Take one token; False when the cap is reached. Call with the pipeline lock held."""
        elapsed = now - self._last
        self._last = now
        self._tokens = min(float(self.count), self._tokens + elapsed * self.count / self.period)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def __repr__(self) -> str:
        return f"RateCap({self.count}/{self.period:g}s)"


class Route:
    """Where events of one handler go and how they become breadcrumbs.

    The handler owns it; the worker reads it. ``build`` turns an event's data into a
    :class:`~migas_logging.breadcrumb.Breadcrumb` (it runs on the worker thread).

    Args:
        build: makes the breadcrumb from an event's data and the context.
        stats: where the route's records are counted.
        name: for messages.
    """

    __slots__ = ("__weakref__", "build", "name", "stats")

    def __init__(
        self,
        build: Callable[[Any, Context], Breadcrumb],
        stats: Stats | None = None,
        name: str = "handler",
    ) -> None:
        self.build = build
        self.stats = stats if stats is not None else Stats()
        self.name = name


class _Fold:
    """A window in which repeats of one record are counted instead of sent."""

    __slots__ = ("data", "repeats", "route", "start")

    def __init__(self, start: float, route: Route, data: Any) -> None:
        self.start = start
        self.route = route
        self.data = data
        self.repeats = 0


class _Event:
    """One breadcrumb to send: a record's captured data, or a fold's summary."""

    __slots__ = (
        "attempts",
        "crumb",
        "data",
        "outcome",
        "records",
        "route",
        "seq",
        "suffix",
        "summary",
    )

    def __init__(
        self, seq: int, route: Route, data: Any, *, suffix: str = "", summary: bool = False
    ) -> None:
        self.seq = seq
        self.route = route
        self.data = data
        self.suffix = suffix
        self.summary = summary
        self.attempts = 0
        self.crumb: Any = None
        self.outcome: Any = None


class _OwnedLock:
    """A lock that knows which thread holds it.

    A signal handler runs on the main thread between two bytecodes, possibly while that
    thread holds this lock; if it logs, taking the lock again would deadlock. ``submit``
    checks :attr:`owner` first and drops such a record (``reentrant``) instead.
    """

    __slots__ = ("_raw", "owner")

    def __init__(self) -> None:
        self._raw = threading.Lock()
        self.owner: int | None = None

    def __enter__(self) -> None:
        self._raw.acquire()
        self.owner = threading.get_ident()

    def __exit__(self, *exc: object) -> None:
        self.owner = None
        self._raw.release()


_STOP = object()
_NO_FLUSH = float("inf")


class Pipeline:
    """The process-wide queue, worker thread and pacing state.

    Use :func:`get_pipeline`; the settings of the first handler that starts it apply to
    the connection (endpoint, timeout), and each handler keeps its own route.

    Args:
        endpoint: the server's base URL.
        timeout: connect and read timeout, seconds.
        queue_size: the most events waiting at once; more are dropped (``queue_full``).
        rate_cap: the per-process cap, or None.
        fold_window: seconds during which repeats of one record are folded.
        retries: extra tries for a 5xx or a timeout.
        flush_deadline: the exit flush's deadline, seconds.
        transport_factory: makes the transport (tests give their own).
        rate_window: seconds to pause after a 429 without ``Retry-After`` (the
            server's window).
        circuit_cooldown: seconds the circuit stays open after repeated connection
            failures, at first (it doubles, up to 5 minutes).
    """

    def __init__(
        self,
        endpoint: str,
        timeout: float,
        *,
        queue_size: int = 1000,
        rate_cap: RateCap | None = None,
        fold_window: float = 60.0,
        retries: int = 3,
        flush_deadline: float = 2.0,
        transport_factory: Callable[[str, float], Transport] | None = None,
        rate_window: float = 60.0,
        circuit_cooldown: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.queue_size = queue_size
        self.rate_cap = rate_cap
        self.fold_window = fold_window
        self.retries = retries
        self.flush_deadline = flush_deadline
        self._transport_factory = transport_factory
        self.rate_window = rate_window
        self.circuit_cooldown = circuit_cooldown
        self.total = Stats()
        self.audit: AuditTrail | None = None
        self._routes: weakref.WeakSet[Route] = weakref.WeakSet()
        self._init_state()

    # --- state (re-made in a forked child) ---------------------------------------

    def _init_state(self) -> None:
        self._lock = _OwnedLock()
        self._done = threading.Condition(threading.Lock())
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._last_seq = 0
        self._done_seq = 0
        self._flush_targets: list[int] = []  # what each waiting flush waits for
        self._flush_target: float = _NO_FLUSH  # the lowest of them
        self._pending = 0
        self._folds: dict[tuple[Any, ...], _Fold] = {}  # in order of window start
        self._next_sweep = 0.0
        self._thread: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._transport: Transport | None = None
        self._context: Context | None = None
        self._stopped = False
        self._flush_until = 0.0  # while the final (exit) flush runs: its deadline
        self._paused_until = 0.0  # 429 window or open circuit
        self._pause_reason = ""
        self._conn_failures = 0
        self._cooldown = self.circuit_cooldown
        self._reported: set[str] = set()
        self._last_delivery = 0.0
        self._warmed = threading.Event()
        self._pid = os.getpid()

    def _after_fork_in_child(self) -> None:
        self._init_state()
        self.total._reset()
        if self.audit is not None:
            self.audit._lock = threading.Lock()  # a parent's thread may have held it
        for route in list(self._routes):
            route.stats._reset()

    # --- the application's side ---------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True after :meth:`stop`; later events are dropped (``closed``)."""
        return self._stopped

    @property
    def last_delivery(self) -> float:
        """``time.monotonic()`` of the last delivered breadcrumb (0 if none)."""
        return self._last_delivery

    @property
    def worker_ident(self) -> int | None:
        """The worker thread's id, so handlers can ignore records it logs."""
        return self._worker_ident

    def attach(self, route: Route) -> None:
        """Know a handler's route, so that a forked child resets its counters."""
        self._routes.add(route)

    def account(self, route: Route, reason: str) -> None:
        """Count one record that a handler dropped before submitting it."""
        if self._lock.owner == threading.get_ident():
            self._count_reentrant(route, reason)
            return
        with self._lock:  # inline, no Python call between the counts (see submit)
            route.stats.emitted += 1
            self.total.emitted += 1
            dropped = route.stats.dropped
            dropped[reason] = dropped.get(reason, 0) + 1
            dropped = self.total.dropped
            dropped[reason] = dropped.get(reason, 0) + 1
        if self.audit is not None and reason not in _UNAUDITED:
            self.audit.note(route, None, reason)

    def _count_reentrant(self, route: Route, reason: str) -> None:
        """Count a record that arrived while this thread holds the lock (a signal
        handler that logs): without the lock, which the interrupted code holds."""
        for stats in (route.stats, self.total):
            stats.emitted += 1
            stats.dropped[reason] = stats.dropped.get(reason, 0) + 1

    def set_audit(self, path: str) -> None:
        """Write the audit trail to ``path`` (see :mod:`migas_logging._audit`); once."""
        if self.audit is None and not config.optout():
            from migas_logging._audit import AuditTrail

            self.audit = AuditTrail(path)
        elif self.audit is not None and self.audit.path != path:
            self._report_once("audit", "the migas audit trail already goes to %s", self.audit.path)

    def submit(
        self,
        route: Route,
        data: Any,
        fold_key: tuple[Any, ...] | None,
        *,
        priority: bool = False,
    ) -> None:
        """Accept one record: fold it, cap it, or queue it. Never blocks or raises.

        Args:
            route: the handler's route; the record is counted in its stats.
            data: what the route's ``build`` needs, captured on the application's thread.
            fold_key: records with equal keys inside ``fold_window`` are folded; None
                never folds.
            priority: a crash or lifecycle breadcrumb: bypasses the rate cap and the
                queue bound (there are at most a few per run).
        """
        now = time.monotonic()
        stats, total = route.stats, self.total
        if fold_key is not None:
            try:
                hash(fold_key)  # a message whose __hash__ raises is not folded
            except Exception:
                fold_key = None
        if self._lock.owner == threading.get_ident():
            self._count_reentrant(route, "reentrant")  # see _OwnedLock
            return
        with self._lock:
            stats.emitted += 1
            total.emitted += 1
            try:
                reason = self._admit(route, data, fold_key, priority, now)
            except Exception:  # a RecursionError near the limit, say: count, never raise
                reason = "error"
            if reason == "folded":
                stats.folded += 1
                total.folded += 1
                return
            if reason:
                # inline, no Python call: this must not fail even at the recursion limit
                dropped = stats.dropped
                dropped[reason] = dropped.get(reason, 0) + 1
                dropped = total.dropped
                dropped[reason] = dropped.get(reason, 0) + 1
        # The record is counted: from here on nothing may escape, or emit() would count
        # it a second time.
        try:
            if reason:
                if self.audit is not None and reason != "error":
                    self.audit.note(route, data, reason)
                    self._queue.put(None)  # wake the worker to write it
                return
            if self._thread is None:  # a forked child has none: the fork hook resets it
                self._start()
        except Exception:
            pass  # the worker starts with the next record or flush

    def _admit(
        self,
        route: Route,
        data: Any,
        fold_key: tuple[Any, ...] | None,
        priority: bool,
        now: float,
    ) -> str:
        """Fold, cap or queue one record (lock held): ``""`` when queued, else why not."""
        if self._stopped:
            return "closed"
        if fold_key is not None and self.fold_window > 0:
            fold = self._folds.get(fold_key)
            if fold is not None and now - fold.start < self.fold_window:
                fold.repeats += 1
                return "folded"
            if fold is not None:  # its window closed: out with its count
                del self._folds[fold_key]
                if fold.repeats:
                    self._enqueue_summary(fold)
            if len(self._folds) >= _MAX_FOLDS:
                self._evict_oldest_fold()
            # re-inserted at the end: the table stays in order of window start
            self._folds[fold_key] = _Fold(now, route, data)
        if not priority:
            if self.rate_cap is not None and not self.rate_cap.take(now):
                return "rate_cap"
            if self._pending >= self.queue_size:
                return "queue_full"
        event = _Event(self._last_seq + 1, route, data)  # made before any state changes
        self._queue.put(event)
        self._last_seq = event.seq
        self._pending += 1
        return ""

    def _enqueue_summary(self, fold: _Fold) -> None:
        """Queue one breadcrumb carrying a fold's count (lock held)."""
        repeats, fold.repeats = fold.repeats, 0
        if self._pending >= self.queue_size or (
            self.rate_cap is not None and not self.rate_cap.take(time.monotonic())
        ):
            return  # the repeats stay counted as folded; their summary is what is lost
        window = f"{self.fold_window:g} s"
        event = _Event(
            self._last_seq + 1,
            fold.route,
            fold.data,
            suffix=f" [repeated {repeats} more time{'s' if repeats != 1 else ''} in {window}]",
            summary=True,
        )
        self._queue.put(event)
        self._last_seq = event.seq
        self._pending += 1

    def _sweep_folds(self, now: float, *, flush_all: bool = False) -> None:
        """Close expired fold windows, queueing their summaries (lock held).

        The table is in order of window start (a key is re-inserted when its window
        opens), so expired windows are at its front and the sweep stops at the first
        open one. ``flush_all`` sends every open window's count now and keeps the windows.
        """
        if flush_all:
            for fold in self._folds.values():
                if fold.repeats:
                    self._enqueue_summary(fold)
            return
        while self._folds:
            key = next(iter(self._folds))
            fold = self._folds[key]
            if now - fold.start < self.fold_window:
                return
            del self._folds[key]
            if fold.repeats:
                self._enqueue_summary(fold)

    def _evict_oldest_fold(self) -> None:
        """Make room in a full table: close the oldest window (lock held)."""
        key = next(iter(self._folds))
        fold = self._folds.pop(key)
        if fold.repeats:
            self._enqueue_summary(fold)

    def warm_up(self) -> None:
        """Start the worker now, so that it prepares everything a send needs.

        The worker always prepares first (imports ``requests``, reads the user id, builds
        the redactor) off the application's thread. The crash hook calls this when it is
        installed, because the crash path must not import anything: importing a module
        that runs ``exec`` while the interpreter shuts down makes CPython forget that a
        ``KeyboardInterrupt`` was unhandled, which changes the exit status.
        """
        if self._thread is None:
            self._start()

    def wait_warm(self, timeout: float) -> bool:
        """Wait until the worker has prepared (True), at most ``timeout`` seconds."""
        if self._thread is None:
            return True
        return self._warmed.wait(timeout)

    def _warm_up(self) -> None:
        from migas_logging.breadcrumb import default_redactor

        try:
            self.context()
            default_redactor()
            self._get_transport()
        except Exception as exc:
            self._report_once("warm", "migas worker could not prepare: %r", exc)
        finally:
            self._warmed.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child that missed the fork hook
                self._init_state()
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._run, name="migas-logging-worker", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except Exception as exc:
            with self._lock:
                self._thread = None  # the next record or flush tries again
            if sys.is_finalizing():  # the interpreter is shutting down: no thread, ever
                with self._lock:
                    self._stopped = True
                self._drop_queued("shutdown")
            self._report_once("start", "cannot start the migas worker thread: %r", exc)

    # --- flush / stop ---------------------------------------------------------------

    def flush(self, timeout: float | None = None, *, final: bool = False) -> bool:
        """Wait until everything submitted so far was sent, folded or dropped.

        Also closes open fold windows, so that their counts go out.

        Args:
            timeout: seconds at most (default: the flush deadline).
            final: the process is ending: what cannot be delivered before the deadline
                (a 429 window or an open circuit that outlasts it, a retry that would
                come after it) is dropped at once instead of waited for.

        Returns:
            True when everything was handled before the deadline.
        """
        if timeout is None:
            timeout = self.flush_deadline
        if self._stopped:
            return self._pending == 0
        if _logging_lock_held():
            return False  # see the module docstring: waiting here could only time out
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._sweep_folds(time.monotonic(), flush_all=True)
            target = self._last_seq
        if self._pending and (self._thread is None or not self._thread.is_alive()):
            self._start()
        if final:
            self._flush_until = deadline
        try:
            with self._done:
                self._queue.put(None)  # wake the worker
                self._flush_targets.append(target)
                self._flush_target = min(self._flush_targets)
                try:
                    while self._done_seq < target:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        self._done.wait(remaining)
                finally:
                    self._flush_targets.remove(target)
                    self._flush_target = min(self._flush_targets, default=_NO_FLUSH)
            return True
        finally:
            self._flush_until = 0.0

    def stop(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then stop the worker; idempotent.

        What is still queued at the deadline is dropped (``shutdown``).

        Returns:
            True when everything was handled before the deadline.
        """
        if self._stopped:
            return True
        done = self.flush(timeout, final=True)
        with self._lock:
            self._stopped = True
        self._queue.put(_STOP)
        if not done:
            self._drop_queued("shutdown")
        self._write_notes()
        return done

    def _drop_queued(self, reason: str) -> None:
        """Drop every queued event (not the one being sent), counting each record."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Event):
                self._finish(item, dropped=reason)
            elif item is _STOP:
                self._queue.put(_STOP)
                return

    # --- the worker's side ---------------------------------------------------------

    def _run(self) -> None:
        self._worker_ident = threading.get_ident()
        self._warm_up()
        while True:
            timeout = 1.0 if self._folds else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if self._folds:
                now = time.monotonic()
                if now >= self._next_sweep:  # at most once a second, not per breadcrumb
                    self._next_sweep = now + 1.0
                    with self._lock:
                        self._sweep_folds(now)
            if self.audit is not None:
                self._write_notes()
            if item is None:
                continue
            try:
                self._process(item)
            except Exception as exc:  # never let the worker die
                self._report_once("process", "migas worker failed on a breadcrumb: %r", exc)
                self._finish(item, dropped="error")

    def _finish(self, event: _Event, *, sent: bool = False, dropped: str = "") -> None:
        stats, total = event.route.stats, self.total
        with self._lock:
            self._pending -= 1
            if event.summary:  # carries no record of its own: only count the delivery
                if sent:
                    stats.summaries += 1
                    total.summaries += 1
            elif sent:
                stats.sent += 1
                total.sent += 1
            else:
                _count(stats.dropped, dropped)
                _count(total.dropped, dropped)
        if self.audit is not None:
            self._audit_event(event, dropped)
        with self._done:
            self._done_seq = max(self._done_seq, event.seq)
            # wake a flush only when it is done waiting, not after every breadcrumb
            if self._done_seq >= self._flush_target:
                self._done.notify_all()

    def _audit_event(self, event: _Event, dropped: str) -> None:
        audit = self.audit
        if audit is None or dropped in _UNAUDITED:
            return
        try:
            crumb = event.crumb
            if crumb is None:
                crumb = self._build(event.route, event.data, event.suffix)
            payload = crumb.to_payload() if crumb is not None else None
            outcome = event.outcome
            if not dropped:
                audit.sent(
                    payload or {},
                    outcome=outcome.kind.value if outcome is not None else "delivered",
                    status=outcome.status if outcome is not None else None,
                    via=outcome.via if outcome is not None else "rest",
                )
            else:
                details: dict[str, Any] = {"summary": event.summary}
                if outcome is not None:
                    details["last_outcome"] = outcome.kind.value
                    details["http_status"] = outcome.status
                    details["detail"] = outcome.detail
                audit.dropped(dropped, payload, **details)
        except Exception as exc:
            self._report_once("audit-write", "could not write the migas audit trail: %r", exc)

    def _build(self, route: Route, data: Any, suffix: str = "") -> Breadcrumb | None:
        if data is None:
            return None
        try:
            crumb = route.build(data, self.context())
            return crumb.with_suffix(suffix) if suffix else crumb
        except Exception:
            return None

    def _write_notes(self) -> None:
        """Write the audit lines of drops decided on the application's thread."""
        audit = self.audit
        if audit is None:
            return
        for route, data, reason in audit.take_notes():
            crumb = self._build(route, data)
            try:
                audit.dropped(
                    reason, crumb.to_payload() if crumb is not None else None, summary=False
                )
            except Exception as exc:
                self._report_once("audit-write", "could not write the migas audit trail: %r", exc)

    def context(self) -> Context:
        """The breadcrumb context, detected once (user id file read on the worker)."""
        if self._context is None:
            self._context = config.detect_context()
        return self._context

    def _get_transport(self) -> Transport:
        if self._transport is None:
            if self._transport_factory is not None:
                self._transport = self._transport_factory(self.endpoint, self.timeout)
            else:
                from migas_logging.transport import Transport

                self._transport = Transport(self.endpoint, self.timeout)
        return self._transport

    def _process(self, event: _Event) -> None:
        if config.optout():
            self._finish(event, dropped="optout")
            return
        crumb = event.route.build(event.data, self.context())
        if event.suffix:
            crumb = crumb.with_suffix(event.suffix)
        event.crumb = crumb
        while True:
            if not self._wait_for_pause(event):
                return
            event.attempts += 1
            outcome = self._get_transport().send(crumb)
            event.outcome = outcome
            if self._handle(event, outcome):
                return

    def _wait_for_pause(self, event: _Event) -> bool:
        """Sleep through a 429 window or an open circuit; False if the event was dropped."""
        while True:
            now = time.monotonic()
            pause_end = self._paused_until
            if pause_end <= now:
                return True
            flush_until = self._flush_until
            if flush_until and pause_end > flush_until:
                # exiting: the pause outlasts the deadline, nothing will get through
                reason = "rate_limited" if self._pause_reason == "429" else "unreachable"
                self._finish(event, dropped=reason)
                self._drop_queued(reason)
                return False
            time.sleep(min(pause_end - now, 0.25))

    def _handle(self, event: _Event, outcome: Outcome) -> bool:
        """Account for one outcome; True when the event is finished."""
        from migas_logging.transport import OutcomeKind

        kind = outcome.kind
        if kind is OutcomeKind.DELIVERED:
            self._conn_failures = 0
            self._cooldown = self.circuit_cooldown
            self._last_delivery = time.monotonic()
            self._finish(event, sent=True)
            return True
        if kind is OutcomeKind.REJECTED:
            self._report_once(
                f"rejected:{outcome.status}",
                "the migas server refused a breadcrumb (HTTP %s: %s); breadcrumbs like it "
                "will be dropped",
                outcome.status,
                outcome.detail,
            )
            self._finish(event, dropped="server_refused")
            return True
        if kind is OutcomeKind.RATE_LIMITED:
            window = outcome.retry_after if outcome.retry_after is not None else self.rate_window
            window = max(window, 1.0)  # "Retry-After: 0" must not become a resend loop
            self._pause(window, "429")
            self._report_once(
                "429", "the migas server is rate limiting this address; pausing %.0f s", window
            )
            return False  # retried after the window, not before
        if kind is OutcomeKind.UNREACHABLE or kind is OutcomeKind.TIMEOUT:
            self._conn_failures += 1
            if self._conn_failures >= 3:
                self._pause(self._cooldown, "circuit")
                self._report_once(
                    "circuit",
                    "cannot reach the migas server at %s (%s); not trying for %.0f s",
                    config.display_url(self.endpoint),
                    outcome.detail,
                    self._cooldown,
                )
                self._cooldown = min(self._cooldown * 2, 300.0)
        if kind is OutcomeKind.CLIENT_ERROR:
            self._report_once("client", "migas-logging failed to send: %s", outcome.detail)
            self._finish(event, dropped="error")
            return True
        # 5xx, timeout, no connection, garbage: bounded retries with backoff and jitter
        if event.attempts > self.retries:
            reason = "unreachable" if kind is OutcomeKind.UNREACHABLE else "failed"
            self._report_once(
                f"failed:{kind.value}",
                "migas breadcrumb not delivered after %d tries (%s)",
                event.attempts,
                outcome.detail,
            )
            self._finish(event, dropped=reason)
            return True
        flush_until = self._flush_until
        if flush_until and kind is OutcomeKind.UNREACHABLE:
            # exiting and nothing listens: the next second will not change that, for this
            # breadcrumb or for those queued behind it
            self._finish(event, dropped="unreachable")
            self._drop_queued("unreachable")
            return True
        delay = min(0.5 * 2 ** (event.attempts - 1), 30.0) * (0.5 + random.random())  # noqa: S311
        if flush_until and time.monotonic() + delay > flush_until:
            self._finish(
                event, dropped="unreachable" if kind is OutcomeKind.UNREACHABLE else "failed"
            )
            return True
        if self._paused_until < time.monotonic() + delay:
            time.sleep(delay)
        return False

    def _pause(self, seconds: float, reason: str) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self._pause_reason = reason

    def _report_once(self, key: str, message: str, *args: object) -> None:
        """Report an internal problem once per process, on the package's own logger."""
        if key in self._reported:
            return
        self._reported.add(key)
        with contextlib.suppress(Exception):
            _log.warning(message, *args)


def _logging_lock_held() -> bool:
    """True when the calling thread holds ``logging``'s module lock (dictConfig does)."""
    lock = getattr(logging, "_lock", None)
    is_owned = getattr(lock, "_is_owned", None)
    if is_owned is None:
        return False
    try:
        return bool(is_owned())
    except Exception:
        return False


# --- the process-wide instance ------------------------------------------------------

_pipeline: Pipeline | None = None
_pipeline_lock = threading.Lock()


def get_pipeline(
    endpoint: str,
    timeout: float,
    **options: Any,
) -> Pipeline:
    """Return the process's pipeline, making it on first use.

    The first caller's ``endpoint``, ``timeout`` and options make the pipeline; later
    callers share it. A later handler that names another endpoint is told once on the
    package's logger.
    """
    global _pipeline  # noqa: PLW0603 - one pipeline per process, by design
    with _pipeline_lock:
        if _pipeline is None or _pipeline.stopped:
            _pipeline = Pipeline(endpoint, timeout, **options)
            _register_exit()
        elif _pipeline.endpoint != endpoint:
            _pipeline._report_once(
                f"endpoint:{endpoint}",
                "a migas handler asked for %s but this process already sends to %s; "
                "one process sends to one server",
                config.display_url(endpoint),
                config.display_url(_pipeline.endpoint),
            )
        return _pipeline


def current_pipeline() -> Pipeline | None:
    """The process's pipeline, if one was made."""
    return _pipeline


_exit_registered = False


def _register_exit() -> None:
    global _exit_registered  # noqa: PLW0603
    if not _exit_registered:
        _exit_registered = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    pipeline = _pipeline
    if pipeline is not None and pipeline._pid == os.getpid():
        with contextlib.suppress(Exception):
            pipeline.stop(pipeline.flush_deadline)


def reset(timeout: float = 0.5) -> None:
    """Stop the process's pipeline (flushing within ``timeout``) and forget it.

    The next handler starts a new one, with its own endpoint. For tests: one process
    sends to one server, and the pytest fixtures give each test a collector of its own.
    Handlers made before the reset count their later records as ``closed``.
    """
    global _pipeline  # noqa: PLW0603
    with _pipeline_lock:
        if _pipeline is not None:
            _pipeline.stop(timeout)
        _pipeline = None


def _before_fork() -> None:
    """Prepare a fork: let the worker finish preparing, and arrange the child's flush.

    A fork in the middle of the worker's ``import requests`` would leave the child a
    half-imported module (and nothing it sends would work), so the fork waits for the
    preparation to end (it takes a fraction of a second, once per process).
    """
    pipeline = _pipeline
    if pipeline is None:
        return
    with contextlib.suppress(Exception):
        pipeline.wait_warm(5.0)
    # multiprocessing's forked children end with os._exit(), which skips atexit; they
    # run multiprocessing's finalizers instead, registered after its bootstrap clears them.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and not getattr(pipeline, "_mp_registered", False):
        with contextlib.suppress(Exception):
            mp_util.register_after_fork(pipeline, _register_mp_finalizer)
            pipeline._mp_registered = True  # type: ignore[attr-defined]


def _register_mp_finalizer(pipeline: Pipeline) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        with contextlib.suppress(Exception):
            mp_util.Finalize(None, _at_exit, exitpriority=0)


def _after_fork_in_child() -> None:
    global _pipeline_lock  # noqa: PLW0603
    _pipeline_lock = threading.Lock()
    if _pipeline is not None:
        _pipeline._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
