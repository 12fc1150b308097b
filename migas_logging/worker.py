"""The worker: a bounded queue, one background thread, flush by sequence number.

The application's thread calls :meth:`Worker.submit`: under a lock never held across
I/O it asks :class:`~migas_logging.admission.Admission` (fold, rate cap, queue bound),
counts the record in the :class:`~migas_logging.ledger.Ledger` and puts a small tuple on
the queue. It never waits on the network and never raises. Everything else (building the
breadcrumb, redaction, HTTP, the delivery policy) runs on one daemon thread, started on
first use, in :class:`~migas_logging.delivery.Sender`.

Every breadcrumb takes this one path: log records, structlog events, thread and asyncio
crashes, ``Started``, and the terminal breadcrumb, which is the only privileged one (it
passes the cap and the bound, goes out after everything queued before it, within the
exit deadline). After a terminal breadcrumb is submitted the run is over: later records
are dropped (``shutdown``), so that nothing of this session lands after it.

``flush()`` waits until every breadcrumb submitted before it is settled, never past its
deadline, and returns at once when the calling thread is the worker, or when the thread
cannot run (a finalizing interpreter): then it settles what it can on its own thread, by
the same code.

Fork: the child gets fresh locks, a fresh queue and, on its first record, its own thread.
What the parent had queued is the parent's to send.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migas_logging._stdlib import logging_lock_held
from migas_logging.admission import Admission, summary_suffix
from migas_logging.ledger import Ledger, Stats

# see migas_logging.replay; also kept: breadcrumbs still untried when the exit deadline came
KEPT_REASONS = frozenset({"unreachable", "rate_limited"})

if TYPE_CHECKING:
    from migas_logging.breadcrumb import Breadcrumb, Context
    from migas_logging.delivery import Sender
    from migas_logging.replay import SpoolKeeper

__all__ = ["Entry", "Filtered", "Route", "Worker"]

_log = logging.getLogger("migas_logging.worker")

_STOP = object()
_NO_FLUSH = float("inf")


class Filtered(Exception):
    """Raised by a route's ``build`` when the application's hook dropped the breadcrumb."""


class Route:
    """Where one source's breadcrumbs are counted and how they are built.

    Args:
        build: makes the breadcrumb from the captured data and the context (worker thread).
        stats: where the source's records are counted.
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


class Entry:
    """One breadcrumb on its way: a record's captured data, a summary, or the terminal."""

    __slots__ = (
        "attempts",
        "crumb",
        "data",
        "outcome",
        "route",
        "seq",
        "suffix",
        "summary",
        "terminal",
        "timed_out",
    )

    def __init__(
        self,
        seq: int,
        route: Route,
        data: Any,
        *,
        suffix: str = "",
        summary: bool = False,
        terminal: bool = False,
    ) -> None:
        self.seq = seq
        self.route = route
        self.data = data
        self.suffix = suffix
        self.summary = summary
        self.terminal = terminal
        self.attempts = 0
        self.crumb: Breadcrumb | None = None
        self.outcome: Any = None
        self.timed_out = False


def _entry(item: Entry | tuple[int, Route, Any, bool]) -> Entry:
    """A queued item as an entry (``submit`` queues a plain tuple: cheaper, and it cannot
    fail between counting and queueing)."""
    if isinstance(item, Entry):
        return item
    seq, route, data, terminal = item
    return Entry(seq, route, data, terminal=terminal)


