"""The HTTP side of the local collector: a small migas server on a thread.

Design
------
:class:`LocalCollector` owns three things:

- a :class:`~._store.BreadcrumbStore` (SQLite) that applies the real database's column
  rules, so that breadcrumbs the real server would lose after answering ``202`` are lost
  here too, but *recorded* (:meth:`LocalCollector.lost`) with the reason;
- a stdlib :class:`http.server.ThreadingHTTPServer` (one daemon thread per connection,
  HTTP/1.1 keep-alive, every answer written with one ``send`` and ``TCP_NODELAY`` so a
  client on a ``requests.Session`` is not slowed by Nagle and delayed ACKs);
- the state that tests steer at run time, each piece behind one lock: the injected fault,
  the rate-limit windows, the request log and the list of lost breadcrumbs.

A request goes through ``LocalCollector._handle``: the body is read in full (so a
keep-alive connection stays in sync whatever the answer), the request is logged, a fault
is applied if one is armed (breadcrumb and GraphQL endpoints only), then the endpoint
answers. The endpoints check in the order of the real server (FastAPI + strawberry):

``POST /api/breadcrumb``
    body parsing (malformed JSON is a ``422`` raised by FastAPI before any dependency
    runs, so it is not rate limited), rate limit ``429``, size ``413``, validation ``422``
    (pydantic's error shape; the query's ``wait`` first), project format and registration
    ``400``, then ingestion: ``202``, or with ``?wait=true`` ``200``/``500``. Ingestion is
    done before answering, so a test sees the row as soon as the client has its answer.
``POST /graphql``
    body parsing (``400``, plain text, as strawberry), rate limit then size
    (``429``/``413`` in GraphQL's error shape, as the server's extension), then the
    operation (``200``).
``GET /api/usage/{owner}/{repo}``
    the bearer token (``401``), its scope (``403``), the project (``404``), then the
    dashboard rows.
``GET /``
    a small HTML page (``200``), where the real server serves its home page.

The rate limit is on by default, with the real server's defaults (1,000 requests per
60 s); windows are kept per client address (the last ``X-Forwarded-For`` entry when
one is sent, as behind the real server's load balancer), shared by both endpoints; every
request that reaches the check counts, including the rejected ones.

Collector-only endpoints (not part of migas): ``GET /_collector/breadcrumbs`` (stored rows,
optionally ``?project=``, ``?session_id=``, ``?status=`` and ``?after=SEQ``),
``GET /_collector/lost``, ``GET /_collector/refused`` and ``GET /_collector/stats``.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final
from urllib.parse import parse_qs, unquote

from . import _schema
from ._store import (
    TIMESTAMP_FORMAT,
    BreadcrumbStore,
    CrumbIn,
    IngestionError,
    ProjectInfo,
    utc_now,
)

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "FAULT_KINDS",
    "LocalCollector",
    "RequestRecord",
    "free_port",
    "serve_forever",
]

#: The header every answer of a migas 0.9 server carries.
BACKEND_HEADER: Final = ("X-Backend-Server", "migas@0.9")
#: The other headers of every answer (a production server without geolocation).
_OTHER_HEADERS: Final = (("X-Backend-Geolocation", "false"), ("X-Backend-Mode", "production"))
#: The real server's rate limit: 1,000 requests per 60 s per client address.
DEFAULT_RATE_LIMIT: Final = (1000, 60.0)
#: The kinds accepted by :meth:`LocalCollector.fault`.
FAULT_KINDS: Final = frozenset({"delay", "hang", "status", "garbage", "close"})

_REST_PATH = "/api/breadcrumb"
_GRAPHQL_PATH = "/graphql"
_USAGE_PREFIX = "/api/usage/"
_MASTER = "master"  # a token of this project may read every project's usage
_HOME_PAGE = (
    "<!DOCTYPE html><html><head><title>migas</title></head><body>"
    "<h1>migas</h1><p>A local migas-compatible collector (migas-logging). "
    'Stored breadcrumbs: <a href="/_collector/breadcrumbs">/_collector/breadcrumbs</a>.'
    "</p></body></html>"
)
_CHECK_CACHE_SECONDS = 6 * 3600  # how long the server caches what GitHub said
_DEBUG_ENDPOINTS: Final = {  # collector-only: path -> method of LocalCollector
    "/_collector/breadcrumbs": "_debug_breadcrumbs",
    "/_collector/lost": "_debug_lost",
    "/_collector/refused": "_debug_refused",
    "/_collector/stats": "_debug_stats",
}
_LOG_LIMIT = 50_000  # entries kept in the request log and the lost list
_BODY_LIMIT = 16 * 1024 * 1024  # larger bodies are not read: 413 and the connection closes
_VERSION_RE = re.compile(r"[A-Za-z0-9._+-]+")
_TOO_MANY = "Too many requests, wait a minute."
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the collector saw it.

    Attributes:
        method: ``GET``, ``POST``...
        path: The request target, query string included.
        status: The status answered, or None when nothing was answered (a ``hang`` or
            ``close`` fault, a dropped connection, or an answer still pending).
        headers: The request headers.
        body: The request body.
        client: The client address (the last ``X-Forwarded-For`` entry if sent).
        client_port: The client's TCP port.
        connection: A number identifying the TCP connection (equal numbers: one
            keep-alive connection).
        time: When the request was read (``time.time()``).
        fault: The fault kind applied to it, if any.
    """

    method: str
    path: str
    status: int | None
    headers: dict[str, str]
    body: bytes
    client: str
    client_port: int
    connection: int
    time: float
    fault: str | None = None

    def json(self) -> Any:
        """Return the body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class _Fault:
    kind: str
    params: dict[str, Any]
    remaining: int | None
    endpoint: str | None
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: Sequence[tuple[str, str]] = ()
    close: bool = False


def _json(status: int, payload: Any, *, headers: Sequence[tuple[str, str]] = ()) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Response(status, body, "application/json", headers)


def _text(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> _Response:
    return _Response(status, text.encode(), content_type)


def _graphql_error(status: int, message: str) -> _Response:
    return _json(status, {"data": None, "errors": [{"message": message}]})


def _too_large(size: int, limit: int) -> str:
    return f"Request body ({size}) exceeds maximum size ({limit})"


# -- the rate limit -------------------------------------------------------------------------


class _RateLimiter:
    """Sliding windows per client address; rejected requests count too."""

    def __init__(self, limit: tuple[int, float] | None) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self.limit = limit

    @property
    def limit(self) -> tuple[int, float] | None:
        return self._limit

    @limit.setter
    def limit(self, limit: tuple[int, float] | None) -> None:
        if limit is not None:
            max_requests, window = limit
            if int(max_requests) < 0 or float(window) <= 0:
                raise ValueError(f"rate_limit must be (max_requests >= 0, window > 0): {limit}")
            limit = (int(max_requests), float(window))
        self._limit = limit

    def hit(self, key: str) -> bool:
        """Count one request of ``key``; return True when it is over the limit."""
        limit = self._limit
        if limit is None:
            return False
        max_requests, window = limit
        now = time.monotonic()
        with self._lock:
            stamps = self._windows.setdefault(key, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            over = len(stamps) >= max_requests
            stamps.append(now)
        return over

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


# -- validation of the REST body (pydantic's rules and error shape) -------------------------


class _Validator:
    """Validate a breadcrumb body like the server's pydantic models, collecting errors."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def error(self, kind: str, loc: list[Any], msg: str, value: Any, **ctx: str) -> None:
        err: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
        if ctx:
            err["ctx"] = ctx
        self.errors.append(err)

    def obj(self, data: Any, loc: list[Any]) -> dict[str, Any] | None:
        if isinstance(data, dict):
            return data
        self.error(
            "model_attributes_type",
            loc,
            "Input should be a valid dictionary or object to extract fields from",
            data,
        )
        return None

    def text(
        self, data: dict[str, Any], key: str, loc: list[Any], *, default: Any = ..., null: bool
    ) -> Any:
        if key not in data:
            if default is ...:
                self.error("missing", [*loc, key], "Field required", data)
            return None if default is ... else default
        value = data[key]
        if isinstance(value, str) or (value is None and null):
            return value
        self.error("string_type", [*loc, key], "Input should be a valid string", value)
        return None

    def choice(
        self, data: dict[str, Any], key: str, loc: list[Any], choices: Sequence[str]
    ) -> str:
        value = data.get(key, choices[0])
        if isinstance(value, str) and value in choices:
            return value
        quoted = [f"'{c}'" for c in choices]
        expected = ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
        self.error("enum", [*loc, key], f"Input should be {expected}", value, expected=expected)
        return choices[0]

    def boolean(self, data: dict[str, Any], key: str, loc: list[Any]) -> bool:
        """Pydantic's lax boolean: JSON booleans, 0 and 1, and words such as ``"yes"``."""
        value = data.get(key, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, (int, float, str)):
            self.error(
                "bool_parsing",
                [*loc, key],
                "Input should be a valid boolean, unable to interpret input",
                value,
            )
        else:
            self.error("bool_type", [*loc, key], "Input should be a valid boolean", value)
        return False


