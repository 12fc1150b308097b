"""``migas-logging stored``: what a local collector stored, once or as it arrives.

It reads the collector's own endpoints (``GET /_collector/breadcrumbs`` and
``/_collector/refused``; a real migas server has neither) and prints a table like the
demo's, or JSON. With ``follow`` it polls for new rows (``?after=SEQ``) until Ctrl-C, a
deadline or a number of rows, and reports the breadcrumbs the collector refuses as they
come, so that "why is nothing arriving?" has an answer.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from migas_logging._table import cell, line, table

__all__ = ["StoredError", "run_stored"]

COLUMNS = (
    "seq",
    "timestamp",
    "project",
    "project_version",
    "session_id",
    "status",
    "status_desc",
    "error_type",
    "error_desc",
)
HEADERS = {"timestamp": "time", "project_version": "version", "session_id": "session"}
WIDTHS = {
    "seq": 6,
    "timestamp": 20,
    "project": 24,
    "project_version": 12,
    "session_id": 8,
    "status": 6,
    "status_desc": 60,
    "error_type": 16,
    "error_desc": 40,
}
_FULL_UUID = re.compile(r"\{?[0-9A-Fa-f]{4}(?:-?[0-9A-Fa-f]{4}){7}\}?")


class StoredError(Exception):
    """The collector could not be read; the message says why, in one line."""


class _Collector:
    """GET requests to a collector's own endpoints."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        import requests

        self._requests = requests
        self._session = requests.Session()
        self.endpoint = endpoint
        self.timeout = timeout

    def get(self, path: str, params: Mapping[str, Any]) -> Any:
        url = self.endpoint + path
        query = {k: v for k, v in params.items() if v is not None}
        try:
            answer = self._session.get(url, params=query, timeout=self.timeout)
        except self._requests.Timeout:
            raise StoredError(f"{url} did not answer within {self.timeout:g} s") from None
        except self._requests.RequestException as exc:
            reason = type(exc).__name__
            raise StoredError(f"cannot connect to {self.endpoint} ({reason})") from None
        if answer.status_code == 404:
            raise StoredError(
                f"{self.endpoint} is not a migas-logging collector (no {path}); "
                "`stored` reads what `migas-logging serve` or LocalCollector stored"
            )
        if answer.status_code != 200:
            raise StoredError(f"{url} answered HTTP {answer.status_code}")
        try:
            return answer.json()
        except ValueError:
            raise StoredError(f"{url} answered something that is not JSON") from None

    def close(self) -> None:
        self._session.close()


def _shown(row: Mapping[str, Any]) -> dict[str, Any]:
    shown = dict(row)
    if shown.get("session_id"):
        shown["session_id"] = str(shown["session_id"])[:8]
    return shown


def _matches(row: Mapping[str, Any], session_prefix: str | None) -> bool:
    if session_prefix is None:
        return True
    return str(row.get("session_id") or "").lower().startswith(session_prefix)


def _refusal_notes(refused: Sequence[Mapping[str, Any]]) -> list[str]:
    counts: dict[tuple[Any, ...], int] = {}
    for item in refused:
        key = (item.get("status"), item.get("reason"), item.get("project"))
        counts[key] = counts.get(key, 0) + 1
    notes = []
    for (status, reason, project), n in counts.items():
        answer = f"{status} {reason}" if status is not None else str(reason)
        note = f"note: the collector refused {n} breadcrumb(s) of {project!r}: {answer}"
        if "not registered" in str(reason) and project:
            note += f" (start it with --register {project})"
        notes.append(note)
    return notes


