"""SQLite storage for the local collector, with the real server's column rules.

The real migas server keeps breadcrumbs in PostgreSQL. Several of its columns refuse
values that the HTTP layer has already accepted, so the breadcrumb is answered ``202``
and then silently lost. :class:`BreadcrumbStore` reproduces those refusals *before*
inserting into SQLite (which would happily store anything):

- ``language`` is a ``varchar(32)``: longer text fails;
- ``user_id`` and ``session_id`` are ``uuid`` columns: anything PostgreSQL's
  ``uuid_in`` refuses fails (it accepts upper case, braces and hyphens after any group
  of four hex digits, and stores the canonical lower-case form);
- ``platform`` is a ``varchar(64)`` of the *users* table, written only when a
  ``user_id`` is sent; so are ``container`` and ``user_type``. A user is written once:
  the first values seen for a ``user_id`` are kept and later ones silently ignored;
- every ``text``/``varchar`` column refuses a NUL character and text that is not valid
  Unicode (a lone UTF-16 surrogate, which is how invalid UTF-8 reaches Python).

Silent *changes* happen here too: versions are cut to 24 characters, a user's
``platform``, ``container`` and ``user_type`` are the first ones seen, and the timestamp
is the server's, to the second. (The REST endpoint and the ``add_breadcrumb`` mutation
do not pass ``user_type`` on, so it is ``general`` unless ``add_project`` sent another.)
(Replacing an invalid version by ``unknown`` is the REST layer's job: the GraphQL
mutation stores it as sent.)

Design: one ``sqlite3`` connection opened with ``check_same_thread=False`` and guarded by
one lock, which is also the lock of a :class:`threading.Condition` so that
:meth:`BreadcrumbStore.wait_rows` can block until a handler thread stores a row. Every
stored row gets a ``seq`` from a counter that only grows (also across :meth:`clear`),
which orders crumbs stored within the same second.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict

__all__ = [
    "TIMESTAMP_FORMAT",
    "BreadcrumbStore",
    "CrumbIn",
    "IngestionError",
    "ProjectInfo",
    "utc_now",
]

#: The server's timestamp format (UTC, one-second resolution).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Column limits of the real server's tables.
_VERSION_KEEP = 24  # the ingestion code cuts versions to 24 characters
_LANGUAGE_MAX = 32
_PLATFORM_MAX = 64
#: How far before a usage window the real server looks for a session's first crumb.
SESSION_HOURS = 48

# PostgreSQL's uuid_in: optional braces, 32 hex digits, an optional hyphen after any
# group of four digits.
_PG_UUID = re.compile(r"(\{)?[0-9A-Fa-f]{4}(?:-?[0-9A-Fa-f]{4}){7}(?(1)\})")

_COLUMNS = (
    "id",
    "seq",
    "timestamp",
    "project",
    "project_version",
    "language",
    "language_version",
    "user_id",
    "session_id",
    "user_type",
    "platform",
    "container",
    "is_ci",
    "status",
    "status_desc",
    "error_type",
    "error_desc",
    "via",
    "client",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS breadcrumbs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    project TEXT NOT NULL,
    project_version TEXT NOT NULL,
    language TEXT NOT NULL,
    language_version TEXT NOT NULL,
    user_id TEXT,
    session_id TEXT,
    user_type TEXT,
    platform TEXT,
    container TEXT,
    is_ci INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('R', 'C', 'F', 'S')),
    status_desc TEXT,
    error_type TEXT,
    error_desc TEXT,
    via TEXT NOT NULL CHECK (via IN ('rest', 'graphql')),
    client TEXT
);
CREATE INDEX IF NOT EXISTS ix_breadcrumbs_project_ts ON breadcrumbs (project, timestamp);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    user_type TEXT NOT NULL,
    platform TEXT,
    container TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    project TEXT PRIMARY KEY,
    registered INTEGER NOT NULL DEFAULT 1,
    latest TEXT,
    bad_versions TEXT NOT NULL DEFAULT '[]',
    token TEXT
);
"""


class CrumbIn(TypedDict):
    """A breadcrumb as the HTTP layer hands it to the store (already validated)."""

    project: str
    project_version: str
    language: str
    language_version: str
    user_id: str | None
    session_id: str | None
    user_type: str
    platform: str
    container: str
    is_ci: bool
    status: str
    status_desc: str | None
    error_type: str | None
    error_desc: str | None


