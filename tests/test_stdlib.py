"""The private stdlib internal that migas_logging reads still works on this Python."""

from __future__ import annotations

import logging
import threading

from migas_logging._stdlib import logging_lock_held


class TestLoggingLockHeld:
    def test_true_inside_false_outside_and_on_other_threads(self) -> None:
        """If this fails, logging's module lock changed: update migas_logging._stdlib."""
        lock = logging._lock  # type: ignore[attr-defined]
        assert not logging_lock_held()
        seen: list[bool] = []
        with lock:
            assert logging_lock_held()
            other = threading.Thread(target=lambda: seen.append(logging_lock_held()))
            other.start()
            other.join()
        assert [False] == seen
        assert not logging_lock_held()
