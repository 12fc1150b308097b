"""A local, migas-compatible collector for development, demos and tests.

:class:`LocalCollector` is a faithful stand-in for a migas 0.9 server: the same endpoints,
status codes and bodies, the same checks in the same order, the same rate and size limits,
and the same *silent* behaviour: breadcrumbs the real server answers ``202`` and then loses
at ingestion are lost here too, but recorded with the reason (:meth:`LocalCollector.lost`),
so tests can prove a client never sends them. It can also misbehave on purpose
(:meth:`LocalCollector.fault`) and emulate an older server without the REST endpoint.

It runs on a thread, in the test process or in another one (``migas-logging serve`` calls
:func:`serve_forever`), on the loopback interface, and keeps breadcrumbs in SQLite.

Modules: ``_server`` (HTTP, the REST checks, faults, the rate limit, the public class),
``_schema`` (the GraphQL schema and resolvers, with graphql-core) and ``_store``
(SQLite, and the database's column rules).

This package needs the optional dependency graphql-core:
``pip install 'migas-logging[collector]'``.
"""

from __future__ import annotations

try:
    import graphql as _graphql  # noqa: F401 - checked here for a helpful message
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "migas_logging.collector needs graphql-core; "
        "install it with: pip install 'migas-logging[collector]'"
    ) from exc

from ._server import (
    DEFAULT_RATE_LIMIT,
    FAULT_KINDS,
    LocalCollector,
    RequestRecord,
    free_port,
    release_port,
    serve_forever,
)

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "FAULT_KINDS",
    "LocalCollector",
    "RequestRecord",
    "free_port",
    "release_port",
    "serve_forever",
]