class OwnedLock:
    """A lock that knows which thread holds it.

    A signal handler runs on the main thread between two bytecodes, possibly while that
    thread holds this lock; if it logs, taking the lock again would deadlock. The worker
    checks :attr:`owner` first and counts such a record ``reentrant`` instead.
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

    def held_here(self) -> bool:
        """True when the calling thread holds it."""
        return self.owner == threading.get_ident()


class Worker:
    """The process's queue and background thread (made by the client).

    Args:
        admission: the fold table, rate cap and queue bound.
        ledger: where every record is counted.
        sender: settles one entry (builds it, sends it, follows the policy).
        report: reports an internal problem once (key, message, args).
    """

    def __init__(
        self,
        admission: Admission,
        ledger: Ledger,
        sender: Sender,
        report: Callable[..., None],
    ) -> None:
        self.admission = admission
        self.ledger = ledger
        self.sender = sender
        sender.idle = self._idle  # reads the queue of the moment (a fork makes a new one)
        self._report = report
        #: Keeps what cannot be delivered and replays it when idle; None: no spool.
        self.spool: SpoolKeeper | None = None
        self._routes: weakref.WeakSet[Route] = weakref.WeakSet()
        self._init_state()

    # --- state (re-made in a forked child) ---------------------------------------

    def _init_state(self) -> None:
        self._lock = OwnedLock()
        self._done = threading.Condition(threading.Lock())
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._last_seq = 0
        self._done_seq = 0
        self._flush_targets: list[int] = []
        self._flush_target: float = _NO_FLUSH
        self.pending = 0
        self._next_sweep = 0.0
        self._thread: threading.Thread | None = None
        self.thread_ident: int | None = None
        self.stopped = False
        self.ended = False  # a terminal breadcrumb was submitted: the run is over
        self._terminals: list[Entry] = []  # waiting until everything before them settled
        # a terminal breadcrumb of this run was tried live: nothing more of the run may
        # go to the spool (replayed after the outcome, it would hide it); the lock makes
        # "look at the spool, then go live" and "may I keep this, then write it" atomic
        self.terminal_live = False
        self._spool_lock = threading.Lock()
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: its counts and queue are its own."""
        self._init_state()
        self.admission.clear()
        self.ledger.reset()
        self.sender.after_fork_in_child()
        for route in list(self._routes):
            route.stats.reset()

    def attach(self, route: Route) -> None:
        """Know a source's route, so that a forked child resets its counters."""
        self._routes.add(route)

    # --- the application's side ---------------------------------------------------

    def submit(self, route: Route, data: Any, key: Any = None, *, terminal: bool = False) -> int:
        """Accept one record: fold it, cap it, or queue it. Never blocks or raises.

        Args:
            route: the source's route; the record is counted in its stats.
            data: what the route's ``build`` needs, captured on the application's thread.
            key: records with equal keys inside the fold window are folded; None never folds.
            terminal: the run's last breadcrumb (see the module docstring).

        Returns:
            The entry's sequence number when queued, else 0.
        """
        now = time.monotonic()
        if key is not None:
            try:
                hash(key)  # a message whose __hash__ raises is not folded
            except Exception:
                key = None
        if self._lock.held_here():
            self._count_reentrant(route.stats)
            return 0
        if terminal:  # the folded counts go out before the run's end, not after it
            self._close_folds()
        with self._lock:
            try:
                if self.stopped:
                    reason = "closed"
                elif self.ended and not terminal:
                    reason = "shutdown"
                else:
                    reason = self.admission.admit(
                        key, route, data, now, self.pending, privileged=terminal
                    )
            except Exception:  # a RecursionError near the limit, say: count, never raise
                reason = "error"
            # From here nothing may fail between counting and queueing: inline only.
            self.ledger.admitted(route.stats, reason)
            seq = 0
            if not reason:
                seq = self._last_seq = self._last_seq + 1
                self.pending += 1
                if terminal:
                    self.ended = True
                    self._terminals.append(Entry(seq, route, data, terminal=True))
                    self._queue.put(None)  # wake the worker: it sends it when its turn comes
                else:
                    self._queue.put((seq, route, data, False))
        try:
            if self.admission.closed:
                self._queue_summaries(now)
            if reason and reason not in ("folded", "error"):
                self.ledger.notify_early((route, data), reason)
                self._queue.put(None)  # wake the worker to audit it
            elif not reason and self._thread is None:
                self._start()
        except Exception:
            pass  # the worker starts with the next record or flush
        return seq

    def account(self, route: Route, reason: str) -> None:
        """Count one record that a source dropped before submitting it."""
        if self._lock.held_here():
            self._count_reentrant(route.stats)
            return
        with self._lock:
            self.ledger.admitted(route.stats, reason)
        self.ledger.notify_early((route, None), reason)

    def _count_reentrant(self, stats: Stats) -> None:
        """Count a record that arrived while this thread holds the lock (a signal
        handler that logs): without the lock, which the interrupted code holds."""
        for counts in (stats, self.ledger.total):
            counts.emitted += 1
            counts.dropped["reentrant"] = counts.dropped.get("reentrant", 0) + 1

    def _close_folds(self) -> None:
        """Queue the counts of every open fold window now (the windows stay open)."""
        now = time.monotonic()
        with self._lock:
            self.admission.sweep(now, flush_all=True)
        self._queue_summaries(now)

    def _queue_summaries(self, now: float) -> None:
        """Queue a summary for each fold window that closed with repeats."""
        with self._lock:
            if self.ended:  # nothing after the run's end; the repeats stay counted
                self.admission.take_closed()
                return
            for fold in self.admission.take_closed():
                repeats, seconds = fold.take_summary()
                if not repeats or not self.admission.summary_admitted(now, self.pending):
                    continue  # the repeats stay counted as folded; their summary is lost
                seq = self._last_seq = self._last_seq + 1
                self.pending += 1
                entry = Entry(
                    seq,
                    fold.route,
                    fold.data,
                    suffix=summary_suffix(repeats, seconds),
                    summary=True,
                )
                self._queue.put(entry)

    # --- thread ---------------------------------------------------------------------

    def warm_up(self) -> None:
        """Start the thread now, so that it prepares what a send needs off this thread."""
        if self._thread is None:
            self._start()

    def alive(self) -> bool:
        """True while the background thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child that missed the fork hook
                self._init_state()
            if self._thread is not None or self.stopped:
                return
            thread = threading.Thread(target=self._run, name="migas-logging-worker", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except Exception as exc:
            with self._lock:
                self._thread = None  # the next record or flush tries again (or settles inline)
            if not sys.is_finalizing():
                self._report("start", "cannot start the migas worker thread: %r", exc)

    def _run(self) -> None:
        self.thread_ident = threading.get_ident()
        self.sender.prepare()
        more = False  # spooled breadcrumbs wait to be replayed
        while True:
            timeout = 0.05 if more else (1.0 if self.admission.folds or self.spool else None)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
                more = self._replay_some()
            if item is _STOP:
                return
            self._step(item)

    def _idle(self) -> bool:
        """Nothing waits in the queue."""
        return self._queue.empty()

    def _replay_some(self) -> bool:
        """Idle: replay a few spooled breadcrumbs (never during the exit)."""
        spool = self.spool
        if spool is None or self.ended or self.stopped or self.pending:
            return False
        try:
            return spool.replay()
        except Exception as exc:
            self._report("replay", "migas: replaying the spool failed: %r", exc)
            return False

    def _step(self, item: Any) -> None:
        """Settle one queued item (on whichever thread drives the queue)."""
        if self.admission.folds:
            now = time.monotonic()
            if now >= self._next_sweep:  # at most once a second, not per breadcrumb
                self._next_sweep = now + 1.0
                with self._lock:
                    self.admission.sweep(now)
                self._queue_summaries(now)
        self.sender.write_early_notes()
        if item is not None:
            entry = _entry(item)
            self._settle(entry)
        if self._terminals and self.pending == len(self._terminals):
            self.settle_terminals()  # everything before them is settled: their turn

    def _settle(self, entry: Entry, *, own_connection: bool = False) -> None:
        if entry.terminal and self._behind_spool(entry):
            self._finish(entry, "spooled")
            return
        try:
            result = self.sender.settle(entry, own_connection=own_connection)
        except Exception as exc:  # never let the worker die
            self._report("process", "migas worker failed on a breadcrumb: %r", exc)
            result = "error"
        self._finish(entry, result)
        if self.sender.drop_queued:
            reason, self.sender.drop_queued = self.sender.drop_queued, ""
            self._drop_queued(reason)

    def _behind_spool(self, entry: Entry) -> bool:
        """Whether a terminal entry went to the spool behind others of its run; if not,
        it goes out live, and nothing more of the run is spooled."""
        spool = self.spool
        if spool is None or self.sender.run_over():
            return False
        if not self._take_spool_lock():
            self.terminal_live = True  # the spool is stuck (a hung file system?): go live
            return False
        try:
            if spool.keep_behind(entry):
                return True
        except Exception:
            pass
        finally:
            self._spool_lock.release()
        self.terminal_live = True
        return False

    def _take_spool_lock(self) -> bool:
        """Take the spool's lock; during the exit, wait for it only until the deadline
        (the worker may be stuck writing to a hung file system, holding it)."""
        deadline = self.sender.exit_deadline
        if not deadline:
            return self._spool_lock.acquire()
        return self._spool_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def settle_terminals(self, *, own_connection: bool = False) -> None:
        """Send the terminal breadcrumbs not yet taken, on the calling thread.

        The worker calls it when their turn comes; the exit path calls it (with a
        connection of its own) when the worker is still busy as the deadline nears.
        """
        while True:
            with self._lock:
                if not self._terminals:
                    return
                entry = self._terminals.pop(0)
            self._settle(entry, own_connection=own_connection)

    def _finish(self, entry: Entry, result: str) -> None:
        spool = self.spool
        if spool is not None and not entry.summary and self._take_spool_lock():
            try:
                if self._keepable(entry, result) and spool.keep(entry):
                    result = "spooled"  # sent later, by this process or another
            except Exception:
                pass
            finally:
                self._spool_lock.release()
        if result != "sent" and _log.isEnabledFor(logging.DEBUG):
            _log.debug("migas breadcrumb %d not delivered: %s", entry.seq, result)
        with self._lock:
            self.pending -= 1
            self.ledger.settle(
                entry.route.stats,
                result,
                summary=entry.summary,
                possible_duplicate=entry.timed_out,
            )
        self.ledger.notify(entry, result)
        with self._done:
            self._done_seq = max(self._done_seq, entry.seq)
            if self._done_seq >= self._flush_target:  # wake a flush only when it is done
                self._done.notify_all()

    def _keepable(self, entry: Entry, result: str) -> bool:
        """Whether an undelivered entry goes to the spool.

        Those the server could not take (unreachable, rate-limited) and those never
        tried before the exit deadline (an untried one cannot have been stored); but
        nothing once the run's outcome is stored (by this process, or by the parent of
        a forked child): replayed after it, they would hide it.
        """
        if self.sender.run_over() or (self.terminal_live and not entry.terminal):
            return False
        return result in KEPT_REASONS or (result == "shutdown" and entry.attempts == 0)

    def keep_rest(self) -> None:
        """The exit deadline nears with breadcrumbs still queued: with a spool, keep the
        run's terminal breadcrumb and then them (on the calling thread).

        Sent live, the terminal breadcrumb would be stored before them once they are
        replayed. It is written first, as the one that matters most when little time is
        left, and held back from replays (another process's) until the rest is written;
        replay sends it last (by number, not by time of writing).
        """
        spool = self.spool
        if spool is None:
            return
        queued = self._take_queued()
        if not queued:
            return  # only a try in flight: the terminal breadcrumb may still go out live
        with self._lock:
            terminals, self._terminals = self._terminals, []
        for entry in terminals:
            try:
                kept = spool.keep(entry, held=True)
            except Exception:
                kept = False
            if kept:
                self._finish(entry, "spooled")
            else:
                with self._lock:
                    self._terminals.append(entry)  # sent live after all
        try:
            for entry in queued:
                self._finish(entry, "shutdown")  # untried: kept, unless the terminal went live
        finally:
            with contextlib.suppress(Exception):
                spool.release_held()

    def _take_queued(self) -> list[Entry]:
        """Take every entry waiting in the queue, in order (a stop request stays)."""
        taken: list[Entry] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(item)
                break
            if item is not None:
                taken.append(_entry(item))
        return taken

    def _drop_queued(self, reason: str, *, terminals: bool = False) -> None:
        """Drop every queued entry (the terminal ones too when ``terminals``)."""
        for entry in self._take_queued():
            self._finish(entry, reason)
        if terminals:
            with self._lock:
                left, self._terminals = self._terminals, []
            for entry in left:
                self._finish(entry, reason)

    # --- flush / stop ---------------------------------------------------------------

    def flush(self, timeout: float, *, final: bool = False) -> bool:
        """Wait until everything submitted so far is settled; True if it was in time.

        Also closes open fold windows, so that their counts go out. ``final``: the
        process is ending, so what cannot be delivered before the deadline is dropped at
        once instead of waited for.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        if self.stopped:
            return self.pending == 0
        if self._lock.held_here() or logging_lock_held():
            # a signal handler interrupted this thread inside submit(), or dictConfig
            # holds logging's lock, which the worker may need: waiting could only time out
            return False
        self._close_folds()
        with self._lock:
            target = self._last_seq
        if final:
            self.sender.exit_at(deadline)
        if threading.get_ident() == self.thread_ident:
            return self._done_seq >= target  # the worker cannot wait for itself
        if self.pending and not self.alive():
            self._start()
        if not self.alive():
            return self._settle_here(target, deadline)
        with self._done:
            self._queue.put(None)  # wake the worker
            self.sender.wake()
            self._flush_targets.append(target)
            self._flush_target = min(self._flush_targets)
            try:
                while self._done_seq < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self.alive():
                        break
                    self._done.wait(min(remaining, 0.5))
            finally:
                self._flush_targets.remove(target)
                self._flush_target = min(self._flush_targets, default=_NO_FLUSH)
        if self._done_seq < target and not self.alive() and deadline > time.monotonic():
            return self._settle_here(target, deadline)
        return self._done_seq >= target

    def _settle_here(self, target: int, deadline: float) -> bool:
        """No thread can run (the interpreter is finalizing): settle on this thread."""
        self.sender.exit_at(deadline)
        while self._done_seq < target and time.monotonic() < deadline:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = None
            if item is not _STOP:
                self._step(item)
            if item is None and not self._terminals:
                break
        return self._done_seq >= target

    def stop(self, timeout: float) -> bool:
        """Flush within ``timeout``, then stop; idempotent. What is left is ``shutdown``."""
        if self.stopped:
            return True
        done = self.flush(timeout, final=True)
        with self._lock:
            self.stopped = True
        self._queue.put(_STOP)
        self.sender.wake()
        if not done:
            self._drop_queued("shutdown", terminals=True)
        self.sender.write_early_notes()
        return done