class IngestionError(Exception):
    """The database refused a breadcrumb that the HTTP layer had accepted.

    Args:
        reason: What PostgreSQL would have refused, in words.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProjectInfo:
    """What the collector knows of one project.

    Attributes:
        project: ``owner/repo``.
        registered: Whether breadcrumbs are accepted for it.
        latest: The latest release answered by ``check_project`` (``None``: unknown).
        bad_versions: Versions that ``check_project`` flags.
        token: The bearer token of ``GET /api/usage/{owner}/{repo}``.
    """

    project: str
    registered: bool
    latest: str | None
    bad_versions: tuple[str, ...]
    token: str | None


def utc_now() -> datetime:
    """Return the current UTC time cut to the second, like the server's clock."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def _storable_text(field: str, value: str) -> None:
    """Raise IngestionError for text that PostgreSQL cannot store."""
    if "\x00" in value:
        raise IngestionError(f"{field} contains a NUL character (0x00), which text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IngestionError(
            f"{field} is not valid Unicode ({exc.reason} at {exc.start}), which text cannot store"
        ) from None


def _pg_uuid(field: str, value: str) -> str:
    """Return ``value`` as PostgreSQL would store it in a uuid column, or raise."""
    if _PG_UUID.fullmatch(value) is None:
        raise IngestionError(f"{field} is not a valid UUID: {value!r}")
    hexdigits = re.sub(r"[{}-]", "", value).lower()
    return "-".join(
        (hexdigits[:8], hexdigits[8:12], hexdigits[12:16], hexdigits[16:20], hexdigits[20:])
    )


def prepare_row(crumb: CrumbIn) -> dict[str, Any]:
    """Apply the real server's column rules to ``crumb``.

    Args:
        crumb: The validated breadcrumb.

    Returns:
        The column values to store (without id, seq, timestamp, via and client).

    Raises:
        IngestionError: When PostgreSQL would refuse the row.
    """
    language = crumb["language"]
    if len(language) > _LANGUAGE_MAX:
        raise IngestionError(
            f"language is {len(language)} characters long, its column holds {_LANGUAGE_MAX}"
        )
    user_id = crumb["user_id"]
    session_id = crumb["session_id"]
    if user_id is not None:
        user_id = _pg_uuid("user_id", user_id)
    if session_id is not None:
        session_id = _pg_uuid("session_id", session_id)
    platform: str | None = None
    container: str | None = None
    if user_id is not None:  # the users table is written only with a user id
        platform = crumb["platform"]
        container = crumb["container"]
        if len(platform) > _PLATFORM_MAX:
            raise IngestionError(
                f"platform is {len(platform)} characters long, its column holds {_PLATFORM_MAX}"
            )
    row: dict[str, Any] = {
        "project": crumb["project"],
        "project_version": crumb["project_version"][:_VERSION_KEEP],
        "language": language,
        "language_version": crumb["language_version"][:_VERSION_KEEP],
        "user_id": user_id,
        "session_id": session_id,
        "user_type": crumb["user_type"] if user_id is not None else None,
        "platform": platform,
        "container": container,
        "is_ci": bool(crumb["is_ci"]),
        "status": crumb["status"],
        "status_desc": crumb["status_desc"],
        "error_type": crumb["error_type"],
        "error_desc": crumb["error_desc"],
    }
    for field, value in row.items():
        if isinstance(value, str):
            _storable_text(field, value)
    return row


