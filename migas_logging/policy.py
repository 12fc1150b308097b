"""The delivery policy: an outcome in, a decision out.

Pure logic with an injected random source; the caller passes the clock's ``now`` and
the deadline. The worker asks after every try; the policy answers one of:

- ``done`` with a result: ``"sent"`` or the drop reason (see :mod:`migas_logging.ledger`);
- ``retry`` at a time: 5xx, timeouts, no connection and broken answers, with exponential
  backoff (0.5 s doubling, up to 30 s) and jitter (×0.5 to ×1.5), at most ``retries`` times;
- ``pause`` until a time: a ``429`` pauses all sending for the server's window (60 s, or
  ``Retry-After``; never less than 1 s) without retrying in between, since rejected
  requests count against the window.

The circuit breaker: three connection failures in a row open it for 30 s (doubling up to
5 minutes while failures go on); a delivery closes it. While it is open nothing is tried.

With a deadline (the process is exiting), a decision that would land after it becomes
``done`` at once: ``rate_limited`` for a 429 window, ``unreachable`` when nothing
listens, ``failed`` or ``unconfirmed`` for the rest.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from migas_logging.transport import Outcome, OutcomeKind

__all__ = ["CircuitBreaker", "Decision", "DeliveryPolicy"]

Action = Literal["done", "retry", "pause"]


@dataclass(frozen=True)
class Decision:
    """What to do after one try."""

    action: Action
    result: str = ""
    """For ``done``: ``"sent"`` or the drop reason; for ``retry``: the reason if the
    retry never comes (the exit deadline passes first)."""
    at: float = 0.0
    """For ``retry`` and ``pause``: when (the caller's clock)."""
    drop_queued: bool = False
    """For ``done`` at exit: what waits behind will not get through either."""


def maybe_stored_by(outcome: Outcome) -> bool:
    """True when the try timed out after the request went out: the server may have
    stored it. A connect timeout sent nothing."""
    return outcome.kind is OutcomeKind.TIMEOUT and not outcome.unsent


class CircuitBreaker:
    """Stops trying after repeated connection failures (see the module docstring)."""

    __slots__ = (
        "cooldown",
        "failures",
        "first_cooldown",
        "max_cooldown",
        "open_until",
        "threshold",
    )

    def __init__(
        self, cooldown: float = 30.0, *, max_cooldown: float = 300.0, threshold: int = 3
    ) -> None:
        self.first_cooldown = cooldown
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.threshold = threshold
        self.failures = 0
        self.open_until = 0.0

    def success(self) -> None:
        """A delivery: close the breaker and forget the failures."""
        self.failures = 0
        self.cooldown = self.first_cooldown
        self.open_until = 0.0

    def failure(self, now: float) -> bool:
        """A connection failure; True when it opened the breaker."""
        self.failures += 1
        if self.failures < self.threshold:
            return False
        self.open_until = now + self.cooldown
        self.cooldown = min(self.cooldown * 2, self.max_cooldown)
        return True


class DeliveryPolicy:
    """Decides after each try (see the module docstring).

    Args:
        retries: extra tries after a 5xx, a timeout or no connection.
        rate_window: seconds to pause after a 429 without ``Retry-After``.
        circuit_cooldown: seconds the breaker stays open at first.
        rand: a random source in [0, 1) for the jitter (tests give a fixed one).
    """

    def __init__(
        self,
        *,
        retries: int = 3,
        rate_window: float = 60.0,
        circuit_cooldown: float = 30.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.retries = retries
        self.rate_window = rate_window
        self.breaker = CircuitBreaker(circuit_cooldown)
        self.paused_until = 0.0
        self.pause_reason = ""
        self._rand = rand

    def wait_until(self) -> float:
        """Nothing may be tried before this time (a 429 window or an open breaker)."""
        return max(self.paused_until, self.breaker.open_until)

    def before_try(self, now: float, deadline: float | None) -> Decision | None:
        """None to go ahead now; else a pause, or ``done`` when it outlasts ``deadline``."""
        until = self.wait_until()
        if until <= now:
            return None
        if deadline is not None and until > deadline:
            reason = "rate_limited" if until == self.paused_until else "unreachable"
            return Decision("done", reason, drop_queued=True)
        return Decision("pause", at=until)

    def decide(
        self,
        outcome: Outcome,
        attempts: int,
        now: float,
        deadline: float | None = None,
        *,
        timed_out_before: bool = False,
    ) -> Decision:
        """The decision after try number ``attempts`` ended with ``outcome``.

        ``timed_out_before``: an earlier try of this breadcrumb timed out after it was
        sent, so the server may already hold it.
        """
        kind = outcome.kind
        if kind is OutcomeKind.DELIVERED:
            self.breaker.success()
            return Decision("done", "sent")
        if kind is OutcomeKind.REJECTED:
            return Decision("done", "server_refused")
        if kind is OutcomeKind.CLIENT_ERROR:
            return Decision("done", "error")
        if kind is OutcomeKind.RATE_LIMITED:
            window = outcome.retry_after if outcome.retry_after is not None else self.rate_window
            until = now + max(window, 1.0)  # "Retry-After: 0" must not become a resend loop
            self.paused_until = max(self.paused_until, until)
            self.pause_reason = "429"
            if deadline is not None and until > deadline:
                return Decision("done", "rate_limited", drop_queued=True)
            return Decision("pause", at=until)
        # 5xx, timeout, no connection, a broken answer: bounded retries
        # no connection, or a timeout that sent nothing: the server could not be reached
        unreachable = kind is OutcomeKind.UNREACHABLE or (
            kind is OutcomeKind.TIMEOUT and outcome.unsent
        )
        if unreachable or kind is OutcomeKind.TIMEOUT:
            self.breaker.failure(now)
        else:
            self.breaker.failures = 0  # the server answered: the connection works
        maybe_stored = timed_out_before or maybe_stored_by(outcome)
        given_up = "unreachable" if unreachable and not maybe_stored else "failed"
        if maybe_stored:
            given_up = "unconfirmed"
        if attempts > self.retries:
            return Decision("done", given_up)
        if deadline is not None and unreachable:
            # exiting and nothing listens: the next second will not change that, for this
            # breadcrumb or for those queued behind it
            return Decision("done", given_up, drop_queued=True)
        delay = min(0.5 * 2 ** (attempts - 1), 30.0) * (0.5 + self._rand())
        at = max(now + delay, self.breaker.open_until)
        if deadline is not None and at > deadline:
            return Decision("done", given_up)
        return Decision("retry", given_up, at=at)
