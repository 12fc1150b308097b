"""The delivery policy on a fake clock: backoff, 429 pauses, the breaker, exit deadlines."""

from __future__ import annotations

from migas_logging.policy import CircuitBreaker, DeliveryPolicy
from migas_logging.transport import Outcome, OutcomeKind


def outcome(kind: OutcomeKind, **kwargs: object) -> Outcome:
    return Outcome(kind, **kwargs)  # type: ignore[arg-type]


def policy(**kwargs: object) -> DeliveryPolicy:
    return DeliveryPolicy(rand=lambda: 0.5, **kwargs)  # type: ignore[arg-type]


class TestDecisions:
    def test_delivered_refused_and_client_error_are_done(self) -> None:
        p = policy()
        assert ("done", "sent") == _pair(p.decide(outcome(OutcomeKind.DELIVERED), 1, 0.0))
        assert ("done", "server_refused") == _pair(
            p.decide(outcome(OutcomeKind.REJECTED, status=400), 1, 0.0)
        )
        assert ("done", "error") == _pair(p.decide(outcome(OutcomeKind.CLIENT_ERROR), 1, 0.0))

    def test_backoff_doubles_then_gives_up(self) -> None:
        """0.5 s, 1 s, 2 s (jitter fixed at x1), then failed after the retries."""
        p = policy(retries=3)
        server_error = outcome(OutcomeKind.SERVER_ERROR, status=500)
        ats = [p.decide(server_error, n, 100.0).at for n in (1, 2, 3)]
        assert [100.5, 101.0, 102.0] == ats
        assert ("done", "failed") == _pair(p.decide(server_error, 4, 100.0))

    def test_timeouts_end_unconfirmed_and_mark_later_success(self) -> None:
        """A timed-out try may have been stored: giving up says unconfirmed, not failed."""
        p = policy(retries=1)
        timeout = outcome(OutcomeKind.TIMEOUT)
        assert "retry" == p.decide(timeout, 1, 0.0).action
        assert ("done", "unconfirmed") == _pair(p.decide(timeout, 2, 0.0))
        error = outcome(OutcomeKind.SERVER_ERROR, status=502)
        assert ("done", "unconfirmed") == _pair(p.decide(error, 2, 0.0, timed_out_before=True))

    def test_a_timeout_that_sent_nothing_is_unreachable(self) -> None:
        """A connect timeout: nothing was sent, so nothing can be stored (not
        unconfirmed); the server could not be reached (so the spool may keep it)."""
        p = policy(retries=0)
        unsent = outcome(OutcomeKind.TIMEOUT, unsent=True)
        assert ("done", "unreachable") == _pair(p.decide(unsent, 1, 0.0))

    def test_429_pauses_for_the_window_and_retry_after(self) -> None:
        p = policy(rate_window=60.0)
        assert ("pause", 60.0) == _at(p.decide(outcome(OutcomeKind.RATE_LIMITED), 1, 0.0))
        p = policy()
        d = p.decide(outcome(OutcomeKind.RATE_LIMITED, retry_after=0.0), 1, 10.0)
        assert ("pause", 11.0) == _at(d)  # never less than 1 s
        assert p.before_try(10.5, None) is not None
        assert p.before_try(11.0, None) is None

    def test_exit_deadline_turns_waits_into_drops(self) -> None:
        """At exit: a 429 window past the deadline is rate_limited, no listener is
        unreachable (for the queue too), a retry past it is failed."""
        p = policy()
        d = p.decide(outcome(OutcomeKind.RATE_LIMITED), 1, 0.0, deadline=2.0)
        assert ("done", "rate_limited", True) == (d.action, d.result, d.drop_queued)
        d = policy().decide(outcome(OutcomeKind.UNREACHABLE), 1, 0.0, deadline=2.0)
        assert ("done", "unreachable", True) == (d.action, d.result, d.drop_queued)
        d = policy().decide(outcome(OutcomeKind.SERVER_ERROR), 3, 0.0, deadline=1.0)
        assert ("done", "failed") == _pair(d)


class TestCircuitBreaker:
    def test_opens_after_three_failures_doubles_and_closes_on_success(self) -> None:
        b = CircuitBreaker(30.0)
        assert not b.failure(0.0)
        assert not b.failure(0.0)
        assert b.failure(0.0)
        assert 30.0 == b.open_until
        assert b.failure(40.0)
        assert 100.0 == b.open_until
        b.success()
        assert 0.0 == b.open_until
        assert 0 == b.failures

    def test_open_breaker_holds_tries_and_drops_at_exit(self) -> None:
        p = policy(circuit_cooldown=30.0)
        for n in (1, 2, 3):
            p.decide(outcome(OutcomeKind.UNREACHABLE), n, 0.0)
        wait = p.before_try(1.0, None)
        assert wait is not None
        assert ("pause", 30.0) == _at(wait)
        done = p.before_try(1.0, 5.0)
        assert done is not None
        assert ("done", "unreachable") == _pair(done)

    def test_capped_at_five_minutes(self) -> None:
        b = CircuitBreaker(30.0)
        for _ in range(20):
            b.failure(0.0)
        assert 300.0 == b.cooldown


def _pair(d: object) -> tuple[str, str]:
    return (d.action, d.result)  # type: ignore[attr-defined]


def _at(d: object) -> tuple[str, float]:
    return (d.action, d.at)  # type: ignore[attr-defined]