class BreadcrumbStore:
    """Thread-safe SQLite storage of breadcrumbs and projects.

    Args:
        db: ``":memory:"`` or the path of an SQLite file (created if missing; rows and
            projects already in it are kept).
    """

    def __init__(self, db: str = ":memory:") -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if db != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._migrate()
        (max_seq,) = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM breadcrumbs").fetchone()
        self._seq = int(max_seq)

    def _migrate(self) -> None:
        """Make a file of an older collector (``user_type NOT NULL``) usable."""
        columns = self._conn.execute("PRAGMA table_info(breadcrumbs)").fetchall()
        if not any(c["name"] == "user_type" and c["notnull"] for c in columns):
            return
        names = ", ".join(_COLUMNS)
        self._conn.executescript(
            "BEGIN;"
            "ALTER TABLE breadcrumbs RENAME TO breadcrumbs_old;"
            "DROP INDEX IF EXISTS ix_breadcrumbs_project_ts;"
            f"{_SCHEMA}"
            f"INSERT INTO breadcrumbs ({names}) SELECT {names} FROM breadcrumbs_old;"
            "DROP TABLE breadcrumbs_old;"
            "COMMIT;"
        )

    # -- projects ---------------------------------------------------------------------------

    def configure(
        self,
        project: str,
        *,
        registered: bool | None = None,
        latest: str | None = None,
        bad_versions: Sequence[str] | None = None,
        token: str | None = None,
    ) -> None:
        """Create or update one project; ``None`` leaves a setting as it is.

        Args:
            project: ``owner/repo``.
            registered: Accept breadcrumbs for it (a new project defaults to False).
            latest: The latest release ``check_project`` answers.
            bad_versions: Versions ``check_project`` flags.
            token: Bearer token of the usage endpoint.
        """
        with self._lock:
            self._conn.execute(
                "INSERT INTO projects (project, registered) VALUES (?, 0) "
                "ON CONFLICT (project) DO NOTHING",
                (project,),
            )
            updates: dict[str, Any] = {}
            if registered is not None:
                updates["registered"] = int(registered)
            if latest is not None:
                updates["latest"] = latest
            if bad_versions is not None:
                updates["bad_versions"] = json.dumps(list(bad_versions))
            if token is not None:
                updates["token"] = token
            for column, value in updates.items():
                self._conn.execute(
                    f"UPDATE projects SET {column} = ? WHERE project = ?", (value, project)
                )

    def project(self, project: str) -> ProjectInfo | None:
        """Return what is known of ``project``, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM projects WHERE project = ?", (project,)
            ).fetchone()
        if row is None:
            return None
        return ProjectInfo(
            project=row["project"],
            registered=bool(row["registered"]),
            latest=row["latest"],
            bad_versions=tuple(json.loads(row["bad_versions"])),
            token=row["token"],
        )

    def is_registered(self, project: str) -> bool:
        """Return whether breadcrumbs of ``project`` are accepted."""
        info = self.project(project)
        return info is not None and info.registered

    def projects(self) -> list[str]:
        """Return the registered projects, sorted."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT project FROM projects WHERE registered = 1 ORDER BY project"
            ).fetchall()
        return [row[0] for row in rows]

    def project_for_token(self, token: str) -> str | None:
        """Return the project whose usage token is ``token``, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT project FROM projects WHERE token = ?", (token,)
            ).fetchone()
        return None if row is None else str(row[0])

    # -- breadcrumbs ------------------------------------------------------------------------

    def ingest(self, crumb: CrumbIn, *, via: str, client: str | None) -> dict[str, Any]:
        """Store one breadcrumb as the real server would, or refuse it like PostgreSQL.

        Args:
            crumb: The validated breadcrumb.
            via: ``"rest"`` or ``"graphql"``.
            client: The client's address.

        Returns:
            The stored row.

        Raises:
            IngestionError: When the real database would have refused the row.
        """
        row = prepare_row(crumb)
        with self._changed:
            if row["user_id"] is not None:  # the first values seen for a user are kept
                self._conn.execute(
                    "INSERT INTO users (user_id, user_type, platform, container) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                    (row["user_id"], row["user_type"], row["platform"], row["container"]),
                )
                user = self._conn.execute(
                    "SELECT user_type, platform, container FROM users WHERE user_id = ?",
                    (row["user_id"],),
                ).fetchone()
                row.update(user_type=user[0], platform=user[1], container=user[2])
            self._seq += 1
            row["seq"] = self._seq
            row["timestamp"] = utc_now().strftime(TIMESTAMP_FORMAT)
            row["via"] = via
            row["client"] = client
            columns = [c for c in _COLUMNS if c != "id"]
            cursor = self._conn.execute(
                f"INSERT INTO breadcrumbs ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [row[c] for c in columns],
            )
            row["id"] = cursor.lastrowid
            self._changed.notify_all()
        return {c: row[c] for c in _COLUMNS}

    def rows(
        self,
        *,
        project: str | None = None,
        session_id: str | None = None,
        status: str | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return stored breadcrumbs ordered by ``seq``, optionally filtered.

        Args:
            project: Only this project's.
            session_id: Only this session's (any form PostgreSQL accepts).
            status: Only rows with this status (``R``, ``C``, ``F`` or ``S``).
            after: Only rows with a ``seq`` greater than this.
        """
        if session_id is not None:
            try:
                session_id = _pg_uuid("session_id", session_id)
            except IngestionError:
                pass  # cannot match a stored (canonical) id; the query finds nothing
        where, params = self._filters(project=project, session_id=session_id, status=status)
        if after is not None:
            where += (" AND" if where else " WHERE") + " seq > ?"
            params.append(int(after))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM breadcrumbs{where} ORDER BY seq", params
            ).fetchall()
        return [self._row(r) for r in rows]

    def count(self, *, project: str | None = None) -> int:
        """Return how many breadcrumbs are stored (of ``project``)."""
        where, params = self._filters(project=project)
        with self._lock:
            (n,) = self._conn.execute(
                f"SELECT COUNT(*) FROM breadcrumbs{where}", params
            ).fetchone()
        return int(n)

    def wait_rows(
        self, count: int, *, timeout: float, project: str | None = None
    ) -> tuple[bool, list[dict[str, Any]]]:
        """Block until at least ``count`` breadcrumbs (of ``project``) are stored.

        Returns:
            Whether the count was reached, and the rows stored at that moment.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count(project=project) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False, self.rows(project=project)
                self._changed.wait(remaining)
            return True, self.rows(project=project)

    def usage(self, project: str, start: datetime, end: datetime, *, unique: bool) -> int:
        """Count breadcrumbs of ``project`` with ``start <= timestamp <= end``.

        Args:
            project: ``owner/repo``.
            start: First instant counted.
            end: Last instant counted (inclusive, like the real server's query).
            unique: Count distinct user ids instead (rows without one are not counted).
        """
        what = "COUNT(DISTINCT user_id)" if unique else "COUNT(*)"
        with self._lock:
            (n,) = self._conn.execute(
                f"SELECT {what} FROM breadcrumbs "
                "WHERE project = ? AND timestamp >= ? AND timestamp <= ?",
                (project, _fmt(start), _fmt(end)),
            ).fetchone()
        return int(n)

    def usage_rows(
        self, project: str, start: datetime, *, before: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the dashboard rows of ``project`` for the sessions started since ``start``.

        Like the real server: a session is dated by its *first* crumb and reads its
        version and status from its *latest* one; crumbs without a session id form one
        shared session; only crumbs from 48 hours before ``start`` on are looked at;
        versions containing ``rc`` or ``+`` are left out. One row per (date, version,
        status) with the number of sessions, newest date first, then version.

        Args:
            project: ``owner/repo``.
            start: Sessions that started before this instant are not counted.
            before: Only dates before this one (``YYYY-MM-DD``), the ``since`` parameter.
        """
        lookback = start - timedelta(hours=SESSION_HOURS)
        with self._lock:
            rows = self._conn.execute(
                "SELECT session_id, project_version, status, timestamp FROM breadcrumbs "
                "WHERE project = ? AND timestamp >= ? ORDER BY seq",
                (project, _fmt(lookback)),
            ).fetchall()
        first: dict[str | None, str] = {}
        latest: dict[str | None, sqlite3.Row] = {}
        for row in rows:  # in storage order: among equal timestamps, the last stored wins
            session = row["session_id"]
            first[session] = min(first.get(session, row["timestamp"]), row["timestamp"])
            if session not in latest or row["timestamp"] >= latest[session]["timestamp"]:
                latest[session] = row
        since = _fmt(start)
        counts: dict[tuple[str, str, str], int] = {}
        for session, row in latest.items():
            version = row["project_version"]
            if first[session] < since or "+" in version or "rc" in version:
                continue
            key = (first[session][:10], version, row["status"])
            counts[key] = counts.get(key, 0) + 1
        ordered = sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1]), reverse=True)
        return [
            {"version": version, "date": day, "status": status, "count": n}
            for (day, version, status), n in ordered
            if before is None or day < before
        ]

    def clear(self) -> None:
        """Forget every stored breadcrumb and user (projects are kept; ``seq`` keeps growing)."""
        with self._lock:
            self._conn.execute("DELETE FROM breadcrumbs")
            self._conn.execute("DELETE FROM users")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    @staticmethod
    def _filters(**filters: str | None) -> tuple[str, list[Any]]:
        clauses = [f"{column} = ?" for column, value in filters.items() if value is not None]
        params: list[Any] = [value for value in filters.values() if value is not None]
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        out = {c: row[c] for c in _COLUMNS}
        out["is_ci"] = bool(out["is_ci"])
        return out


def _fmt(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime(TIMESTAMP_FORMAT)
