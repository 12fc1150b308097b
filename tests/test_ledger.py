"""The ledger: every record ends in exactly one count; listeners hear of each."""

from __future__ import annotations

from typing import Any

from migas_logging.ledger import Ledger, Stats


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, str]] = []

    def settled(self, entry: Any, result: str) -> None:
        self.seen.append(("settled", entry, result))

    def refused_early(self, entry: Any, reason: str) -> None:
        self.seen.append(("early", entry, reason))


class Broken:
    def settled(self, entry: Any, result: str) -> None:
        raise OSError("disk full")

    def refused_early(self, entry: Any, reason: str) -> None:
        raise OSError("disk full")


class TestLedger:
    def test_books_balance(self) -> None:
        """emitted == sent + folded + dropped once everything is settled."""
        ledger, stats = Ledger(), Stats()
        for result in ("", "", "folded", "rate_cap", ""):
            ledger.admitted(stats, result)
        ledger.settle(stats, "sent")
        ledger.settle(stats, "sent", possible_duplicate=True)
        assert 1 == stats.pending
        ledger.settle(stats, "unreachable")
        ledger.settle(stats, "sent", summary=True)
        d = stats.as_dict()
        assert (5, 2, 1, 1, 1, 0) == (
            d["emitted"],
            d["sent"],
            d["folded"],
            d["summaries"],
            d["possible_duplicates"],
            d["pending"],
        )
        assert {"rate_cap": 1, "unreachable": 1} == d["dropped"]
        assert stats.as_dict() == {**ledger.total.as_dict()}

    def test_listeners_hear_and_a_broken_one_stops_nobody(self) -> None:
        ledger, rec = Ledger(), Recorder()
        ledger.listeners[:] = [Broken(), rec]
        ledger.notify("e1", "sent")
        ledger.notify_early("e2", "queue_full")
        ledger.notify("e3", "duplicate")  # says nothing of a breadcrumb: not audited
        assert [("settled", "e1", "sent"), ("early", "e2", "queue_full")] == rec.seen

    def test_reset(self) -> None:
        ledger = Ledger()
        ledger.admitted(ledger.total, "")
        ledger.reset()
        assert 0 == ledger.total.emitted
