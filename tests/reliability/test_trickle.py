"""A wall-clock bound on every request: no server can hold a send or a query past it.

``requests`` times each socket operation, not a request: a server that trickles its
answer one byte every 0.3 s never trips a read timeout. These tests play such servers
(and the classic silent ones) on raw sockets on 127.0.0.1 and time
:meth:`Transport.send` and :func:`check_project` against them.

Each bound is ``timeout + MARGIN``, generous for a loaded machine; without the bound a
trickled head takes about 30 s and a trickled body three timeouts.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migas_logging import query
from migas_logging.breadcrumb import Breadcrumb, Context
from migas_logging.collector import free_port
from migas_logging.exceptions import MigasConnectionError, MigasRequestError, MigasTimeoutError
from migas_logging.transport import Outcome, OutcomeKind, Transport

from .conftest import PROJECT, TEST_CERT, TEST_KEY, Blackhole, app_env, run_app

TIMEOUT = 1.5
MARGIN = 2.0
INTERVAL = 0.3

OK_BODY = b'{"success": true, "message": ""}'
#: A complete answer's head, about 30 s long at one byte every 0.3 s.
SLOW_HEAD = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(OK_BODY)}\r\n".encode()
    + b"X-Padding: "
    + b"p" * 20
    + b"\r\n\r\n"
)

#: What the server does with one request, given its number (1-based) and its path.
Plan = Callable[[int, str], str]


def crumb() -> Breadcrumb:
    ctx = Context(user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), platform="linux")
    return Breadcrumb(project=PROJECT, project_version="1.0.0", language_version="3.11", ctx=ctx)


class RawServer:
    """A keep-alive HTTP server on a raw socket that plays one action per request.

    Actions: ``ok`` (202 and the JSON of a migas server), ``trickle-head`` (the status
    line and headers one byte every ``INTERVAL``), ``trickle-body`` (the head at once,
    then the body one byte every ``INTERVAL``), ``silent`` (reads the request, never
    answers), ``cut-body`` (the head, then the connection closes in the body),
    ``slow-404`` and ``slow-413`` (answer after 0.8 s: no REST endpoint, or a
    size limit of 800 bytes). With ``tls`` (a server-side context) it speaks HTTPS.
    """

    def __init__(self, plan: Plan, tls: ssl.SSLContext | None = None) -> None:
        self.plan = plan
        self.tls = tls
        self.paths: list[str] = []
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._clients.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _request(self, conn: socket.socket, pending: bytes) -> tuple[str, bytes] | None:
        """Read one request; return its path and what was read past it."""
        while b"\r\n\r\n" not in pending:
            data = conn.recv(65536)
            if not data:
                return None
            pending += data
        head, _, rest = pending.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            data = conn.recv(65536)
            if not data:
                return None
            rest += data
        path = head.split(b" ", 2)[1].decode()
        return path, rest[length:]

    def _talk(self, conn: socket.socket) -> None:
        pending = b""
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while not self._stop.is_set():
                got = self._request(conn, pending)
                if got is None:
                    return
                path, pending = got
                with self._lock:
                    self.paths.append(path)
                    number = len(self.paths)
                if not self._act(conn, self.plan(number, path)):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, status: str, body: bytes) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def _trickle(self, conn: socket.socket, data: bytes) -> bool:
        for i in range(len(data)):
            if self._stop.wait(INTERVAL):
                return False
            conn.sendall(data[i : i + 1])
        return True

    def _act(self, conn: socket.socket, action: str) -> bool:
        """Play ``action``; True when the connection may serve another request."""
        if action == "ok":
            self._answer(conn, "202 Accepted", OK_BODY)
            return True
        if action == "trickle-head":
            return self._trickle(conn, SLOW_HEAD + OK_BODY)
        if action == "trickle-body":
            conn.sendall(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200\r\n\r\n"
            )
            return self._trickle(conn, b" " * 200) and False
        if action == "cut-body":
            conn.sendall(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200\r\n\r\n" + OK_BODY[:10]
            )
            return False
        if action == "slow-404":
            self._stop.wait(0.8)
            self._answer(conn, "404 Not Found", b'{"detail": "Not Found"}')
            return True
        if action == "slow-413":
            self._stop.wait(0.8)
            detail = b'{"detail": "Request body (1000) exceeds maximum size (800)"}'
            self._answer(conn, "413 Request Entity Too Large", detail)
            return True
        assert action == "silent", action
        self._stop.wait()
        return False

    def close(self) -> None:
        """Stop every conversation and the listening socket."""
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._clients:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    """Start raw servers for a test; all are closed after it."""
    servers: list[RawServer] = []

    def start(plan: Plan, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(plan, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def always(action: str) -> Plan:
    return lambda number, path: action


def timed_send(transport: Transport, **options: float) -> tuple[Outcome, float]:
    start = time.monotonic()
    outcome = transport.send(crumb(), **options)  # type: ignore[arg-type]
    return outcome, time.monotonic() - start


# --- the defect as it was found ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("track", [False, True])
def test_trickled_head_holds_neither_a_crashed_process_nor_check_project(
    serve: Callable[..., RawServer], tmp_path: Path, track: bool
) -> None:
    """Head trickled one byte every 0.3 s: a crash exits within its flush deadline, and
    check_project(timeout=1) returns within its timeout (both took 30 s before)."""
    server = serve(always("trickle-head"))
    body = f"""
        setup({server.url!r}, timeout=5, flush_deadline=1.0, excepthook=True, track={track})
        log.error("before the crash")
        logged()
        raise ValueError("the application's own failure")
    """
    run = run_app(body, app_env(tmp_path), timeout=90)
    assert 1 == run.returncode
    assert "ValueError: the application's own failure" in run.stderr
    assert run.exit_seconds < 1.0 + MARGIN, run.stderr
    start = time.monotonic()
    result = query.check_project(PROJECT, "1.0", endpoint=server.url, timeout=1)
    assert time.monotonic() - start < 1.0 + MARGIN
    assert not result["success"]


# --- every kind of slow or silent server, for a send and for a query ----------------

FAULTS = {
    "trickled-head": OutcomeKind.TIMEOUT,
    "trickled-body": OutcomeKind.TIMEOUT,
    "accepts-never-answers": OutcomeKind.TIMEOUT,
    "never-accepts": OutcomeKind.TIMEOUT,
    "refused": OutcomeKind.UNREACHABLE,
}


@pytest.fixture(params=list(FAULTS))
def fault(
    request: pytest.FixtureRequest, serve: Callable[..., RawServer]
) -> Iterator[tuple[str, str]]:
    """(name, url) of a server that plays one fault."""
    name = request.param
    if name == "never-accepts":
        hole = Blackhole()
        try:
            yield name, hole.url
        finally:
            hole.close()
        return
    if name == "refused":
        yield name, f"http://127.0.0.1:{free_port()}"
        return
    action = {
        "trickled-head": "trickle-head",
        "trickled-body": "trickle-body",
        "accepts-never-answers": "silent",
    }[name]
    yield name, serve(always(action)).url


def test_send_returns_within_its_timeout(fault: tuple[str, str]) -> None:
    """Whatever the server does, a send ends by its timeout, with the fault's kind."""
    name, url = fault
    outcome, elapsed = timed_send(Transport(url, TIMEOUT))
    assert FAULTS[name] is outcome.kind, outcome
    assert elapsed < TIMEOUT + MARGIN, (name, elapsed)


