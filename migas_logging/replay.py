"""The spool in the delivery path: keep what cannot get through, replay it later.

A breadcrumb that could not be delivered because the server could not be reached (no
connection, no route, a DNS failure, a timeout before anything was sent), that the
server's rate limit (or the machine's budget) still held back when the exit deadline
came, or that was still waiting, untried, when the exit deadline came (a herd of
processes ending together), is written to the spool (:mod:`migas_logging.spool`)
instead of being dropped, and counted ``dropped["spooled"]``. Not one the server
answered, even with a 5xx, and not one that may already be stored (``unconfirmed``).

Replay runs on the worker thread of a later process (or this one) that has delivered a
breadcrumb of its own, so the server answers: a few spooled breadcrumbs at a time, only
while its own queue is empty, never during the exit, within the machine's budget. The
command ``migas-logging spool send`` does the same on demand.

The machine budget (:mod:`migas_logging.budget`, a small locked file beside the spool)
is drawn on by every try of every process of this user on this machine, so that many
workers behind one address stay under the server's window.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from migas_logging._bounded import BoundedCalls, Busy
from migas_logging.budget import MachineBudget, for_server_window
from migas_logging.spool import Spool, breadcrumb_from_payload, verdict_of

if TYPE_CHECKING:
    from migas_logging.admission import RateCap
    from migas_logging.breadcrumb import Breadcrumb
    from migas_logging.delivery import Sender
    from migas_logging.worker import Entry

__all__ = ["KEPT_REASONS", "SpoolKeeper"]

from migas_logging.worker import KEPT_REASONS

_T = TypeVar("_T")

_REPLAY_BATCH = 5
_WRITE_GRACE = 0.2  # seconds of spool writing allowed past the exit deadline
_LOOK_AGAIN = 30.0  # seconds before looking at an empty (or unreachable) spool again


class SpoolKeeper:
    """The spool and the machine budget of one client.

    Args:
        directory: the spool directory (the budget file goes beside it).
        machine_rate: the machine's budget, or None.
        sender: the client's sender (its transport, context and state).
        report: reports a problem once (key, message, args).
    """

    def __init__(
        self,
        directory: str,
        machine_rate: RateCap | None,
        sender: Sender,
        report: Callable[..., None],
    ) -> None:
        self.spool = Spool(directory)
        self.budget: MachineBudget | None = None
        if machine_rate is not None:
            self.budget = for_server_window(
                Path(directory).parent / "budget", machine_rate.count, machine_rate.period
            )
        self._sender = sender
        self._report = report
        self._next_look = 0.0
        self.kept = 0
        self.replayed = 0
        self._held: list[str] = []  # written held: released at the end of the exit
        # spool work during the exit: a slow write or release still completes after the
        # exit stopped waiting for it (a held outcome must be released), so not exclusive
        self._calls = BoundedCalls("migas-spool", exclusive=False)

    def keep(self, entry: Entry, *, held: bool = False) -> bool:
        """Write an undelivered entry to the spool; True when it was kept.

        Past the exit deadline (by more than 0.2 s of writing), nothing more is written:
        the exit's bound holds, and what is left is counted as dropped. ``held``: no
        replay takes it until :meth:`release_held` (written before the rest of its run).
        """
        deadline = self._sender.exit_deadline
        if deadline and time.monotonic() > deadline + _WRITE_GRACE:
            return False
        crumb = self._crumb(entry)
        if crumb is None:
            return False
        session = crumb.ctx.session_id or ""
        if not self._put(crumb.to_payload(), session, entry.seq, entry.terminal, held):
            self._report("spool", "migas: could not write the spool (%s)", self.spool.problem)
            return False
        self.kept += 1
        return True

    def release_held(self) -> None:
        """Let replays take what :meth:`keep` wrote ``held`` (bounded during the exit)."""
        held, self._held = self._held, []
        spool = self.spool
        for name in held:
            self._bounded(functools.partial(spool.release, name), None)

    def _put(
        self, payload: dict[str, Any], session: str, seq: int, terminal: bool, held: bool
    ) -> bool:
        """Write to the spool (bounded during the exit, see :meth:`_bounded`). A write
        that ends too late is taken back: what is counted dropped is never replayed."""
        spool = self.spool

        def take_back(written: str | None) -> None:
            if written is not None:
                spool.remove(written)

        name = self._bounded(
            lambda: spool.write(payload, session=session, seq=seq, terminal=terminal, held=held),
            None,
            late=take_back,
        )
        if name is not None and held:
            self._held.append(name)
        return name is not None

    def _bounded(
        self, work: Callable[[], _T], default: _T, late: Callable[[_T], object] | None = None
    ) -> _T:
        """``work()`` on this thread; during the exit, on a helper thread waited for only
        until the deadline's grace, so that a hung file system never holds the exit
        (then ``default``, and ``late(result)`` if the work ends after all)."""
        deadline = self._sender.exit_deadline
        if not deadline:
            return work()
        timeout = deadline + _WRITE_GRACE - time.monotonic()
        try:
            return self._calls.run(work, timeout, late=late)
        except Busy:
            return default

    def keep_behind(self, entry: Entry) -> bool:
        """Spool a terminal breadcrumb that could not be its session's latest if sent now.

        When the spool holds others of its session: sent now, it would be stored before
        them, and whichever of them is replayed last would hide the run's outcome (replay
        sends a session's breadcrumbs in order, the terminal one last). When the exit
        deadline leaves no time for its second after the latest delivery: sent in the
        same second, its order on the server is undefined. True when it was kept.
        """
        crumb = self._crumb(entry)
        if crumb is None:
            return False
        session = crumb.ctx.session_id or ""
        spool = self.spool
        # a spool that cannot say in time holds nothing: the outcome goes out live
        if self._sender.spacing_fits(crumb.project) and not self._bounded(
            lambda: spool.holds(session), False
        ):
            return False
        return self.keep(entry)

    def _crumb(self, entry: Entry) -> Breadcrumb | None:
        """The entry's breadcrumb, built now if its try never came (None if it cannot be)."""
        if entry.crumb is None:
            try:
                entry.crumb = self._sender.build(entry.route, entry.data, entry.suffix, wait=False)
            except Exception:  # the application's hook dropped it (Filtered), say
                return None
        return entry.crumb

    def replay(self) -> bool:
        """Send a few spooled breadcrumbs if the server answers; True when more wait."""
        sender = self._sender
        now = time.monotonic()
        if now < self._next_look or sender.exit_deadline or not sender.last_delivery:
            return False
        if sender.policy.wait_until() > now:  # a 429 window or an open circuit
            return False
        result = self.spool.replay(
            self._send_one, deadline=now + sender.settings.timeout, max_items=_REPLAY_BATCH
        )
        self.replayed += result.sent
        if result.left and result.sent:
            return True
        self._next_look = now + _LOOK_AGAIN
        return False

    def _send_one(self, payload: dict[str, Any], terminal: bool) -> str:
        if self.budget is not None and not self.budget.take():
            return "retry"
        sender = self._sender
        outcome = sender.transport().send(
            breadcrumb_from_payload(payload),
            wait=terminal,
            deadline=time.monotonic() + sender.settings.timeout,
        )
        return verdict_of(outcome)
