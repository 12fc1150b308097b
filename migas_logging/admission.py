"""Admission: fold repeats, apply the rate cap and the queue bound.

Pure logic: no lock, no thread, no clock of its own (the caller passes ``now`` and holds
its lock). That is what lets the rules be tested on a fake clock in microseconds.

Folding: records with equal keys inside ``fold_window`` seconds count as one breadcrumb;
when the window closes (at the next equal record, at a sweep, or at a flush) one summary
breadcrumb carries the count and how long the repeats took. The table holds at most
``max_folds`` windows, in order of window start, so a sweep stops at the first open one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Admission", "Fold", "RateCap"]

MAX_FOLDS = 1024


class RateCap:
    """A token bucket: at most ``count`` breadcrumbs per ``period`` seconds, in bursts.

    Args:
        count: breadcrumbs per period (also the burst size).
        period: the period, seconds.
        now: the clock's value at creation (the bucket starts full).

    :meth:`parse` accepts ``"30/60"``, ``"30/min"``, ``(30, 60)``, ``[30, 60]`` and
    ``None`` (no cap), so that ``dictConfig`` and ini files can give it as plain text.
    """

    __slots__ = ("_last", "_tokens", "count", "period")

    def __init__(self, count: int, period: float, now: float = 0.0) -> None:
        self.count = count
        self.period = period
        self._tokens = float(count)
        self._last = now

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
            if not (1 <= count <= 10**9) or not (0 < period <= 10**9):
                raise ValueError(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigurationError(
                f"rate_limit {value!r} is not a count per period; use for example '30/60' "
                f"(30 breadcrumbs per 60 s), '10/min', (30, 60), or None for no cap"
            ) from None
        import time

        return cls(count, period, time.monotonic())

    def take(self, now: float) -> bool:
        """Take one token; False when the cap is reached."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.count), self._tokens + elapsed * self.count / self.period)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def same_as(self, other: RateCap | None) -> bool:
        """True when ``other`` is the same cap (count and period)."""
        return other is not None and (self.count, self.period) == (other.count, other.period)

    def __repr__(self) -> str:
        return f"RateCap({self.count}/{self.period:g}s)"


class Fold:
    """A window in which repeats of one record are counted instead of sent."""

    __slots__ = ("data", "last", "repeats", "route", "start")

    def __init__(self, start: float, route: Any, data: Any) -> None:
        self.start = start
        self.last = start
        self.route = route
        self.data = data
        self.repeats = 0

    def take_summary(self) -> tuple[int, float]:
        """The repeats counted so far and the seconds they took; counting restarts."""
        repeats, self.repeats = self.repeats, 0
        return repeats, self.last - self.start


class Admission:
    """Decides, on the application's thread, what becomes of one record.

    Args:
        fold_window: seconds in which equal keys fold (0: never).
        rate_cap: the per-process cap, or None.
        queue_size: the most breadcrumbs waiting at once.
        max_folds: the most open fold windows.

    :meth:`admit` returns ``""`` (queue it), ``"folded"``, ``"rate_cap"`` or
    ``"queue_full"``. Windows it closes on the way are appended to :attr:`closed`, for the
    caller to turn into summaries with :meth:`summary_admitted`.
    """

    __slots__ = ("closed", "fold_window", "folds", "max_folds", "queue_size", "rate_cap")

    def __init__(
        self,
        *,
        fold_window: float,
        rate_cap: RateCap | None,
        queue_size: int,
        max_folds: int = MAX_FOLDS,
    ) -> None:
        self.fold_window = fold_window
        self.rate_cap = rate_cap
        self.queue_size = queue_size
        self.max_folds = max_folds
        self.folds: dict[Any, Fold] = {}
        self.closed: list[Fold] = []

    def admit(
        self, key: Any, route: Any, data: Any, now: float, pending: int, *, privileged: bool
    ) -> str:
        """Fold, cap or accept one record (see the class docstring).

        A ``privileged`` record (the terminal breadcrumb) passes the cap and the bound.
        """
        if key is not None and self.fold_window > 0:
            folds = self.folds
            fold = folds.get(key)
            if fold is not None and now - fold.start < self.fold_window:
                fold.repeats += 1
                fold.last = now
                return "folded"
            if fold is not None:  # its window closed: out with its count
                del folds[key]
                if fold.repeats:
                    self.closed.append(fold)
            if len(folds) >= self.max_folds:
                oldest = folds.pop(next(iter(folds)))
                if oldest.repeats:
                    self.closed.append(oldest)
            folds[key] = Fold(now, route, data)  # at the end: the table stays in start order
        if privileged:
            return ""
        if self.rate_cap is not None and not self.rate_cap.take(now):
            return "rate_cap"
        if pending >= self.queue_size:
            return "queue_full"
        return ""

    def sweep(self, now: float, *, flush_all: bool = False) -> None:
        """Close expired windows into :attr:`closed`.

        ``flush_all`` hands over every open window's count now and keeps the windows open.
        """
        folds = self.folds
        if flush_all:
            self.closed.extend(fold for fold in folds.values() if fold.repeats)
            return
        while folds:
            key = next(iter(folds))
            fold = folds[key]
            if now - fold.start < self.fold_window:
                return
            del folds[key]
            if fold.repeats:
                self.closed.append(fold)

    def summary_admitted(self, now: float, pending: int) -> bool:
        """Whether a summary may be queued (it obeys the cap and the bound too)."""
        if pending >= self.queue_size:
            return False
        return self.rate_cap is None or self.rate_cap.take(now)

    def take_closed(self) -> list[Fold]:
        """The windows closed since the last call."""
        closed, self.closed = self.closed, []
        return closed

    def clear(self) -> None:
        """Forget every window (a forked child)."""
        self.folds = {}
        self.closed = []


def summary_suffix(repeats: int, seconds: float) -> str:
    """`` [repeated 3 more times in 12 s]``: the repeats and the time they really took."""
    times = "time" if repeats == 1 else "times"
    return f" [repeated {repeats} more {times} in {max(0, round(seconds))} s]"