def test_check_project_returns_within_its_timeout(fault: tuple[str, str]) -> None:
    """check_project(timeout=...) ends by its timeout, with the fault's error."""
    name, url = fault
    expected: type[MigasRequestError] = (
        MigasTimeoutError if FAULTS[name] is OutcomeKind.TIMEOUT else MigasConnectionError
    )
    start = time.monotonic()
    with pytest.raises(expected):
        query.check_project(PROJECT, "1.0", endpoint=url, timeout=TIMEOUT, raise_on_error=True)
    assert time.monotonic() - start < TIMEOUT + MARGIN, name


def test_concurrent_queries_are_each_bounded(serve: Callable[..., RawServer]) -> None:
    """Queries from several threads at once against a trickling server all end in time."""
    server = serve(always("trickle-head"))
    elapsed: list[float] = []

    def ask() -> None:
        start = time.monotonic()
        result = query.check_project(PROJECT, "1.0", endpoint=server.url, timeout=TIMEOUT)
        assert not result["success"]
        elapsed.append(time.monotonic() - start)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert 4 == len(elapsed)
    assert max(elapsed) < TIMEOUT + MARGIN, elapsed
    assert 4 == server.connections


def test_trickled_head_over_tls_is_cut_too(
    serve: Callable[..., RawServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTPS (a verified test certificate) the bound holds the same way."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(TEST_CERT)
    key.write_text(TEST_KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    server = serve(lambda n, path: "trickle-head" if n == 1 else "ok", context)
    transport = Transport(server.url, TIMEOUT)
    outcome, elapsed = timed_send(transport)
    assert OutcomeKind.TIMEOUT is outcome.kind, outcome
    assert elapsed < TIMEOUT + MARGIN
    assert transport.send(crumb()).ok  # the certificate is trusted: the bound cut it


def test_trickling_http_proxy_is_cut_too(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through an HTTP proxy (HTTP_PROXY) that trickles, the bound holds the same way."""
    proxy = serve(always("trickle-head"))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    outcome, elapsed = timed_send(Transport("http://migas.invalid", TIMEOUT))
    assert OutcomeKind.TIMEOUT is outcome.kind, outcome
    assert elapsed < TIMEOUT + MARGIN
    assert ["http://migas.invalid/api/breadcrumb"] == proxy.paths  # it went to the proxy


# --- the deadline of a whole send ------------------------------------------------------


def test_deadline_ends_a_send_before_its_timeout(serve: Callable[..., RawServer]) -> None:
    """send(deadline=...) ends by the deadline even when the timeout is far longer."""
    server = serve(always("trickle-head"))
    outcome, elapsed = timed_send(Transport(server.url, 30), deadline=time.monotonic() + 1.0)
    assert OutcomeKind.TIMEOUT is outcome.kind, outcome
    assert elapsed < 1.0 + MARGIN


def test_deadline_covers_the_graphql_fallback(serve: Callable[..., RawServer]) -> None:
    """A slow 404, then a silent /graphql: the fallback shares the send's deadline."""
    server = serve(lambda n, path: "slow-404" if path.startswith("/api/") else "silent")
    transport = Transport(server.url, 30)
    outcome, elapsed = timed_send(transport, deadline=time.monotonic() + 1.5)
    assert OutcomeKind.TIMEOUT is outcome.kind, outcome
    assert elapsed < 1.5 + MARGIN
    assert ["/api/breadcrumb", "/graphql"] == server.paths
    assert transport.uses_graphql


def test_deadline_covers_the_413_refit(serve: Callable[..., RawServer]) -> None:
    """A slow 413 with a smaller limit, then silence: the refit shares the deadline."""
    server = serve(lambda n, path: "slow-413" if n == 1 else "silent")
    outcome, elapsed = timed_send(Transport(server.url, 30), deadline=time.monotonic() + 1.5)
    assert OutcomeKind.TIMEOUT is outcome.kind, outcome
    assert elapsed < 1.5 + MARGIN
    assert 2 == len(server.paths)


def test_passed_deadline_sends_nothing(serve: Callable[..., RawServer]) -> None:
    """A deadline already passed: TIMEOUT at once, and no connection is made."""
    server = serve(always("ok"))
    outcome, elapsed = timed_send(Transport(server.url, 5), deadline=time.monotonic() - 1)
    assert OutcomeKind.TIMEOUT is outcome.kind
    assert elapsed < 1.0
    time.sleep(0.2)
    assert 0 == server.connections


def test_deadline_does_not_stretch_the_timeout(serve: Callable[..., RawServer]) -> None:
    """A far deadline does not lengthen one request past its timeout."""
    server = serve(always("trickle-head"))
    outcome, elapsed = timed_send(Transport(server.url, TIMEOUT), deadline=time.monotonic() + 3600)
    assert OutcomeKind.TIMEOUT is outcome.kind
    assert elapsed < TIMEOUT + MARGIN


# --- after an aborted request, the transport still works --------------------------------


@pytest.mark.parametrize("first", ["trickle-head", "trickle-body", "silent"])
def test_transport_recovers_after_an_abort(serve: Callable[..., RawServer], first: str) -> None:
    """The next sends get a fresh connection, which is then kept alive."""
    server = serve(lambda n, path: first if n == 1 else "ok")
    transport = Transport(server.url, 1.0)
    outcome, elapsed = timed_send(transport)
    assert OutcomeKind.TIMEOUT is outcome.kind, outcome
    assert elapsed < 1.0 + MARGIN
    second, elapsed = timed_send(transport)
    assert second.ok, second
    assert elapsed < 1.0 + MARGIN
    assert transport.send(crumb()).ok
    assert 2 == server.connections  # the aborted one, then one kept alive for both
    assert 3 == len(server.paths)


def test_a_body_cut_short_is_a_server_error(serve: Callable[..., RawServer]) -> None:
    """A connection that breaks inside the body is a retryable server error, not a bug."""
    server = serve(lambda n, path: "cut-body" if n == 1 else "ok")
    transport = Transport(server.url, TIMEOUT)
    outcome = transport.send(crumb())
    assert OutcomeKind.SERVER_ERROR is outcome.kind, outcome
    assert outcome.retryable
    assert transport.send(crumb()).ok
