"""The sender: settles one queued entry on the worker's thread.

It builds the breadcrumb (redaction and fitting happen here, off the application's
thread), sends it, and follows the :class:`~migas_logging.policy.DeliveryPolicy` until the
entry is settled: ``"sent"`` or a drop reason. Waits (a retry's backoff, a 429 window, an
open circuit) sleep on an event that an exit flush sets, so an exit never waits behind them.

The terminal breadcrumb goes out at least 1.05 s after the latest breadcrumb delivered for
its project (the server's clock has one-second resolution and the dashboard reads each
session's latest breadcrumb), unless the exit deadline is too close for both (then, with
a spool, it is kept there instead: see :mod:`migas_logging.replay`), and with
``?wait=true`` so that the server confirms it stored it.

Identity: the user id is resolved on a thread of its own (see
:func:`migas_logging.config.user_id_within`). A breadcrumb waits for it at most the
network timeout; the terminal breadcrumb and everything sent during the exit never wait,
and go without it when it is not known yet.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migas_logging import config
from migas_logging.policy import maybe_stored_by

_log = logging.getLogger("migas_logging.delivery")

if TYPE_CHECKING:
    from migas_logging.breadcrumb import Breadcrumb, Context
    from migas_logging.client import ClientSettings
    from migas_logging.policy import DeliveryPolicy
    from migas_logging.transport import Outcome, Transport
    from migas_logging.worker import Entry, Route

__all__ = ["Sender"]

_SPACING = 1.05
_START_SPREAD = 5.0  # seconds over which the Started breadcrumbs of one machine spread
_LOCK_BUSY = 0.05  # what MachineBudget.wait_time() says while its lock is busy
_CONTENTION_LIMIT = 0.3  # seconds of a busy budget file before a try goes ahead anyway


class Sender:
    """Builds and delivers entries (see the module docstring).

    Args:
        settings: the client's settings (endpoint, timeout, flush deadline).
        policy: decides after each try.
        report: reports an internal problem once (key, message, args).
        transport_factory: makes a transport for an endpoint and a timeout.
    """

    def __init__(
        self,
        settings: ClientSettings,
        policy: DeliveryPolicy,
        report: Callable[..., None],
        transport_factory: Callable[[str, float], Transport] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self._report = report
        self._transport_factory = transport_factory
        self.listeners_notes: Callable[[], None] = lambda: None
        self.run_over: Callable[[], bool] = lambda: False  # the parent's run ended
        self.budget: Any = None  # the machine's budget (migas_logging.budget), if any
        self.idle: Callable[[], bool] = lambda: True  # nothing else waits in the queue
        self._init_state()

    def _init_state(self) -> None:
        self._transport: Transport | None = None
        self._context: Context | None = None
        self._wake = threading.Event()
        self.exit_deadline = 0.0  # while the process exits: its deadline (monotonic)
        self.expect_terminal = False  # a terminal breadcrumb is coming: keep its reserve
        self.latency = 0.0  # a recent try's duration (moving average), seconds
        self.drop_queued = ""  # set when what waits behind cannot get through either
        self.last_delivery: dict[str, float] = {}  # by project
        self.prepared = threading.Event()

    def after_fork_in_child(self) -> None:
        """A forked child opens its own connection."""
        self._init_state()

    def exit_at(self, deadline: float) -> None:
        """The process exits: nothing may wait past ``deadline`` (the earliest given)."""
        current = self.exit_deadline
        self.exit_deadline = min(current, deadline) if current else deadline
        self._wake.set()

    def reserve(self) -> float:
        """The part of the exit kept for the terminal breadcrumb, seconds."""
        return min(self.settings.timeout, max(0.3, 0.4 * self.settings.flush_deadline))

    def wake(self) -> None:
        """Cut a wait short (an exit flush began, or the worker stops)."""
        self._wake.set()

    # --- preparing ------------------------------------------------------------------

    def prepare(self) -> None:
        """Import and build what a send needs, off the application's thread."""
        from migas_logging.breadcrumb import default_redactor

        try:
            config.prepare_identity()
            config.user_id_within(0)  # starts resolving on its own thread
            default_redactor()
            self.transport()
        except Exception as exc:
            self._report("warm", "migas worker could not prepare: %r", exc)
        finally:
            self.prepared.set()

    def transport(self) -> Transport:
        """The keep-alive transport of this process."""
        if self._transport is None:
            self._transport = self._make_transport(self.settings.timeout)
        return self._transport

    def _make_transport(self, timeout: float) -> Transport:
        if self._transport_factory is not None:
            return self._transport_factory(self.settings.endpoint, timeout)
        from migas_logging.transport import Transport

        return Transport(self.settings.endpoint, timeout)

    def context(self, *, wait: bool) -> Context:
        """The breadcrumb context; waits for the user id only when ``wait``, and never
        once the process exits (an exit cuts the wait short)."""
        if self._context is not None:
            return self._context
        user_id = config.user_id_within(0)
        if wait and user_id is None:
            end = time.monotonic() + min(self.settings.timeout, 5.0)
            while user_id is None and not self.exit_deadline and time.monotonic() < end:
                user_id = config.user_id_within(0.05)
        ctx = config.detect_context(with_user_id=False, user_id=user_id)
        if user_id is not None or config.optout():
            self._context = ctx
        return ctx

    def build(self, route: Route, data: Any, suffix: str = "", *, wait: bool = True) -> Breadcrumb:
        """The breadcrumb of one entry's data."""
        crumb = route.build(data, self.context(wait=wait))
        return crumb.with_suffix(suffix) if suffix else crumb

    def write_early_notes(self) -> None:
        """Let the listeners write what they noted on the application's thread."""
        with contextlib.suppress(Exception):
            self.listeners_notes()

    # --- settling -------------------------------------------------------------------

    def settle(self, entry: Entry, *, own_connection: bool = False) -> str:
        """Deliver one entry, following the policy; ``"sent"`` or the drop reason.

        During the exit, other breadcrumbs stop trying before the part of the deadline
        kept for the terminal one (their tries end by then too), so that nothing of the
        run is still on its way when the terminal breadcrumb leaves.
        """
        if config.optout():
            return "optout"
        if self.run_over() and not entry.terminal:
            return "shutdown"
        from migas_logging.worker import Filtered

        try:
            crumb = entry.crumb or self.build(
                entry.route, entry.data, entry.suffix, wait=not entry.terminal
            )
        except Filtered:
            return "filtered"
        entry.crumb = crumb
        if entry.terminal:
            self._space(crumb)
        elif self.budget is not None and getattr(entry.data, "starts_run", False):
            self._jitter(crumb)
        policy = self.policy
        while True:
            limit = self._limit(entry)
            now = time.monotonic()
            wait = policy.before_try(now, limit)
            if wait is not None:
                if wait.action == "done":
                    self.drop_queued = wait.result if wait.drop_queued else ""
                    return wait.result
                self._sleep_until(wait.at)
                continue
            if self._too_late(entry, limit, now) or (self.run_over() and not entry.terminal):
                return "shutdown"
            if self.budget is not None and not self._budget_allows(limit):
                return "rate_limited"  # at the exit: kept in the spool
            entry.attempts += 1
            outcome = self._send(crumb, entry.terminal, limit, own_connection)
            entry.outcome = outcome
            now = time.monotonic()
            if outcome.kind.value == "delivered":
                self.latency = 0.7 * self.latency + 0.3 * outcome.elapsed
            decision = policy.decide(
                outcome, entry.attempts, now, limit, timed_out_before=entry.timed_out
            )
            if maybe_stored_by(outcome):
                entry.timed_out = True
                self.last_delivery[crumb.project] = now  # it may land: space after it too
            self._tell(outcome, decision.result, entry.attempts)
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "migas breadcrumb %d (%s), try %d: %s -> %s%s",
                    entry.seq,
                    crumb.status,
                    entry.attempts,
                    outcome.kind.value if outcome.status is None else outcome.status,
                    decision.action,
                    f" ({decision.result})" if decision.result else "",
                )
            if decision.action == "done":
                if decision.result == "sent":
                    self.last_delivery[crumb.project] = now
                if decision.drop_queued:
                    self.drop_queued = decision.result
                return decision.result
            if decision.action == "retry" and self._sleep_until(decision.at):
                return decision.result

    def _jitter(self, crumb: Breadcrumb) -> None:
        """Spread the ``Started`` breadcrumbs of processes that start together (an array
        job) over a few seconds, by a delay fixed by the session id. Only while nothing
        else waits behind it and the process is not exiting: a short run must not spend
        its exit waiting (its records would be lost), it sends at once."""
        from migas_logging.budget import start_jitter

        until = time.monotonic() + start_jitter(crumb.ctx.session_id or "", _START_SPREAD)
        while time.monotonic() < until and self.idle() and not self.exit_deadline:
            self._wake.wait(min(0.05, max(0.0, until - time.monotonic())))

    def _budget_allows(self, limit: float | None) -> bool:
        """Wait for a token of the machine's budget; False when none comes by ``limit``.

        A lock that is merely busy (many processes ending at once) is not an exhausted
        budget: after 0.3 s of that, the try goes ahead rather than spend the exit.
        """
        budget = self.budget
        contended = 0.0
        while not budget.take():
            now = time.monotonic()
            wait = budget.wait_time()
            if wait <= _LOCK_BUSY:  # the file was busy, not the window full
                contended += _LOCK_BUSY
                if contended >= _CONTENTION_LIMIT:
                    return True
            at = now + max(0.05, min(wait, 60.0))
            if limit is not None and at > limit:
                return False
            if self._sleep_until(at):
                return False
        return True

    def _limit(self, entry: Entry) -> float | None:
        """The time by which this entry's tries must end (None: no exit yet)."""
        deadline = self.exit_deadline
        if not deadline or entry.terminal:
            return deadline or None
        return deadline - self.reserve() if self.expect_terminal else deadline

    def _too_late(self, entry: Entry, limit: float | None, now: float) -> bool:
        """During the exit, a try that would likely be cut short is not started: cut
        short, it may still land later (after the terminal breadcrumb, even)."""
        if limit is None:
            return False
        left = limit - now
        return left < 0.05 or (not entry.terminal and left < 1.5 * self.latency)

    def _send(
        self, crumb: Breadcrumb, terminal: bool, limit: float | None, own_connection: bool
    ) -> Outcome:
        """One try, never past ``limit`` (the transport's wall-clock deadline)."""
        if not own_connection:
            return self.transport().send(crumb, wait=terminal, deadline=limit)
        transport = self._make_transport(self.settings.timeout)  # the worker's is busy
        try:
            return transport.send(crumb, wait=terminal, deadline=limit)
        finally:
            transport.close()

    def _sleep_until(self, at: float) -> bool:
        """Sleep until ``at``; True when an exit deadline that comes first cut it short."""
        while True:
            now = time.monotonic()
            if at <= now:
                return False
            deadline = self.exit_deadline
            if deadline and at > deadline - (self.reserve() if self.expect_terminal else 0.0):
                return True
            self._wake.wait(min(at - now, 0.5))
            self._wake.clear()

    def spacing_fits(self, project: str) -> bool:
        """Whether a terminal breadcrumb sent now can leave its second after the
        project's latest delivery before the deadline (else the dashboard may show an
        earlier breadcrumb of the run as its outcome)."""
        return self._gap(project)[1]

    def _gap(self, project: str) -> tuple[float, bool]:
        """Seconds to wait before a terminal breadcrumb, and whether that is the full gap."""
        last = self.last_delivery.get(project)
        if not last:
            return 0.0, True
        now = time.monotonic()
        deadline = self.exit_deadline or now + self.settings.flush_deadline
        # kept for the terminal's own try: a few of this server's recent answers
        reserve = min(self.settings.timeout, max(0.3, 4 * self.latency))
        wanted = last + _SPACING - now
        allowed = deadline - reserve - now
        return max(0.0, min(wanted, allowed)), wanted <= allowed

    def _space(self, crumb: Breadcrumb) -> None:
        """Leave a second after the project's latest delivery, if the deadline allows."""
        gap = self._gap(crumb.project)[0]
        if gap > 0:
            time.sleep(gap)

    def _tell(self, outcome: Outcome, result: str, attempts: int) -> None:
        """Report the first outcome of each kind that a user should know of."""
        kind = outcome.kind.value
        if result == "server_refused":
            self._report(
                f"rejected:{outcome.status}",
                "the migas server refused a breadcrumb (HTTP %s: %s); breadcrumbs like it "
                "will be dropped",
                outcome.status,
                outcome.detail,
            )
        elif kind == "rate_limited":
            self._report("429", "the migas server is rate limiting this address; pausing")
        elif result == "error":
            self._report("client", "migas-logging failed to send: %s", outcome.detail)
        elif result in ("failed", "unreachable", "unconfirmed"):
            self._report(
                f"failed:{kind}",
                "migas breadcrumb not delivered after %d %s (%s)",
                attempts,
                "try" if attempts == 1 else "tries",
                outcome.detail,
            )
        if self.policy.breaker.open_until > time.monotonic():
            self._report(
                "circuit",
                "cannot reach the migas server at %s (%s); not trying for a while",
                config.display_url(self.settings.endpoint),
                outcome.detail,
            )