def run_stored(
    *,
    endpoint: str,
    timeout: float,
    project: str | None = None,
    session: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    follow: bool = False,
    follow_timeout: float | None = None,
    as_json: bool = False,
    interval: float = 0.5,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print what the collector at ``endpoint`` stored; return an exit status.

    Args:
        endpoint: The collector's base URL.
        timeout: Seconds to wait for each answer.
        project: Only this project's breadcrumbs.
        session: Only this session's: a session id, or its first characters.
        status: Only breadcrumbs with this status.
        limit: Print at most this many rows (with ``follow``: stop once printed).
        follow: Keep polling for new rows until Ctrl-C, ``follow_timeout`` or ``limit``.
        follow_timeout: With ``follow``, stop after this many seconds.
        as_json: A JSON array (with ``follow``: one JSON object per line).
        interval: Seconds between polls.
        out: Where rows go (default stdout).
        err: Where notes go (default stderr).
        clock: Monotonic seconds (injected by tests).
        sleep: Waits ``interval`` (injected by tests).

    Returns:
        0, or 1 when ``follow`` ended at ``follow_timeout`` before ``limit`` rows came.

    Raises:
        StoredError: The collector could not be read.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    session_id = session if session and _FULL_UUID.fullmatch(session) else None
    prefix = session.lower() if session and session_id is None else None
    params = {"project": project, "session_id": session_id, "status": status}
    columns = [c for c in COLUMNS if not (c == "project" and project)]
    client = _Collector(endpoint, timeout)
    try:
        fetched = client.get("/_collector/breadcrumbs", params)
        rows = [r for r in fetched if _matches(r, prefix)]
        rows = rows[:limit] if limit is not None else rows
        refused = client.get("/_collector/refused", {"project": project})
        if not follow:
            _print_once(rows, columns, as_json=as_json, out=out, endpoint=endpoint)
            for note in _refusal_notes(refused):
                print(note, file=err)
            return 0
        return _follow(
            client,
            rows,
            max((int(r["seq"]) for r in fetched), default=None),
            len(refused),
            columns,
            params=params,
            prefix=prefix,
            limit=limit,
            deadline=None if follow_timeout is None else clock() + follow_timeout,
            as_json=as_json,
            interval=interval,
            out=out,
            err=err,
            clock=clock,
            sleep=sleep,
        )
    except KeyboardInterrupt:  # Ctrl-C: the usual way to stop following
        if not follow:
            raise
        return 0
    finally:
        client.close()


def _print_once(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    out: IO[str],
    endpoint: str,
) -> None:
    if as_json:
        print(json.dumps(list(rows), indent=2, default=str), file=out)
    elif rows:
        shown = [_shown(r) for r in rows]
        print(table(shown, columns, width=WIDTHS, headers=HEADERS), file=out)
    else:
        print(f"the collector at {endpoint} stored no breadcrumbs (that match)", file=out)


def _follow(
    client: _Collector,
    rows: list[dict[str, Any]],
    after: int | None,
    refused_seen: int,
    columns: Sequence[str],
    *,
    params: Mapping[str, Any],
    prefix: str | None,
    limit: int | None,
    deadline: float | None,
    as_json: bool,
    interval: float,
    out: IO[str],
    err: IO[str],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> int:
    """Print rows as they arrive; the widths are fixed so that the columns line up."""
    widths = [max(WIDTHS[c], len(HEADERS.get(c, c))) for c in columns]

    def emit(batch: Sequence[Mapping[str, Any]]) -> None:
        for row in batch:
            if as_json:
                print(json.dumps(row, default=str), file=out)
            else:
                shown = _shown(row)
                print(line([cell(shown.get(c), WIDTHS[c]) for c in columns], widths), file=out)
        out.flush()

    if not as_json:
        print(line([HEADERS.get(c, c) for c in columns], widths), file=out)
        print("  ".join("-" * w for w in widths), file=out)
    emit(rows)
    printed = len(rows)
    while limit is None or printed < limit:
        if deadline is not None and clock() >= deadline:
            if limit is None:
                return 0
            print(
                f"migas-logging: {printed} of {limit} breadcrumb(s) arrived in time",
                file=err,
            )
            return 1
        sleep(interval)
        new = client.get("/_collector/breadcrumbs", {**params, "after": after})
        if new:
            after = max(int(r["seq"]) for r in new)
        batch = [r for r in new if _matches(r, prefix)]
        if limit is not None:
            batch = batch[: limit - printed]
        emit(batch)
        printed += len(batch)
        refused = client.get("/_collector/refused", {"project": params.get("project")})
        for note in _refusal_notes(refused[refused_seen:]):
            print(note, file=err)
        refused_seen = len(refused)
    return 0
