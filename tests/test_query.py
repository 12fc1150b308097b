"""check_project and get_usage over real HTTP to the local collector."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from migas_logging import query
from migas_logging.breadcrumb import Breadcrumb, Context
from migas_logging.collector import LocalCollector, free_port
from migas_logging.exceptions import (
    ConfigurationError,
    MigasConnectionError,
    MigasGraphQLError,
    MigasHTTPError,
    MigasRateLimitedError,
    MigasResponseError,
    MigasTimeoutError,
    TelemetryDisabledError,
)
from migas_logging.transport import Transport

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> LocalCollector:
    with LocalCollector(
        register=(PROJECT,), latest={PROJECT: "1.4.0"}, bad_versions={PROJECT: ["1.0.1"]}
    ) as c:
        yield c  # type: ignore[misc]


class TestCheckProject:
    def test_shape_and_values(self, collector: LocalCollector) -> None:
        """The official client's shape: success, flagged, latest, message."""
        result = query.check_project(PROJECT, "1.0.0", endpoint=collector.url)
        assert {"success": True, "flagged": False, "latest": "1.4.0", "message": ""} == result

    def test_flagged_version(self, collector: LocalCollector) -> None:
        """A version in bad_versions is flagged."""
        assert query.check_project(PROJECT, "1.0.1", endpoint=collector.url)["flagged"]

    def test_user_input_travels_as_variables(self, collector: LocalCollector) -> None:
        """A hostile version string cannot change the query: it is a variable."""
        hostile = '1") { __typename } #'
        result = query.check_project(PROJECT, hostile, endpoint=collector.url)
        assert result["success"]
        body = collector.requests()[-1].body.decode()
        assert "__typename" not in body.split('"variables"')[0]

    def test_down_server(self) -> None:
        """Refused: success False with a message that says so."""
        result = query.check_project(PROJECT, "1", endpoint=f"http://127.0.0.1:{free_port()}")
        assert not result["success"]
        assert "connect" in result["message"]

    def test_down_server_raises_when_asked(self) -> None:
        """raise_on_error gives MigasConnectionError with the cause chain intact."""
        with pytest.raises(MigasConnectionError):
            query.check_project(
                PROJECT, "1", endpoint=f"http://127.0.0.1:{free_port()}", raise_on_error=True
            )

    def test_timeout(self, collector: LocalCollector) -> None:
        """A hanging server is a timeout."""
        collector.fault("hang")
        with pytest.raises(MigasTimeoutError):
            query.check_project(
                PROJECT, "1", endpoint=collector.url, timeout=0.3, raise_on_error=True
            )

    def test_http_error(self, collector: LocalCollector) -> None:
        """An HTTP error status becomes MigasHTTPError with the status."""
        collector.fault("status", status=503)
        with pytest.raises(MigasHTTPError) as info:
            query.check_project(PROJECT, "1", endpoint=collector.url, raise_on_error=True)
        assert 503 == info.value.status

    def test_rate_limited(self) -> None:
        """429 becomes MigasRateLimitedError with a retry_after."""
        with LocalCollector(register=(PROJECT,), rate_limit=(1, 60)) as c:
            query.check_project(PROJECT, "1", endpoint=c.url)
            with pytest.raises(MigasRateLimitedError) as info:
                query.check_project(PROJECT, "1", endpoint=c.url, raise_on_error=True)
            assert info.value.retry_after > 0

    def test_garbage(self, collector: LocalCollector) -> None:
        """A body that is not JSON is a MigasResponseError."""
        collector.fault("garbage")
        with pytest.raises(MigasResponseError):
            query.check_project(PROJECT, "1", endpoint=collector.url, raise_on_error=True)
        collector.fault("garbage")
        result = query.check_project(PROJECT, "1", endpoint=collector.url)
        assert not result["success"]

    def test_bad_project_fails_before_any_request(self, collector: LocalCollector) -> None:
        """A project that is not owner/repo is a ConfigurationError; nothing is sent."""
        with pytest.raises(ConfigurationError, match="fmriprep"):
            query.check_project("fmriprep", "1", endpoint=collector.url)
        assert [] == collector.requests()

    def test_optout_sends_nothing(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Opt-out: success False, telemetry disabled, zero requests."""
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        result = query.check_project(PROJECT, "1", endpoint=collector.url)
        assert not result["success"]
        assert "disabled" in result["message"]
        with pytest.raises(TelemetryDisabledError):
            query.check_project(PROJECT, "1", endpoint=collector.url, raise_on_error=True)
        assert [] == collector.requests()


class TestGetUsage:
    def _send(self, collector: LocalCollector, n: int, user: str | None = None) -> None:
        t = Transport(collector.url, 2)
        for _ in range(n):
            ctx = Context(user_id=user or str(uuid.uuid4()), session_id=str(uuid.uuid4()))
            assert t.send(
                Breadcrumb(
                    project=PROJECT, project_version="1.0", language_version="3.11", ctx=ctx
                )
            ).ok

    def test_hits(self, collector: LocalCollector) -> None:
        """Stored breadcrumbs are counted; the shape is the official client's."""
        self._send(collector, 3)
        result = query.get_usage(
            PROJECT, dt.date.today() - dt.timedelta(days=1), endpoint=collector.url
        )
        assert {"hits": 3, "unique": False, "success": True, "message": ""} == result

    def test_unique_users(self, collector: LocalCollector) -> None:
        """unique=True counts distinct users."""
        user = str(uuid.uuid4())
        self._send(collector, 3, user=user)
        self._send(collector, 1)
        result = query.get_usage(PROJECT, "2000-01-01", unique=True, endpoint=collector.url)
        assert (2, True) == (result["hits"], result["unique"])

    def test_end_excludes_later_crumbs(self, collector: LocalCollector) -> None:
        """A period that ended before the breadcrumbs counts none of them."""
        self._send(collector, 2)
        result = query.get_usage(
            PROJECT, "2000-01-01", "2000-02-01T00:00:00Z", endpoint=collector.url
        )
        assert 0 == result["hits"]

    @pytest.mark.parametrize(
        "start",
        [
            dt.date(2024, 1, 1),
            dt.datetime(2024, 1, 1, 12, 0),
            "2024-01-01",
            "2024-01-01T00:00:00Z",
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        ],
    )
    def test_date_forms(self, collector: LocalCollector, start: object) -> None:
        """date, datetime and ISO strings are all accepted."""
        assert query.get_usage(PROJECT, start, endpoint=collector.url)["success"]  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", ["yesterday", "2024-13-01", "", 20240101])
    def test_bad_date_fails_before_any_request(
        self, collector: LocalCollector, bad: object
    ) -> None:
        """A bad date is a ValueError before any request is made."""
        with pytest.raises(ValueError, match="not a date"):
            query.get_usage(PROJECT, bad, endpoint=collector.url)  # type: ignore[arg-type]
        assert [] == collector.requests()

    @pytest.mark.parametrize(
        ("start", "end"),
        [
            ("2027-01-01", "2024-01-01"),
            ("2024-01-01T00:00:01Z", "2024-01-01"),
            (dt.date(2024, 1, 2), dt.datetime(2024, 1, 1, 23, 59, tzinfo=dt.timezone.utc)),
        ],
    )
    def test_start_after_end_fails_before_any_request(
        self, collector: LocalCollector, start: object, end: object
    ) -> None:
        """A period that ends before it starts is a ConfigurationError, not ``hits: 0``."""
        with pytest.raises(ConfigurationError, match="is after end"):
            query.get_usage(PROJECT, start, end, endpoint=collector.url)  # type: ignore[arg-type]
        assert [] == collector.requests()

    def test_start_equal_to_end_is_a_period(self, collector: LocalCollector) -> None:
        """The same day as start and end is allowed (the server's bounds are inclusive)."""
        result = query.get_usage(PROJECT, "2024-01-01", "2024-01-01", endpoint=collector.url)
        assert result["success"]

    def test_untracked_project(self, collector: LocalCollector) -> None:
        """An untracked project: success False and the server's message."""
        result = query.get_usage("someone/else", "2024-01-01", endpoint=collector.url)
        assert not result["success"]
        assert 'Project "someone/else" is not being tracked' == result["message"]

    def test_graphql_errors_become_messages(self, collector: LocalCollector) -> None:
        """GraphQL errors: success False with the message; raise gives MigasGraphQLError."""
        t = Transport(collector.url, 2)
        outcome = t.graphql('query { get_usage(project: "a/b", start: "bad") }')
        assert outcome.payload["errors"]
        collector.fault(
            "status", status=200, body='{"data": null, "errors": [{"message": "boom"}]}'
        )
        with pytest.raises(MigasGraphQLError, match="boom"):
            query.get_usage(PROJECT, "2024-01-01", endpoint=collector.url, raise_on_error=True)