def _version(value: Any) -> Any:
    """The server's version validator: anything but ``[A-Za-z0-9._+-]+`` is ``unknown``."""
    if isinstance(value, str) and _VERSION_RE.fullmatch(value) is None:
        return "unknown"
    return value


def validate_breadcrumb(body: Any) -> tuple[CrumbIn | None, list[dict[str, Any]]]:
    """Validate a REST breadcrumb body like the server's ``BreadcrumbRequest``.

    Unknown fields are ignored; invalid versions become ``unknown``; omitted optional
    fields get the server's defaults.

    Args:
        body: The decoded JSON body.

    Returns:
        The breadcrumb, or None and pydantic-style errors (``loc`` starts with ``body``).
    """
    v = _Validator()
    data = v.obj(body, ["body"])
    if data is None:
        return None, v.errors
    project = v.text(data, "project", ["body"], null=False)
    project_version = v.text(data, "project_version", ["body"], null=False)
    language = v.text(data, "language", ["body"], default="python", null=False)
    language_version = v.text(data, "language_version", ["body"], default="0.0.0", null=False)
    loc = ["body", "ctx"]
    ctx = v.obj(data.get("ctx", {}), loc) or {}
    user_id = v.text(ctx, "user_id", loc, default=None, null=True)
    session_id = v.text(ctx, "session_id", loc, default=None, null=True)
    v.choice(ctx, "user_type", loc, ("general", "dev", "ci"))  # checked, then not passed on
    platform = v.text(ctx, "platform", loc, default="unknown", null=False)
    container = v.choice(ctx, "container", loc, ("unknown", "docker", "apptainer"))
    is_ci = v.boolean(ctx, "is_ci", loc)
    loc = ["body", "proc"]
    proc = v.obj(data.get("proc", {}), loc) or {}
    status = v.choice(proc, "status", loc, ("R", "C", "F", "S"))
    status_desc = v.text(proc, "status_desc", loc, default=None, null=True)
    error_type = v.text(proc, "error_type", loc, default=None, null=True)
    error_desc = v.text(proc, "error_desc", loc, default=None, null=True)
    if v.errors:
        return None, v.errors
    crumb: CrumbIn = {
        "project": project,
        "project_version": _version(project_version),
        "language": language,
        "language_version": _version(language_version),
        "user_id": user_id,
        "session_id": session_id,
        "user_type": "general",  # the server does not pass ctx.user_type on
        "platform": platform,
        "container": container,
        "is_ci": is_ci,
        "status": status,
        "status_desc": status_desc,
        "error_type": error_type,
        "error_desc": error_desc,
    }
    return crumb, []


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


