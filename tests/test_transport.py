"""Transport: every answer of a migas server maps to an outcome, over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from migas_logging.breadcrumb import Breadcrumb, Context
from migas_logging.collector import LocalCollector, free_port
from migas_logging.transport import USER_AGENT, OutcomeKind, Transport

PROJECT = "nipreps/migas-logging"


def crumb(**proc: str) -> Breadcrumb:
    ctx = Context(user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), platform="linux")
    return Breadcrumb(
        project=PROJECT, project_version="1.0.0", language_version="3.11.7", ctx=ctx, **proc
    )  # type: ignore[arg-type]


@pytest.fixture
def collector() -> LocalCollector:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c  # type: ignore[misc]


class TestDelivery:
    def test_202_is_delivered_and_stored(self, collector: LocalCollector) -> None:
        """A valid breadcrumb is delivered and stored whole."""
        t = Transport(collector.url, 2)
        outcome = t.send(crumb(status="F", status_desc="x", error_type="E", error_desc="d"))
        assert OutcomeKind.DELIVERED == outcome.kind
        assert 202 == outcome.status
        rows = collector.breadcrumbs()
        assert 1 == len(rows)
        assert ("F", "x", "E", "d") == (
            rows[0]["status"],
            rows[0]["status_desc"],
            rows[0]["error_type"],
            rows[0]["error_desc"],
        )

    def test_wait_true_gives_200(self, collector: LocalCollector) -> None:
        """?wait=true answers after ingestion with 200."""
        outcome = Transport(collector.url, 2).send(crumb(), wait=True)
        assert (OutcomeKind.DELIVERED, 200) == (outcome.kind, outcome.status)

    def test_headers(self, collector: LocalCollector) -> None:
        """User-Agent and JSON content type are sent."""
        Transport(collector.url, 2).send(crumb())
        request = collector.requests()[-1]
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert USER_AGENT == headers["user-agent"]
        assert headers["content-type"].startswith("application/json")

    def test_keep_alive_reuses_one_connection(self, collector: LocalCollector) -> None:
        """Consecutive sends share one TCP connection."""
        t = Transport(collector.url, 2)
        for _ in range(5):
            assert t.send(crumb()).ok
        connections = {(r.connection, r.client_port) for r in collector.requests()}
        assert 1 == len(connections)


class TestRefusals:
    def test_unregistered_project_is_rejected(self, collector: LocalCollector) -> None:
        """400 Project is not registered."""
        b = Breadcrumb(project="someone/else", project_version="1", language_version="3")
        outcome = Transport(collector.url, 2).send(b)
        assert (OutcomeKind.REJECTED, 400) == (outcome.kind, outcome.status)
        assert "not registered" in outcome.detail

    def test_413_with_a_smaller_limit_refits_and_delivers(self) -> None:
        """A deployment with a smaller size limit gets a shortened breadcrumb, not none."""
        with LocalCollector(register=(PROJECT,), max_request_size=800) as c:
            outcome = Transport(c.url, 2).send(crumb(status_desc="x" * 2000))
            assert outcome.ok, outcome
            stored = c.breadcrumbs()[0]["status_desc"]
            assert stored.startswith("xxx")
            assert "cut" in stored

    def test_429_is_rate_limited(self) -> None:
        """429 maps to RATE_LIMITED (no Retry-After: the caller uses the window)."""
        with LocalCollector(register=(PROJECT,), rate_limit=(1, 60)) as c:
            t = Transport(c.url, 2)
            assert t.send(crumb()).ok
            outcome = t.send(crumb())
            assert (OutcomeKind.RATE_LIMITED, 429) == (outcome.kind, outcome.status)
            assert outcome.retry_after is None
            assert not outcome.retryable

    @pytest.mark.parametrize("status", [500, 503])
    def test_5xx_is_retryable(self, collector: LocalCollector, status: int) -> None:
        """5xx maps to SERVER_ERROR, which is retryable."""
        collector.fault("status", status=status)
        outcome = Transport(collector.url, 2).send(crumb())
        assert (OutcomeKind.SERVER_ERROR, status) == (outcome.kind, outcome.status)
        assert outcome.retryable

    @pytest.mark.parametrize("status", [400, 413, 422])
    def test_4xx_is_rejected(self, collector: LocalCollector, status: int) -> None:
        """Other 4xx are permanent refusals."""
        collector.fault("status", status=status)
        outcome = Transport(collector.url, 2).send(crumb())
        assert OutcomeKind.REJECTED == outcome.kind
        assert not outcome.retryable

    def test_garbage_answer(self, collector: LocalCollector) -> None:
        """A 2xx that is not JSON is a bad answer, not a delivery."""
        collector.fault("garbage")
        outcome = Transport(collector.url, 2).send(crumb())
        assert OutcomeKind.BAD_ANSWER == outcome.kind

    def test_connection_closed_mid_answer(self, collector: LocalCollector) -> None:
        """A connection that breaks during the answer is a retryable server error."""
        collector.fault("close")
        outcome = Transport(collector.url, 2).send(crumb())
        assert outcome.kind in (OutcomeKind.SERVER_ERROR, OutcomeKind.BAD_ANSWER)
        assert not outcome.ok

    def test_hanging_server_times_out(self, collector: LocalCollector) -> None:
        """A server that never answers costs the read timeout, then TIMEOUT."""
        collector.fault("hang")
        start = time.monotonic()
        outcome = Transport(collector.url, 0.3).send(crumb())
        assert OutcomeKind.TIMEOUT == outcome.kind
        assert time.monotonic() - start < 3

    def test_a_huge_timeout_still_delivers(self, collector: LocalCollector) -> None:
        """MIGAS_TIMEOUT=1e15 is a valid (if silly) value: waits are capped, not overflowed."""
        outcome = Transport(collector.url, 1e15).send(crumb())
        assert outcome.ok, outcome

    def test_a_call_waiting_for_another_keeps_its_own_bound(
        self, collector: LocalCollector
    ) -> None:
        """Calls on one transport are serialised; the wait counts against the bound."""
        collector.fault("hang")
        t = Transport(collector.url, 1.0)
        first = threading.Thread(target=t.send, args=(crumb(),))
        first.start()
        time.sleep(0.2)  # the first call holds the transport
        start = time.monotonic()
        outcome = t.send(crumb(), deadline=time.monotonic() + 0.3)
        elapsed = time.monotonic() - start
        first.join(10)
        assert OutcomeKind.TIMEOUT is outcome.kind
        assert "not sent" in outcome.detail
        assert elapsed < 0.3 + 2

    def test_refused_connection(self) -> None:
        """Nothing listening: UNREACHABLE, at once."""
        outcome = Transport(f"http://127.0.0.1:{free_port()}", 2).send(crumb())
        assert OutcomeKind.UNREACHABLE == outcome.kind
        assert outcome.retryable


class TestGraphQLFallback:
    def test_older_server_gets_the_mutation(self) -> None:
        """A 404 on /api/breadcrumb switches to GraphQL add_breadcrumb, and stays there."""
        with LocalCollector(register=(PROJECT,), rest=False) as c:
            t = Transport(c.url, 2)
            first = t.send(crumb(status="F", error_type="E", error_desc="d" * 3000))
            assert first.ok, first
            assert "graphql" == first.via
            assert t.uses_graphql
            second = t.send(crumb())
            assert "graphql" == second.via
            rows = c.breadcrumbs()
            assert 2 == len(rows)
            assert all(r["via"] == "graphql" for r in rows)
            assert all(len(r.body) <= 2500 for r in c.requests())
            paths = [r.path.split("?")[0] for r in c.requests()]
            assert 1 == paths.count("/api/breadcrumb")

    def test_mutation_refusal_is_rejected(self) -> None:
        """success: false from the mutation is a refusal with the server's message."""
        with LocalCollector(register=(PROJECT,), rest=False) as c:
            b = Breadcrumb(project="someone/else", project_version="1", language_version="3")
            outcome = Transport(c.url, 2).send(b)
            assert OutcomeKind.REJECTED == outcome.kind
            assert "not yet registered" in outcome.detail


class TestFork:
    def test_a_first_request_imports_nothing(self, collector: LocalCollector) -> None:
        """Every import of a request happens when the transport is made.

        A fork during an import (``requests`` imports ``netrc`` on a first request)
        leaves that module's lock held in the child, whose own first request then
        hangs; the worker does not fork while it makes its transport.
        """
        code = textwrap.dedent(
            f"""
            import sys
            from migas_logging.transport import Transport
            t = Transport({collector.url!r}, 5)
            before = set(sys.modules)
            assert t.graphql("query {{ __typename }}").ok
            print(sorted(set(sys.modules) - before))
            """
        )
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert "[]" == run.stdout.strip(), run.stderr
