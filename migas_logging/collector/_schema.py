"""The GraphQL API of the local collector, executed with graphql-core.

The real server builds its schema with strawberry (``auto_camel_case=False``); here the
same schema is written in SDL and built with :func:`graphql.build_schema`, so the type
names, the snake_case argument names, the nullability and the defaults are what a client
of the real server sees (strawberry makes a Python ``str = "unknown"`` a
``String! = "unknown"``, and the ``proc`` texts are its ``SafeStr`` scalar, which turns any
value into a string). Resolvers are the methods of a root object
(graphql-core's default resolver calls ``root.<field>(info, **args)``), and they reach
the collector only through the small :class:`Backend` protocol, so this module knows
nothing of HTTP.

What is not done here: the size and rate limits (the HTTP layer answers those, as the
server's strawberry extension does, before the operation runs) and the parsing of the
HTTP body.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any, Protocol, TypedDict

from graphql import GraphQLSchema, build_schema, graphql_sync

from ._store import TIMESTAMP_FORMAT, CrumbIn, ProjectInfo, utc_now

__all__ = ["SDL", "Backend", "Fetched", "execute", "parse_datetime", "parse_version", "schema"]

SDL = '''
"""Date and time information in UTC, compliant with ISO-8601"""
scalar DateTime

"""
The `JSON` scalar type represents JSON values as specified by ECMA-404
"""
scalar JSON @specifiedBy(url: "https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_december_2017.pdf")

"""String value that safely coerces non-string types"""
scalar SafeStr

"""Version information (PEP440 compliant)"""
scalar Version

enum Status {
  R
  running
  C
  completed
  F
  failed
  S
  suspended
  pending @deprecated(reason: "Pending is now running")
  success @deprecated(reason: "Success is now completed")
  error @deprecated(reason: "Error is now failed")
}

enum Container {
  unknown
  docker
  apptainer
}

enum User {
  general
  dev
  ci
}

input ContextInput {
  """Unique identifier for telemetry session"""
  session_id: String = null
  """Unique identifier for migas client"""
  user_id: String = null
  """Identifier of user role"""
  user_type: User! = general
  """Client platform type"""
  platform: String! = "unknown"
  """Check if client pings from inside a container"""
  container: Container! = unknown
  """Client is pinging from continous integration"""
  is_ci: Boolean! = false
}

input ProcessInput {
  """For timeseries pings, the current process status"""
  status: Status! = R
  """Description of status ping"""
  status_desc: SafeStr = null
  """Type of error encountered"""
  error_type: SafeStr = null
  """Description of error"""
  error_desc: SafeStr = null
}

input ProjectInput {
  """GitHub project in the form of 'owner/repo'"""
  project: String!
  """Project version being used"""
  project_version: Version!
  """Programming language of project"""
  language: String!
  """Programming language version"""
  language_version: Version!
  """Unique identifier for telemetry session"""
  session_id: String = null
  """Unique identifier for migas client"""
  user_id: String = null
  """Identifier of user role"""
  user_type: User! = general
  """Client platform type"""
  platform: String! = "unknown"
  """Check if client pings from inside a container"""
  container: Container! = unknown
  """Client is pinging from continous integration"""
  is_ci: Boolean! = false
  """For timeseries pings, the current process status"""
  status: Status! = R
  """Description of status ping"""
  status_desc: SafeStr = null
  """Type of error encountered"""
  error_type: SafeStr = null
  """Description of error"""
  error_desc: SafeStr = null
}

type CheckProjectResult {
  success: Boolean!
  latest: String!
  flagged: Boolean!
  message: String!
}

type BreadcrumbResult {
  success: Boolean!
  message: String!
}

type Query {
  """Return projects that are being tracked"""
  get_projects: [String!]!
  """Check version of project for latest version, developer notes, etc."""
  check_project(project: String!, project_version: String!): CheckProjectResult!
  """Query project uses (`start`/`end`: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`)."""
  get_usage(
    project: String!
    start: DateTime!
    end: DateTime = null
    unique: Boolean! = false
  ): JSON!
}

type Mutation {
  add_breadcrumb(
    project: String!
    project_version: String!
    language: String!
    language_version: String!
    ctx: ContextInput!
    proc: ProcessInput!
  ): BreadcrumbResult!
  add_project(p: ProjectInput!): JSON!
}
'''

# The long names of the Status enum (and its deprecated ones) are aliases of the letters.
_STATUS = {
    "R": "R",
    "running": "R",
    "pending": "R",
    "C": "C",
    "completed": "C",
    "success": "C",
    "F": "F",
    "failed": "F",
    "error": "F",
    "S": "S",
    "suspended": "S",
}


class Fetched(TypedDict):
    """What the server's ``fetch_project_info`` returns."""

    bad_versions: list[str]
    cached: bool
    success: bool
    version: str


class Backend(Protocol):
    """What the GraphQL resolvers need from the collector."""

    def project(self, project: str) -> ProjectInfo | None:
        """Return what is known of ``project``."""

    def fetch(self, project: str) -> Fetched:
        """Return what the server would learn of ``project``'s releases (GitHub, cached)."""

    def refused(self, crumb: dict[str, Any], reason: str, *, via: str) -> None:
        """Record a breadcrumb refused before ingestion (for the tests' messages)."""

    def projects(self) -> list[str]:
        """Return the registered projects."""

    def usage(self, project: str, start: datetime, end: datetime, *, unique: bool) -> int:
        """Count uses of ``project`` between ``start`` and ``end``."""

    def ingest(self, crumb: CrumbIn, *, via: str, client: str | None) -> bool:
        """Store ``crumb`` (or record it as lost); return whether it was stored."""


def parse_datetime(value: Any) -> datetime:
    """Parse a ``DateTime`` input like the server: ``YYYY-MM-DDTHH:MM:SSZ`` or a date.

    Args:
        value: The input value.

    Returns:
        An aware UTC datetime.

    Raises:
        ValueError: ``Invalid isoformat string: ...`` for anything else.
    """
    if not isinstance(value, str):
        raise TypeError(f"Invalid isoformat string: {value!r}")
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.combine(date.fromisoformat(value), time(tzinfo=timezone.utc))


def _serialize_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime(TIMESTAMP_FORMAT)
    raise TypeError(f"DateTime cannot represent {value!r}")


def parse_version(value: Any) -> str:
    """Parse a ``Version`` input like the server (PEP 440, normalised).

    Without the ``packaging`` distribution the version is kept as sent.

    Raises:
        ValueError: ``Invalid version: ...`` for a version PEP 440 does not allow.
    """
    if not isinstance(value, str):
        raise TypeError(f"Invalid version: {value!r}")
    try:
        from packaging.version import Version
    except ImportError:  # pragma: no cover - packaging comes with pip and pytest
        return value
    return str(Version(value))


def _identity(value: Any) -> Any:
    return value


def _safe_str(value: Any) -> str:
    return str(value)


def _build() -> GraphQLSchema:
    built = build_schema(SDL)
    scalars = {
        "DateTime": (parse_datetime, _serialize_datetime),
        "JSON": (_identity, _identity),
        "SafeStr": (_safe_str, _safe_str),
        "Version": (parse_version, _safe_str),
    }
    for name, (parse, serialize) in scalars.items():
        scalar: Any = built.type_map[name]
        scalar.parse_value = parse
        scalar.serialize = serialize
        if hasattr(scalar, "coerce_input_value"):  # graphql-core 3.3 copies them at init
            scalar.coerce_input_value = parse
            scalar.coerce_output_value = serialize
    return built


#: The executable schema (built once; resolvers come from the root object).
schema = _build()


class _Root:
    """Resolvers of Query and Mutation, as methods named like the fields."""

    def __init__(self, backend: Backend, client: str | None) -> None:
        self._backend = backend
        self._client = client

    def get_projects(self, _info: Any) -> list[str]:
        return self._backend.projects()

    def check_project(self, _info: Any, project: str, project_version: str) -> dict[str, Any]:
        fetched = self._backend.fetch(project)
        return {
            "success": fetched["success"],
            "latest": fetched["version"],
            "flagged": project_version in fetched["bad_versions"],
            "message": "",
        }

    def get_usage(
        self,
        _info: Any,
        *,
        project: str,
        start: datetime,
        end: datetime | None = None,
        unique: bool = False,
    ) -> dict[str, Any]:
        known = self._backend.project(project)
        exists = known is not None and known.registered
        if exists:
            hits = self._backend.usage(project, start, end or utc_now(), unique=unique)
            message = ""
        else:
            hits = 0
            message = f'Project "{project}" is not being tracked'
        return {"hits": hits, "message": message, "unique": unique, "success": exists}

    def add_breadcrumb(
        self,
        _info: Any,
        *,
        project: str,
        project_version: str,
        language: str,
        language_version: str,
        ctx: dict[str, Any],
        proc: dict[str, Any],
    ) -> dict[str, Any]:
        if "/" not in project:
            return {"success": False, "message": ""}
        known = self._backend.project(project)
        if known is None or not known.registered:
            refused = {"project": project, "project_version": project_version}
            self._backend.refused(refused, "Project is not yet registered.", via="graphql")
            return {"success": False, "message": "Project is not yet registered."}
        crumb: CrumbIn = {
            "project": project,
            # Unlike REST, GraphQL does not replace invalid versions: stored as sent.
            "project_version": project_version,
            "language": language,
            "language_version": language_version,
            "user_id": ctx.get("user_id"),
            "session_id": ctx.get("session_id"),
            "user_type": "general",  # the mutation does not pass ctx.user_type on
            "platform": ctx.get("platform", "unknown"),
            "container": ctx.get("container", "unknown"),
            "is_ci": bool(ctx.get("is_ci", False)),
            "status": _STATUS[proc.get("status", "R")],
            "status_desc": proc.get("status_desc"),
            "error_type": proc.get("error_type"),
            "error_desc": proc.get("error_desc"),
        }
        # The server answers before ingesting (a background task): success either way.
        self._backend.ingest(crumb, via="graphql", client=self._client)
        return {"success": True, "message": ""}

    def add_project(self, _info: Any, *, p: dict[str, Any]) -> dict[str, Any]:
        """The mutation of older clients (migas-py 0.4): a breadcrumb plus check_project."""
        project = p["project"]
        if not project or "/" not in project:
            return {"success": False}
        known = self._backend.project(project)
        if known is None or not known.registered:
            refused = {"project": project, "project_version": p["project_version"]}
            self._backend.refused(refused, "Project is not registered.", via="graphql")
            return {"success": False}
        crumb: CrumbIn = {
            "project": project,
            "project_version": p["project_version"],  # PEP 440, normalised by the scalar
            "language": p["language"],
            "language_version": p["language_version"],
            "user_id": p.get("user_id"),
            "session_id": p.get("session_id"),
            "user_type": p.get("user_type", "general"),  # this one passes it on
            "platform": p.get("platform", "unknown"),
            "container": p.get("container", "unknown"),
            "is_ci": bool(p.get("is_ci", False)),
            "status": _STATUS[p.get("status", "R")],
            "status_desc": p.get("status_desc"),
            "error_type": p.get("error_type"),
            "error_desc": p.get("error_desc"),
        }
        fetched = self._backend.fetch(project)
        self._backend.ingest(crumb, via="graphql", client=self._client)
        return {
            "bad_versions": fetched["bad_versions"],
            "cached": fetched["cached"],
            "latest_version": fetched["version"],
            "message": "",
            "success": fetched["success"],
        }


def execute(
    backend: Backend,
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    client: str | None = None,
) -> dict[str, Any]:
    """Run one GraphQL operation and return the answer body.

    Args:
        backend: The collector's side of the resolvers.
        query: The GraphQL document.
        variables: The operation's variables.
        operation_name: Which operation of the document to run.
        client: The client's address (stored with breadcrumbs).

    Returns:
        ``{"data": ...}`` plus ``"errors"`` when there are any (``data`` is then
        usually ``null``), as the server answers it with HTTP 200.
    """
    result = graphql_sync(
        schema,
        query,
        root_value=_Root(backend, client),
        variable_values=variables,
        operation_name=operation_name,
    )
    answer: dict[str, Any] = {"data": result.data}
    if result.errors:
        answer["errors"] = [error.formatted for error in result.errors]
    return answer