# -- the HTTP server ------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections so that stop() can end them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], collector: LocalCollector) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.collector = collector
        self.connections: dict[int, socket.socket] = {}
        self.connections_lock = threading.Lock()
        self.connection_ids = itertools.count(1)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections that clients or faults dropped."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # pragma: no cover - a bug

    def close_connections(self) -> None:
        """Shut down every open client connection (idle keep-alive and hanging ones)."""
        with self.connections_lock:
            sockets = list(self.connections.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def open_connections(self) -> int:
        with self.connections_lock:
            return len(self.connections)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request after another on a connection and lets the collector answer."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 75  # seconds a keep-alive connection may stay idle (under usual proxies' 90+)
    server_version = "migas-logging-collector"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.connection_id = next(self.server.connection_ids)
            self.server.connections[self.connection_id] = self.connection

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.pop(self.connection_id, None)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Do not log each request to stderr."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Add the backend header to the stdlib's own answers (malformed requests)."""
        super().send_response(code, message)
        self.send_header(*BACKEND_HEADER)
        for name, value in _OTHER_HEADERS:
            self.send_header(name, value)

    def do_GET(self) -> None:
        self.server.collector._handle(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def read_body(self) -> bytes | None:
        """Read the request body; None when the connection must be dropped."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send(_json(400, {"detail": "Invalid Content-Length header"}), close=True)
            return None
        if length > _BODY_LIMIT:
            self.send(_json(413, {"detail": _too_large(length, _BODY_LIMIT)}), close=True)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > _BODY_LIMIT:
                self.send(_json(413, {"detail": _too_large(total, _BODY_LIMIT)}), close=True)
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def send(self, response: _Response, *, close: bool = False) -> None:
        """Write one complete answer with a single ``send``."""
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Server: {self.server_version}",
            f"{BACKEND_HEADER[0]}: {BACKEND_HEADER[1]}",
            *(f"{name}: {value}" for name, value in _OTHER_HEADERS),
        ]
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if close or response.close:
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + response.body)

    def drop(self, partial: bytes = b"", *, reset: bool = False) -> None:
        """Write ``partial`` (maybe nothing) and close the connection without an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            if partial:
                self.wfile.write(partial)
            if reset:  # RST instead of FIN
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            self.connection.shutdown(socket.SHUT_RDWR)


@dataclass
class _Request:
    """What the endpoints need of one request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    client: str


class _Log:
    """The request log entry being answered (mutable until answered)."""

    __slots__ = ("fault", "record", "status")

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        self.status: int | None = None
        self.fault: str | None = None

    def snapshot(self) -> RequestRecord:
        return replace(self.record, status=self.status, fault=self.fault)


# -- the collector --------------------------------------------------------------------------


class LocalCollector:
    """A local, migas-compatible server for development, demos and tests.

    It answers like a migas 0.9 server (REST and GraphQL), silently loses the breadcrumbs
    the real server would lose (and records them, see :meth:`lost`), keeps everything in
    SQLite, and can be told to misbehave (:meth:`fault`, :meth:`set_rate_limit`,
    ``rest=False``). Use it as a context manager::

        with LocalCollector() as collector:
            requests.post(collector.url + "/api/breadcrumb", json={...})
            assert collector.breadcrumbs()[0]["status"] == "R"

    Besides the migas endpoints it serves collector-only ones for humans and demos (a
    real server has none of them): ``GET /_collector/breadcrumbs`` (the stored rows, as
    :meth:`breadcrumbs`; ``?project=``, ``?session_id=``, ``?status=`` and ``?after=SEQ``
    filter), ``GET /_collector/lost`` (as :meth:`lost`), ``GET /_collector/refused`` (as
    :meth:`refused`) and ``GET /_collector/stats`` (as :meth:`stats`).

    Args:
        host: Address to listen on (loopback by default; there is no authentication).
        port: Port to listen on; 0 picks a free one (see :attr:`port` after start).
        db: ``":memory:"`` or an SQLite file path (kept between runs).
        register: Projects whose breadcrumbs are accepted.
        max_request_size: Largest body accepted, in bytes (the server's
            ``MIGAS_MAX_REQUEST_SIZE``).
        rate_limit: ``(max_requests, window_seconds)`` per client address (the server's
            ``MIGAS_MAX_REQUESTS_PER_WINDOW`` and ``MIGAS_REQUEST_WINDOW``); by default
            the real server's 1,000 requests per 60 s, so a client that would be
            throttled is throttled here too. None: no limit.
        rest: False emulates an older server: ``POST /api/breadcrumb`` answers 404 and
            clients must use the GraphQL ``add_breadcrumb`` mutation.
        latest: The latest release of projects, answered by ``check_project`` (a project
            not listed answers ``success: false, latest: "unknown"``).
        bad_versions: Versions of projects that ``check_project`` flags.
        tokens: Bearer token per project for ``GET /api/usage/{owner}/{repo}``; the
            token of the project ``"master"`` reads every project's usage.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        register: Sequence[str] = ("nipreps/migas-logging",),
        max_request_size: int = 2500,
        rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
        rest: bool = True,
        latest: Mapping[str, str] | None = None,
        bad_versions: Mapping[str, Sequence[str]] | None = None,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(register, str):
            register = (register,)
        self.host = host
        self._port = port
        self.max_request_size = max_request_size
        self.rest = rest
        self._store = BreadcrumbStore(db)
        # Rows stay readable after stop(); the database closes with the collector.
        weakref.finalize(self, self._store.close)
        for project in register:
            self._store.configure(project, registered=True)
        for project, version in (latest or {}).items():
            self._store.configure(project, latest=version)
        for project, versions in (bad_versions or {}).items():
            self._store.configure(project, bad_versions=versions)
        for project, token in (tokens or {}).items():
            self._store.configure(project, token=token)
        self._limiter = _RateLimiter(rate_limit)
        self._lock = threading.Lock()
        self._fault: _Fault | None = None
        self._held: set[threading.Event] = set()  # events that hanging requests wait on
        self._requests: deque[_Log] = deque(maxlen=_LOG_LIMIT)
        self._lost: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self._stats: dict[str, int] = {}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._refused: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self._backend = _Backend(self._store, self._ingest, self._refuse)

    # -- life cycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the requested one before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        if not self._port:
            raise RuntimeError("the collector has no port yet: start() it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the collector is serving."""
        return self._httpd is not None

    def start(self) -> LocalCollector:
        """Start serving on a background thread.

        After :meth:`stop`, ``start()`` serves again on the same port (useful to test
        clients against a server that goes away and comes back).

        Returns:
            The collector itself.

        Raises:
            RuntimeError: When it is already running.
            OSError: When the port cannot be bound.
        """
        if self._httpd is not None:
            raise RuntimeError("the collector is already running")
        self._stopping.clear()
        if self._port:
            release_port(self._port)  # a port free_port() kept for "down, then up"
        httpd = _HTTPServer((self.host, self._port), self)
        self._port = int(httpd.server_address[1])
        self._httpd = httpd
        self._started_at = time.monotonic()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"migas-collector:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every client connection, hanging ones included.

        Stored rows stay readable after stop. Calling it twice is harmless.

        Args:
            timeout: Longest wait for the server thread to end, in seconds.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        self._release_held()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        while httpd.open_connections() and time.monotonic() < deadline:
            httpd.close_connections()
            time.sleep(0.01)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LocalCollector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration ----------------------------------------------------------------------

    def register(
        self,
        project: str,
        *,
        latest: str | None = None,
        bad_versions: Sequence[str] = (),
        token: str | None = None,
    ) -> None:
        """Register ``project`` so that its breadcrumbs are accepted.

        Args:
            project: ``owner/repo``.
            latest: Its latest release, answered by ``check_project``.
            bad_versions: Versions that ``check_project`` flags.
            token: Bearer token for its usage endpoint.
        """
        self._store.configure(
            project,
            registered=True,
            latest=latest,
            bad_versions=bad_versions or None,
            token=token,
        )

    def set_rate_limit(self, limit: tuple[int, float] | None) -> None:
        """Set the rate limit, ``(max_requests, window_seconds)``, or remove it (None).

        Requests already counted stay in the windows.

        Args:
            limit: The new limit.
        """
        self._limiter.limit = limit

    def fault(self, kind: str, **params: Any) -> None:
        """Make the breadcrumb and GraphQL endpoints misbehave.

        Kinds and their parameters:

        - ``"delay"``: wait ``seconds`` (0.2), then answer normally;
        - ``"hang"``: read the request and never answer, until :meth:`clear_fault` (then
          the request is answered normally) or :meth:`stop` (then its connection is
          closed);
        - ``"status"``: answer ``status`` (500) with a plausible body for that status,
          or ``body`` (str, bytes, or a JSON value), ``content_type`` and extra
          ``headers`` (e.g. ``{"Retry-After": "2"}``);
        - ``"garbage"``: answer ``status`` (202 on REST, 200 on GraphQL) with a body that
          is not JSON (``body``, ``content_type``);
        - ``"close"``: send ``partial`` bytes of an answer (default ``b"HTTP/1.1 20"``, a
          cut status line) and close the connection; ``reset=True`` closes with a TCP
          reset. (Cut *headers* are no error to ``http.client``: it reads them as a
          complete answer with an empty body, a case worth testing too.)

        Common parameters: ``count`` (apply to the next N requests only, then answer
        normally) and ``endpoint`` (``"rest"`` or ``"graphql"``: only that one).
        A new fault replaces the current one (and releases requests held by a hang).

        Args:
            kind: One of :data:`FAULT_KINDS`.
            **params: The kind's parameters.

        Raises:
            ValueError: For an unknown kind, parameter or endpoint.
        """
        allowed = {
            "delay": {"seconds"},
            "hang": set(),
            "status": {"status", "body", "content_type", "headers"},
            "garbage": {"status", "body", "content_type"},
            "close": {"partial", "reset"},
        }
        if kind not in allowed:
            raise ValueError(f"unknown fault {kind!r}; use one of {sorted(FAULT_KINDS)}")
        count = params.pop("count", None)
        endpoint = params.pop("endpoint", None)
        unknown = set(params) - allowed[kind]
        if unknown:
            raise ValueError(f"fault {kind!r} takes no {sorted(unknown)}")
        if endpoint not in (None, "rest", "graphql"):
            raise ValueError(f"endpoint must be 'rest', 'graphql' or None, not {endpoint!r}")
        if count is not None and int(count) < 1:
            raise ValueError(f"count must be at least 1, not {count!r}")
        new = _Fault(kind, params, None if count is None else int(count), endpoint)
        with self._lock:
            self._fault = new
        self._release_held()

    def clear_fault(self) -> None:
        """Answer normally again; requests held by a ``hang`` fault are answered now."""
        with self._lock:
            self._fault = None
        self._release_held()

    def reset(self) -> None:
        """Forget stored breadcrumbs, lost ones, the request log and the rate-limit windows.

        Projects, the fault and the rate limit itself are kept.
        """
        self._store.clear()
        self._limiter.reset()
        self._backend.forget()
        with self._lock:
            self._requests.clear()
            self._lost.clear()
            self._refused.clear()
            self._stats.clear()

    # -- what was received ------------------------------------------------------------------

    def breadcrumbs(
        self,
        *,
        project: str | None = None,
        session_id: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return the stored breadcrumbs, ordered by ``seq`` (the order of storage).

        Each row has ``id``, ``seq``, ``timestamp`` (UTC, ``YYYY-MM-DDTHH:MM:SSZ``, the
        server's one-second resolution), the breadcrumb's fields as stored (after the
        server's silent changes), ``via`` (``"rest"`` or ``"graphql"``) and ``client``.
        ``user_type``, ``platform`` and ``container`` are those the real server keeps
        for the ``user_id``: the first ones it was sent (None without a ``user_id``).

        Args:
            project: Only this project's.
            session_id: Only this session's.
            status: Only rows with this status (``R``, ``C``, ``F`` or ``S``).
        """
        return self._store.rows(project=project, session_id=session_id, status=status)

    def lost(self) -> list[dict[str, Any]]:
        """Return the breadcrumbs accepted (``202``) but lost at ingestion.

        Each has the breadcrumb's fields as accepted (validated, with REST's ``unknown``
        versions, before the database's column rules), ``via``, ``client``,
        ``timestamp`` and ``reason`` (what the database refused, in words).
        """
        with self._lock:
            return [dict(item) for item in self._lost]

    def refused(self, *, project: str | None = None) -> list[dict[str, Any]]:
        """Return the breadcrumbs the collector refused, oldest first (the latest 50,000).

        A refused breadcrumb is answered ``4xx`` by the REST endpoint (``400`` not
        registered, ``413``, ``422``, ``429``) or ``success: false`` by a GraphQL
        mutation (an unregistered project). Each has ``project`` and
        ``project_version`` (None when the body had none), ``status`` (the HTTP status;
        None for GraphQL), ``reason``, ``via``, ``client`` and ``timestamp``.

        Args:
            project: Only this project's.
        """
        with self._lock:
            items = [dict(item) for item in self._refused]
        return [i for i in items if project is None or i["project"] == project]

    def requests(self) -> list[RequestRecord]:
        """Return every request seen (the latest 50,000), oldest first."""
        with self._lock:
            return [log.snapshot() for log in self._requests]

    def wait_for(
        self, count: int, *, timeout: float = 5.0, project: str | None = None
    ) -> list[dict[str, Any]]:
        """Block until at least ``count`` breadcrumbs (of ``project``) are stored.

        Args:
            count: How many stored breadcrumbs to wait for.
            timeout: Longest wait, in seconds.
            project: Count only this project's.

        Returns:
            The stored breadcrumbs (of ``project``), ordered by ``seq``.

        Raises:
            TimeoutError: With the rows stored so far, the breadcrumbs refused (and how
                to register a project the collector refused) and the lost ones.
        """
        reached, rows = self._store.wait_rows(count, timeout=timeout, project=project)
        if not reached:
            message = f"waited {timeout}s for {count} breadcrumb(s), {len(rows)} stored"
            refused = self.refused(project=project)
            if refused:
                message += "; " + _refusals(refused)
            raise TimeoutError(f"{message}; stored: {rows!r}; lost: {self.lost()!r}")
        return rows

    def wait_for_requests(
        self, count: int, *, timeout: float = 5.0, path: str | None = None
    ) -> list[RequestRecord]:
        """Block until at least ``count`` requests (to ``path``) have been received.

        Useful with a ``hang`` fault, whose requests are never answered.

        Args:
            count: How many requests to wait for.
            timeout: Longest wait, in seconds.
            path: Count only requests to this path (the query string is ignored).

        Returns:
            The matching requests.

        Raises:
            TimeoutError: When fewer arrived in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = [r for r in self.requests() if path is None or r.path.partition("?")[0] == path]
            if len(seen) >= count:
                return seen
            if time.monotonic() >= deadline:
                raise TimeoutError(f"waited {timeout}s for {count} request(s), got {seen!r}")
            time.sleep(0.005)

    def stats(self) -> dict[str, Any]:
        """Return counters (also served at ``GET /_collector/stats``)."""
        with self._lock:
            counters = dict(self._stats)
            fault = self._fault
            lost = len(self._lost)
            refused = len(self._refused)
        limit = self._limiter.limit
        return {
            "server": BACKEND_HEADER[1],
            "url": self.url if self._port else None,
            "uptime_seconds": round(time.monotonic() - self._started_at, 3)
            if self.running
            else 0.0,
            "stored": self._store.count(),
            "lost": lost,
            "refused": refused,
            "requests": counters.pop("requests", 0),
            "rate_limited": counters.pop("rate_limited", 0),
            "faults_applied": counters.pop("faults", 0),
            "by_status": {k[7:]: n for k, n in sorted(counters.items()) if k[:7] == "status:"},
            "projects": self._store.projects(),
            "rest": self.rest,
            "rate_limit": None if limit is None else list(limit),
            "max_request_size": self.max_request_size,
            "fault": None if fault is None else {"kind": fault.kind, **_jsonable(fault.params)},
        }

    def _refuse(
        self,
        crumb: Mapping[str, Any],
        reason: str,
        *,
        via: str,
        status: int | None = None,
        client: str | None = None,
    ) -> None:
        """Remember a breadcrumb refused before ingestion (see :meth:`refused`)."""
        item = {
            "project": crumb.get("project"),
            "project_version": crumb.get("project_version"),
            "status": status,
            "reason": reason,
            "via": via,
            "client": client,
            "timestamp": utc_now().strftime(TIMESTAMP_FORMAT),
        }
        with self._lock:
            self._refused.append(item)

    def _ingest(self, crumb: CrumbIn, *, via: str, client: str | None) -> bool:
        """Store ``crumb`` like the real server, or record it as lost; True if stored."""
        try:
            self._store.ingest(crumb, via=via, client=client)
        except IngestionError as exc:
            lost = {
                **crumb,
                "timestamp": utc_now().strftime(TIMESTAMP_FORMAT),
                "via": via,
                "client": client,
                "reason": exc.reason,
            }
            with self._lock:
                self._lost.append(lost)
            return False
        return True

    # -- answering --------------------------------------------------------------------------

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._stats[key] = self._stats.get(key, 0) + 1

    def _release_held(self) -> None:
        with self._lock:
            held, self._held = self._held, set()
        for event in held:
            event.set()

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or fault.endpoint not in (None, endpoint):
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            if fault.kind == "hang":
                self._held.add(fault.released)
            self._stats["faults"] = self._stats.get("faults", 0) + 1
            return fault

    def _handle(self, handler: _Handler) -> None:
        """Answer one request (called on the connection's thread)."""
        body = handler.read_body()
        if body is None:
            return
        target = handler.path
        raw_path, _, query = target.partition("?")
        path = unquote(raw_path)
        host, port = handler.client_address[:2]
        forwarded = handler.headers.get("X-Forwarded-For")
        client = forwarded.split(",")[-1].strip() if forwarded else str(host)
        record = RequestRecord(
            method=handler.command,
            path=target,
            status=None,
            headers=dict(handler.headers.items()),
            body=body,
            client=client,
            client_port=int(port),
            connection=handler.connection_id,
            time=time.time(),
        )
        log = _Log(record)
        with self._lock:
            self._requests.append(log)
            self._stats["requests"] = self._stats.get("requests", 0) + 1
        request = _Request(
            method=handler.command,
            path=path,
            query=parse_qs(query, keep_blank_values=True),
            headers=handler.headers,
            body=body,
            client=client,
        )
        try:
            response = self._route(request, handler, log)
        except Exception:  # a bug here: answer like Starlette, and say it on stderr
            traceback.print_exc()
            response = _text(500, "Internal Server Error")
        if response is None:
            return
        log.status = response.status  # before sending: the client may look right after
        self._count(f"status:{response.status}")
        handler.send(response)

    def _route(self, request: _Request, handler: _Handler, log: _Log) -> _Response | None:
        path, method = request.path, request.method
        endpoint: Callable[[_Request], _Response]
        if path == _REST_PATH and self.rest:
            endpoint, methods, faultable = self._rest_breadcrumb, ("POST",), "rest"
        elif path == _GRAPHQL_PATH:
            endpoint, methods, faultable = self._graphql, ("POST",), "graphql"
        elif path.startswith(_USAGE_PREFIX) and len(path) > len(_USAGE_PREFIX):
            endpoint, methods, faultable = self._usage, ("GET",), ""
        elif path == "/":
            endpoint, methods, faultable = self._home, ("GET",), ""
        elif path in _DEBUG_ENDPOINTS:
            endpoint, methods, faultable = getattr(self, _DEBUG_ENDPOINTS[path]), ("GET",), ""
        else:
            return _json(404, {"detail": "Not Found"})
        if method not in methods:
            return _json(
                405, {"detail": "Method Not Allowed"}, headers=[("Allow", ", ".join(methods))]
            )
        if faultable:
            fault = self._take_fault(faultable)
            if fault is not None:
                log.fault = fault.kind
                handled, faulty = self._apply_fault(fault, faultable, request, handler)
                if handled:
                    return faulty
        return endpoint(request)

    def _apply_fault(
        self, fault: _Fault, endpoint: str, request: _Request, handler: _Handler
    ) -> tuple[bool, _Response | None]:
        """Apply ``fault``: (False, None) to answer normally, or (True, the faulty answer).

        The faulty answer is None when the connection was dropped instead.
        """
        params = fault.params
        if fault.kind == "delay":
            self._stopping.wait(float(params.get("seconds", 0.2)))
            return False, None
        if fault.kind == "hang":
            fault.released.wait()
            if self._stopping.is_set():
                handler.drop()
                return True, None
            return False, None
        if fault.kind == "close":
            partial = params.get("partial", b"HTTP/1.1 20")  # a cut status line
            if isinstance(partial, str):
                partial = partial.encode()
            handler.drop(partial, reset=bool(params.get("reset", False)))
            return True, None
        if fault.kind == "garbage":
            status = int(params.get("status", 202 if endpoint == "rest" else 200))
            body = params.get(
                "body",
                "<!DOCTYPE html><html><head><title>Sign in</title></head>"
                "<body><p>Please sign in to use this network.</p></body></html>",
            )
            content_type = params.get("content_type", "text/html; charset=utf-8")
            return True, _Response(status, _as_bytes(body), content_type)
        status = int(params.get("status", 500))
        if "body" in params:
            body = params["body"]
            default_type = "text/plain; charset=utf-8"
            if not isinstance(body, (str, bytes)):
                body, default_type = json.dumps(body), "application/json"
            response = _Response(status, _as_bytes(body), params.get("content_type", default_type))
        else:
            response = self._plausible(status, endpoint, request)
            if "content_type" in params:
                response.content_type = params["content_type"]
        response.headers = [*response.headers, *dict(params.get("headers") or {}).items()]
        return True, response

    def _plausible(self, status: int, endpoint: str, request: _Request) -> _Response:
        """What a migas deployment plausibly answers with ``status``."""
        if status == 500:
            return _text(500, "Internal Server Error")  # Starlette's unhandled error
        if status in (502, 503, 504):
            phrase = f"{status} {HTTPStatus(status).phrase}"
            return _text(
                status,
                f"<html><head><title>{phrase}</title></head><body><h1>{phrase}</h1></body></html>",
                "text/html; charset=utf-8",
            )
        if status == 413:
            message = _too_large(len(request.body), self.max_request_size)
        elif status == 429:
            message = _TOO_MANY
        else:
            message = ""
        if endpoint == "graphql":
            if message:
                return _graphql_error(status, message)
            if status == 400:
                return _text(400, "Unable to parse request body as JSON")
        if status == 422:
            return _json(
                422,
                {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required"}]},
            )
        if status == 400:
            message = "Project is not registered."
        try:
            message = message or HTTPStatus(status).phrase
        except ValueError:
            message = message or "Error"
        return _json(status, {"detail": message})

    # -- endpoints --------------------------------------------------------------------------

    def _rest_breadcrumb(self, request: _Request) -> _Response:
        response, body = self._rest_answer(request)
        if 400 <= response.status < 500:  # refused: remembered for wait_for's message
            detail = json.loads(response.body).get("detail")
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                first = detail[0]
                where = ".".join(str(part) for part in first.get("loc", ()))
                detail = f"{where}: {first.get('msg')}"
            sent = body if isinstance(body, dict) else {}
            self._refuse(
                {k: sent.get(k) for k in ("project", "project_version")},
                str(detail),
                via="rest",
                status=response.status,
                client=request.client,
            )
        return response

    def _rest_answer(self, request: _Request) -> tuple[_Response, Any]:
        """The answer to a REST breadcrumb, and the body as decoded (None if not)."""
        body: Any = None
        if request.body:
            if _is_json(request.headers.get("Content-Type")):
                try:
                    body = json.loads(request.body)
                except json.JSONDecodeError as exc:  # FastAPI: before any dependency runs
                    detail = {
                        "type": "json_invalid",
                        "loc": ["body", exc.pos],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                    return _json(422, {"detail": [detail]}), body
                except ValueError:  # not UTF-8 (or UTF-16/32) at all
                    return _json(400, {"detail": "There was an error parsing the body"}), body
            else:  # not parsed: pydantic sees bytes, not an object
                body = request.body.decode("utf-8", "replace")
        if self._limiter.hit(request.client):
            self._count("rate_limited")
            return _json(429, {"detail": _TOO_MANY}), body
        if len(request.body) > self.max_request_size:
            return _json(
                413, {"detail": _too_large(len(request.body), self.max_request_size)}
            ), body
        errors: list[dict[str, Any]] = []
        wait = False
        if "wait" in request.query:
            raw = request.query["wait"][-1]
            if raw.lower() in _TRUE | _FALSE:
                wait = raw.lower() in _TRUE
            else:
                errors.append(
                    {
                        "type": "bool_parsing",
                        "loc": ["query", "wait"],
                        "msg": "Input should be a valid boolean, unable to interpret input",
                        "input": raw,
                    }
                )
        if body is None:
            errors.append(
                {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
            )
            crumb = None
        else:
            crumb, body_errors = validate_breadcrumb(body)
            errors.extend(body_errors)
        if errors or crumb is None:
            return _json(422, {"detail": errors}), body
        if "/" not in crumb["project"]:
            return _json(400, {"detail": "Invalid project format (expected owner/repo)."}), body
        if not self._store.is_registered(crumb["project"]):
            return _json(400, {"detail": "Project is not registered."}), body
        stored = self._ingest(crumb, via="rest", client=request.client)
        if not wait:
            return _json(202, {"success": True, "message": ""}), body
        if stored:
            return _json(200, {"success": True, "message": ""}), body
        return _json(500, {"success": False, "message": "Error during ingestion."}), body

    def _graphql(self, request: _Request) -> _Response:
        if not _is_json(request.headers.get("Content-Type")):
            return _text(400, "Unsupported content type")
        try:
            payload = json.loads(request.body)
        except ValueError:
            return _text(400, "Unable to parse request body as JSON")
        if not isinstance(payload, dict):
            return _text(400, "Unable to parse request body as JSON")
        query = payload.get("query")
        if not isinstance(query, str) or not query:
            return _text(400, "No GraphQL query found in the request")
        # The server's schema extension: the rate limit, then the size.
        if self._limiter.hit(request.client):
            self._count("rate_limited")
            return _graphql_error(429, _TOO_MANY)
        if len(request.body) > self.max_request_size:
            return _graphql_error(413, _too_large(len(request.body), self.max_request_size))
        variables = payload.get("variables")
        operation = payload.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            return _graphql_error(200, "Variables must be given as a JSON object.")
        if operation is not None and not isinstance(operation, str):
            return _graphql_error(200, "The operation name must be a string.")
        answer = _schema.execute(self._backend, query, variables, operation, client=request.client)
        return _json(200, answer)

    def _usage(self, request: _Request) -> _Response:
        """``GET /api/usage/{project}``: the token, its scope, the project, then rows."""
        auth = request.headers.get("Authorization") or ""
        project = request.path[len(_USAGE_PREFIX) :]
        if not auth.startswith("Bearer "):
            return _json(401, {"detail": "Missing or malformed Authorization header."})
        scope = self._store.project_for_token(auth.split(" ", 1)[1])
        if scope is None:
            return _json(401, {"detail": "Invalid or insufficient token."})
        if scope not in (_MASTER, project):
            return _json(403, {"detail": f"Token does not have access to project {project}."})
        if not self._store.is_registered(project):
            return _json(404, {"detail": f"Project {project} not found."})
        errors = []
        weeks_raw = request.query.get("weeks", ["1"])[-1]
        try:
            weeks = int(weeks_raw)
        except ValueError:
            errors.append(
                {
                    "type": "int_parsing",
                    "loc": ["query", "weeks"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": weeks_raw,
                }
            )
        before = None
        if "since" in request.query:
            before = request.query["since"][-1]
            try:
                before = date.fromisoformat(before).isoformat()
            except ValueError:
                errors.append(
                    {
                        "type": "date_from_datetime_parsing",
                        "loc": ["query", "since"],
                        "msg": "Input should be a valid date or datetime, invalid character "
                        "in year",
                        "input": before,
                    }
                )
        if errors:
            return _json(422, {"detail": errors})
        try:
            start = utc_now() - timedelta(weeks=weeks)
        except OverflowError:  # a week count no clock reaches: every session counts
            start = datetime(1, 1, 1, tzinfo=timezone.utc) + timedelta(hours=48)
        return _json(200, self._store.usage_rows(project, start, before=before))

    def _home(self, request: _Request) -> _Response:
        return _text(200, _HOME_PAGE, "text/html; charset=utf-8")

    def _debug_breadcrumbs(self, request: _Request) -> _Response:
        def last(name: str) -> str | None:
            values = request.query.get(name)
            return values[-1] if values else None

        after = last("after")
        if after is not None and not after.isdigit():
            return _json(422, {"detail": f"after must be a seq number, not {after!r}"})
        rows = self._store.rows(
            project=last("project"),
            session_id=last("session_id"),
            status=last("status"),
            after=None if after is None else int(after),
        )
        return _json(200, rows)

    def _debug_lost(self, request: _Request) -> _Response:
        return _json(200, self.lost())

    def _debug_refused(self, request: _Request) -> _Response:
        return _json(200, self.refused(project=request.query.get("project", [None])[-1]))

    def _debug_stats(self, request: _Request) -> _Response:
        return _json(200, self.stats())


class _Backend:
    """The collector as the GraphQL resolvers see it (:class:`._schema.Backend`)."""

    def __init__(
        self,
        store: BreadcrumbStore,
        ingest: Callable[..., bool],
        refused: Callable[..., None],
    ) -> None:
        self._store = store
        self.ingest = ingest
        self.refused = refused
        self._lock = threading.Lock()
        self._fetched: dict[str, float] = {}  # project -> when its release was "fetched"

    def project(self, project: str) -> ProjectInfo | None:
        return self._store.project(project)

    def fetch(self, project: str) -> _schema.Fetched:
        """What the server learns from GitHub, here from the configuration.

        Like the server, a known latest release is cached for 6 hours (``cached``);
        an unknown one is asked for again each time.
        """
        known = self._store.project(project)
        latest = None if known is None else known.latest
        now = time.monotonic()
        with self._lock:
            fetched_at = self._fetched.get(project)
            cached = fetched_at is not None and now - fetched_at < _CHECK_CACHE_SECONDS
            if latest is not None and not cached:
                self._fetched[project] = now
        return {
            "bad_versions": [] if known is None else list(known.bad_versions),
            "cached": cached and latest is not None,
            "success": latest is not None,
            "version": "unknown" if latest is None else latest.lstrip("v"),
        }

    def forget(self) -> None:
        with self._lock:
            self._fetched.clear()

    def projects(self) -> list[str]:
        return self._store.projects()

    def usage(self, project: str, start: datetime, end: datetime, *, unique: bool) -> int:
        return self._store.usage(project, start, end, unique=unique)


def _refusals(refused: Sequence[Mapping[str, Any]]) -> str:
    """Summarise refused breadcrumbs, with the fix for unregistered projects."""
    counts: dict[tuple[Any, ...], int] = {}
    for item in refused:
        key = (item["status"], item["reason"], item["project"])
        counts[key] = counts.get(key, 0) + 1
    parts = []
    for (status, reason, project), n in counts.items():
        answer = f"{status} {reason!r}" if status is not None else repr(reason)
        parts.append(f"{n} answered {answer} for project {project!r}")
    text = f"the collector REFUSED {len(refused)} breadcrumb(s): " + ", ".join(parts)
    unregistered = sorted(
        {str(i["project"]) for i in refused if "not registered" in i["reason"] and i["project"]}
    )
    if unregistered:
        text += (
            f" (register {', '.join(unregistered)}: collector.register('owner/repo'), "
            "LocalCollector(register=[...]), `migas_register = owner/repo` in the pytest "
            "ini file for the migas_collector fixture, or `migas-logging serve --register "
            "owner/repo`)"
        )
    return text


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.decode("latin-1") if isinstance(v, bytes) else v
        for k, v in params.items()
        if isinstance(v, (str, bytes, int, float, bool, type(None)))
    }


# -- helpers --------------------------------------------------------------------------------


_reserved: collections.deque[socket.socket] = collections.deque()
_RESERVED_MAX = 256


def release_port(port: int) -> int:
    """Give back a port :func:`free_port` reserved, so that a server (of this process or
    of a subprocess, such as ``migas-logging serve --port``) can listen on it.

    Returns:
        The port.
    """
    for sock in list(_reserved):
        try:
            if sock.getsockname()[1] == port:
                _reserved.remove(sock)
                sock.close()
        except OSError:
            continue
    return port


def free_port(host: str = "127.0.0.1") -> int:
    """Return a loopback TCP port that nothing listens on, and nothing else will.

    Connections to it are refused, which is how tests emulate an unreachable server.
    The port stays bound (not listening) by this process, so that no other server (of
    another test running at the same time) can be given it while it is in use; the
    latest 256 stay reserved. A :class:`LocalCollector` started on it here takes it
    over ("down, then up").

    Args:
        host: The address to find a port on.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    _reserved.append(sock)
    while len(_reserved) > _RESERVED_MAX:
        _reserved.popleft().close()
    return int(sock.getsockname()[1])


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    db: str = ":memory:",
    register: Sequence[str] = (),
    rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
    latest: Mapping[str, str] | None = None,
    ready: Callable[[LocalCollector], None] | None = None,
) -> None:
    """Run a collector until KeyboardInterrupt or SIGTERM (for ``migas-logging serve``).

    Args:
        host: Address to listen on.
        port: Port to listen on (0: any free port; ``ready`` learns which).
        db: ``":memory:"`` or an SQLite file path.
        register: Projects whose breadcrumbs are accepted.
        rate_limit: ``(max_requests, window_seconds)`` (default: the real server's), or
            None for no limit.
        latest: The latest release of projects, answered by ``check_project``.
        ready: Called with the running collector once it listens (e.g. to print its URL).

    Raises:
        OSError: When the address cannot be bound (in use, not an address of this host).
        sqlite3.Error: When the database file cannot be opened.
    """
    stop = threading.Event()
    collector = LocalCollector(
        host=host,
        port=port,
        db=db,
        register=tuple(register),
        rate_limit=rate_limit,
        latest=latest,
    )
    with _stop_on_sigterm(stop):
        collector.start()
        try:
            if ready is not None:
                ready(collector)
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            collector.stop()
