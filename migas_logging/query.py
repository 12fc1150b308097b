"""Explicit calls to a migas server: ``check_project`` and ``get_usage``.

Both return the official client's shapes, so code written for ``migas`` can switch::

    check_project("nipreps/fmriprep", "23.1.0")
    {'success': True, 'flagged': False, 'latest': '24.0.0', 'message': ''}

    get_usage("nipreps/fmriprep", "2024-01-01")
    {'hits': 7, 'unique': False, 'success': True, 'message': ''}

They are synchronous (they wait for the answer, at most the timeout: a server that
trickles its answer cannot stretch it) and are meant for explicit use, for example a
"new version available" notice at start-up. Failures come back as ``success: False``
with a message that says what happened; pass ``raise_on_error=True`` to get an
exception from :mod:`migas_logging.exceptions` instead. User input always travels as
GraphQL variables, never pasted into the query.

Under ``MIGAS_OPTOUT`` nothing is sent: the result says telemetry is disabled (or
:class:`~migas_logging.exceptions.TelemetryDisabledError` is raised with
``raise_on_error=True``).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from migas_logging import config
from migas_logging.exceptions import (
    ConfigurationError,
    MigasConnectionError,
    MigasError,
    MigasGraphQLError,
    MigasHTTPError,
    MigasRateLimitedError,
    MigasRequestError,
    MigasResponseError,
    MigasTimeoutError,
    TelemetryDisabledError,
)
from migas_logging.transport import Outcome, OutcomeKind, Transport

__all__ = ["check_project", "get_usage"]

DateLike = _dt.date | _dt.datetime | str

CHECK_PROJECT = (
    "query CheckProject($project: String!, $project_version: String!) "
    "{ check_project(project: $project, project_version: $project_version) "
    "{ success flagged latest message } }"
)
GET_USAGE = (
    "query GetUsage($project: String!, $start: DateTime!, $end: DateTime, $unique: Boolean) "
    "{ get_usage(project: $project, start: $start, end: $end, unique: $unique) }"
)

DISABLED_MESSAGE = "migas telemetry is disabled (MIGAS_OPTOUT is set); nothing was sent."


def _format_date(value: DateLike, name: str) -> str:
    """Turn a date, datetime or ISO string into the server's format.

    Naive datetimes are taken as UTC, like the server's own timestamps.

    Raises:
        ConfigurationError: the value is not a date (a ``ValueError``).
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return _dt.date.fromisoformat(text).isoformat()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            value = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(
                f"{name} {value!r} is not a date; use 'YYYY-MM-DD' or "
                f"'YYYY-MM-DDTHH:MM:SSZ' (or a date / datetime object)"
            ) from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return value.replace(microsecond=0).isoformat() + "Z"
    if isinstance(value, _dt.date):
        return value.isoformat()
    raise ConfigurationError(
        f"{name} {value!r} is not a date; use 'YYYY-MM-DD', a date or a datetime"
    )


def _instant(formatted: str) -> _dt.datetime:
    """The UTC instant of a date as :func:`_format_date` gives it (a date is its midnight)."""
    if len(formatted) == 10:
        return _dt.datetime.fromisoformat(formatted)
    return _dt.datetime.fromisoformat(formatted[:-1])


def _error_for(outcome: Outcome, url: str) -> MigasRequestError:
    kind = outcome.kind
    message = outcome.detail or kind.value
    if kind is OutcomeKind.TIMEOUT:
        return MigasTimeoutError(message, url=url)
    if kind is OutcomeKind.UNREACHABLE:
        return MigasConnectionError(message, url=url)
    if kind is OutcomeKind.RATE_LIMITED:
        return MigasRateLimitedError(
            message, retry_after=outcome.retry_after or 60.0, body=str(outcome.payload), url=url
        )
    if outcome.status is not None and outcome.status >= 400:
        return MigasHTTPError(
            f"HTTP {outcome.status}: {message}",
            status=outcome.status,
            body=str(outcome.payload)[:500],
            url=url,
        )
    return MigasResponseError(message, url=url)


