"""The ledger: what became of every record, counted by reason, with listeners.

Every record that reaches the client (from a handler, the structlog processor or the
crash hook, ``Started`` and the terminal breadcrumb included) is counted once in
``emitted`` and ends in exactly one of ``sent``, ``folded`` or ``dropped[reason]``:

| reason | when |
| --- | --- |
| ``queue_full`` | the bounded queue was full (the newest record is dropped) |
| ``rate_cap`` | over the per-process rate cap |
| ``server_refused`` | the server refused the breadcrumb for good (400, 413, 422) |
| ``rate_limited`` | the server's 429 window outlasted the flush deadline at exit |
| ``failed`` | 5xx or broken answers, after the bounded retries |
| ``unconfirmed`` | tries timed out: the server may have stored it, unconfirmed |
| ``unreachable`` | no connection (the server is down) when the deadline came |
| ``spooled`` | not delivered for want of a connection (or of the rate window at exit): kept |
| ``shutdown`` | still queued when the exit deadline passed, or logged after the run ended |
| ``optout`` | ``MIGAS_OPTOUT`` is set |
| ``closed`` | the handler (or the client) was already closed |
| ``duplicate`` | the structlog processor (or the crash hook) already sent this event |
| ``filtered`` | the application's ``before_send`` hook dropped it |
| ``reentrant`` | logged by a signal handler that interrupted this package's own lock |
| ``error`` | an internal error in this package (reported once on its own logger) |

``possible_duplicates`` counts breadcrumbs that were delivered after an earlier try timed
out: the server may have stored that earlier try too (delivery is at least once).

The ledger only counts; what else must hear of a settled breadcrumb (the audit trail)
subscribes as a listener and runs on the worker's thread.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

__all__ = ["DROP_REASONS", "Ledger", "Listener", "Stats"]

DROP_REASONS = (
    "queue_full",
    "rate_cap",
    "server_refused",
    "rate_limited",
    "failed",
    "unconfirmed",
    "unreachable",
    "spooled",
    "shutdown",
    "optout",
    "closed",
    "duplicate",
    "filtered",
    "reentrant",
    "error",
)

#: Reasons that say nothing about a breadcrumb (it was never made): not audited.
UNAUDITED = frozenset({"optout", "duplicate", "reentrant", "filtered"})


class Stats:
    """What became of the records of one handler (or of the whole process).

    After a flush, ``emitted == sent + folded + sum(dropped.values()) + pending`` with
    ``pending == 0``. ``summaries`` counts the extra breadcrumbs that carried folded
    repeats' counts; ``possible_duplicates`` the sent breadcrumbs the server may hold twice.
    """

    __slots__ = (
        "__weakref__",
        "dropped",
        "emitted",
        "folded",
        "possible_duplicates",
        "sent",
        "summaries",
    )

    def __init__(self) -> None:
        self.emitted = 0
        self.sent = 0
        self.folded = 0
        self.summaries = 0
        self.possible_duplicates = 0
        self.dropped: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Records accepted and not yet sent, folded or dropped."""
        return self.emitted - self.sent - self.folded - sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        """A snapshot of the counts (``dropped`` by reason, only reasons that occurred)."""
        dropped = {k: v for k, v in self.dropped.copy().items() if v}
        return {
            "emitted": self.emitted,
            "sent": self.sent,
            "folded": self.folded,
            "summaries": self.summaries,
            "possible_duplicates": self.possible_duplicates,
            "dropped": dropped,
            "pending": self.emitted - self.sent - self.folded - sum(dropped.values()),
        }

    def reset(self) -> None:
        """Start from zero (a forked child's counts are its own)."""
        self.emitted = self.sent = self.folded = self.summaries = self.possible_duplicates = 0
        self.dropped = Counter()

    def __repr__(self) -> str:
        return f"Stats({self.as_dict()})"


class Listener(Protocol):
    """Hears of every settled breadcrumb, on the worker's thread."""

    def settled(self, entry: Any, result: str) -> None:
        """``entry`` was settled: ``result`` is ``"sent"`` or a drop reason."""

    def refused_early(self, entry: Any, reason: str) -> None:
        """``entry`` was dropped on the application's thread (queue full, rate cap)."""


class Ledger:
    """The counts of one process, in total and per route.

    The caller holds the client's lock around :meth:`admitted`; :meth:`settle` runs on
    the worker. Counting is inline dictionary arithmetic with no call that can fail, so a
    record logged at the recursion limit is still counted exactly once.
    """

    __slots__ = ("listeners", "total")

    def __init__(self) -> None:
        self.total = Stats()
        self.listeners: list[Listener] = []

    def admitted(self, stats: Stats, result: str) -> None:
        """Count one record as it enters: ``""`` (queued), ``"folded"`` or a drop reason."""
        total = self.total
        stats.emitted += 1
        total.emitted += 1
        if not result:
            return
        if result == "folded":
            stats.folded += 1
            total.folded += 1
            return
        dropped = stats.dropped
        dropped[result] = dropped.get(result, 0) + 1
        dropped = total.dropped
        dropped[result] = dropped.get(result, 0) + 1

    def settle(
        self, stats: Stats, result: str, *, summary: bool = False, possible_duplicate: bool = False
    ) -> None:
        """Count how a queued breadcrumb ended: ``"sent"`` or a drop reason.

        A summary carries no record of its own: only its delivery is counted.
        """
        total = self.total
        if summary:
            if result == "sent":
                stats.summaries += 1
                total.summaries += 1
            return
        if result == "sent":
            stats.sent += 1
            total.sent += 1
            if possible_duplicate:
                stats.possible_duplicates += 1
                total.possible_duplicates += 1
            return
        dropped = stats.dropped
        dropped[result] = dropped.get(result, 0) + 1
        dropped = total.dropped
        dropped[result] = dropped.get(result, 0) + 1

    def notify(self, entry: Any, result: str) -> None:
        """Tell the listeners (worker thread); a failing listener never stops the others."""
        self._tell("settled", entry, result)

    def notify_early(self, entry: Any, reason: str) -> None:
        """Tell the listeners of a drop decided on the application's thread."""
        self._tell("refused_early", entry, reason)

    def _tell(self, method: str, entry: Any, result: str) -> None:
        if result in UNAUDITED:
            return
        for listener in self.listeners:
            try:
                getattr(listener, method)(entry, result)
            except Exception:
                pass

    def reset(self) -> None:
        """Forget every count (a forked child)."""
        self.total.reset()