def _call(
    query: str,
    variables: dict[str, Any],
    field: str,
    *,
    endpoint: str | None,
    timeout: float | None,
) -> tuple[dict[str, Any] | None, MigasError | None]:
    """Run one query; return (result, None) or (None, error)."""
    settings = config.Settings.resolve(endpoint, timeout)
    if settings.optout:
        return None, TelemetryDisabledError(DISABLED_MESSAGE)
    deadline = time.monotonic() + settings.timeout  # the whole call, by the wall clock
    transport = Transport(settings.endpoint, settings.timeout)
    url = config.display_url(f"{settings.endpoint}/graphql")  # for messages: no credentials
    try:
        outcome = transport.graphql(query, variables, deadline=deadline)
    finally:
        transport.close()
    payload = outcome.payload
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if isinstance(errors, list) and errors and outcome.status in (None, 200):
        first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
        return None, MigasGraphQLError(
            f"the server answered with an error: {first.get('message', 'unknown error')}",
            errors=[e if isinstance(e, dict) else {"message": str(e)} for e in errors],
            url=url,
        )
    if not outcome.ok:
        error = _error_for(outcome, url)
        error.__cause__ = None
        return None, error
    data = payload.get("data") if isinstance(payload, dict) else None
    result = data.get(field) if isinstance(data, dict) else None
    if not isinstance(result, dict):
        return None, MigasResponseError(
            f"the answer has no {field} result: {payload!r:.200}", url=url
        )
    return result, None


def check_project(
    project: str,
    version: str,
    *,
    endpoint: str | None = None,
    timeout: float | None = None,
    raise_on_error: bool = False,
) -> dict[str, Any]:
    """Ask the server about a version of a project: is it flagged, what is the latest?

    Args:
        project: ``owner/repo``.
        version: the version to check.
        endpoint: the server's base URL (default: ``MIGAS_ENDPOINT``, then the hosted one).
        timeout: seconds the call may take, by the wall clock, even against a server
            that trickles its answer (default: ``MIGAS_TIMEOUT``, then 5).
        raise_on_error: raise a :class:`~migas_logging.exceptions.MigasError` instead of
            returning ``success: False``.

    Returns:
        ``{"success": bool, "flagged": bool, "latest": str, "message": str}``.

    Raises:
        ConfigurationError: a bad project, endpoint or timeout (always, at once).
        MigasError: with ``raise_on_error=True``, when the call did not succeed.

    .. versionadded:: 0.1.0
    """
    project = config.checked_project(project)
    result, error = _call(
        CHECK_PROJECT,
        {"project": project, "project_version": str(version)},
        "check_project",
        endpoint=endpoint,
        timeout=timeout,
    )
    if error is not None:
        if raise_on_error:
            raise error
        return {"success": False, "flagged": False, "latest": "unknown", "message": str(error)}
    assert result is not None
    return {
        "success": bool(result.get("success")),
        "flagged": bool(result.get("flagged")),
        "latest": str(result.get("latest") or "unknown"),
        "message": str(result.get("message") or ""),
    }


def get_usage(
    project: str,
    start: DateLike,
    end: DateLike | None = None,
    *,
    unique: bool = False,
    endpoint: str | None = None,
    timeout: float | None = None,
    raise_on_error: bool = False,
) -> dict[str, Any]:
    """Count a project's uses between two dates.

    Args:
        project: ``owner/repo``.
        start: first day or instant: a ``date``, ``datetime`` (naive means UTC) or an
            ISO string (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SSZ``).
        end: end of the period; default now (the server's clock).
        unique: count distinct users instead of breadcrumbs.
        endpoint: the server's base URL.
        timeout: seconds the call may take, by the wall clock.
        raise_on_error: raise instead of returning ``success: False``.

    Returns:
        ``{"hits": int, "unique": bool, "success": bool, "message": str}``.

    Raises:
        ConfigurationError: a bad project, date (or ``start`` after ``end``), endpoint or
            timeout, before any request.
        MigasError: with ``raise_on_error=True``, when the call did not succeed.

    .. versionadded:: 0.1.0
    """
    project = config.checked_project(project)
    variables: dict[str, Any] = {
        "project": project,
        "start": _format_date(start, "start"),
        "unique": bool(unique),
    }
    if end is not None:
        variables["end"] = _format_date(end, "end")
        if _instant(variables["start"]) > _instant(variables["end"]):
            raise ConfigurationError(
                f"start {start!r} is after end {end!r}: the period would be empty"
            )
    result, error = _call(GET_USAGE, variables, "get_usage", endpoint=endpoint, timeout=timeout)
    if error is not None:
        if raise_on_error:
            raise error
        return {"hits": 0, "unique": bool(unique), "success": False, "message": str(error)}
    assert result is not None
    hits = result.get("hits", 0)
    return {
        "hits": hits if isinstance(hits, int) else 0,
        "unique": bool(result.get("unique", unique)),
        "success": bool(result.get("success")),
        "message": str(result.get("message") or ""),
    }
