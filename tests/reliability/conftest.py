"""Shared parts of the reliability suite: real servers on 127.0.0.1 and a program runner.

Everything here is real: :class:`~migas_logging.collector.LocalCollector` for a migas
server, and three tiny TCP servers for faults the collector cannot play (an answer that
trickles forever, a server whose accept queue is full, a TLS server whose certificate
nobody trusts). The parent ``tests/conftest.py`` resets the process state around every
test (pipeline, session, hooks, root handlers) and points ``XDG_CONFIG_HOME`` at a
temporary directory.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from migas_logging import MigasHandler
from migas_logging.collector import LocalCollector

from . import _app

PROJECT = _app.PROJECT
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

#: Environment variables of the library: removed from every program the suite runs.
MIGAS_VARIABLES = (
    "MIGAS_OPTOUT",
    "MIGAS_ENDPOINT",
    "MIGAS_TIMEOUT",
    "MIGAS_LOG_LEVEL",
    "MIGAS_SESSION_ID",
    "MIGAS_AUDIT_FILE",
)


# --- process state the parent conftest does not reset ------------------------------


@pytest.fixture(autouse=True)
def _no_stale_structlog_marker() -> Iterator[None]:
    """Forget the structlog processor's per-thread "already sent" marker around each test.

    It is process state (``migas_logging.handler._shipped``) that outlives a processor:
    left over from one test it can make the next test's first event a "duplicate"
    (the bug held by ``test_structlog_consecutive_events_are_not_duplicates``).
    """
    from migas_logging import handler

    marker = getattr(handler, "_shipped", None)
    if marker is not None:
        marker.__dict__.clear()
    yield
    if marker is not None:
        marker.__dict__.clear()


# --- the collector and the application's logger -------------------------------------


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    """A migas-compatible server on 127.0.0.1 that accepts PROJECT, without a rate limit.

    These tests send thousands of breadcrumbs a minute on purpose, past the real
    server's 1,000 (the collector's default).
    """
    with LocalCollector(register=(PROJECT,), rate_limit=None) as c:
        yield c


@pytest.fixture
def app_log(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A fresh logger per test, not propagating (only its own handlers see it)."""
    logger = logging.getLogger(f"rel.{request.node.name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for h in logger.handlers[:]:
        logger.removeHandler(h)
        h.close()


def make_handler(url: str, logger: logging.Logger, **options: Any) -> MigasHandler:
    """A MigasHandler on ``logger``; by default no crash hook, no rate cap, no folding."""
    options.setdefault("excepthook", False)
    options.setdefault("rate_limit", None)
    options.setdefault("fold_window", 0)
    handler = MigasHandler(PROJECT, "1.2.3", endpoint=url, **options)
    logger.addHandler(handler)
    return handler


def accounted(stats: dict[str, Any]) -> int:
    """Records whose fate is known: sent, folded or dropped."""
    return int(stats["sent"] + stats["folded"] + sum(stats["dropped"].values()))


def assert_exact(stats: dict[str, Any], *, max_pending: int = 0) -> None:
    """``emitted == sent + folded + sum(dropped) + pending``, ``0 <= pending <= max``.

    ``pending`` is allowed only where the library documents it: an event still being
    sent (at most one, on the single worker) when a stop deadline passed.
    """
    assert stats["emitted"] == accounted(stats) + stats["pending"], stats
    assert 0 <= stats["pending"] <= max_pending, (stats, stats["dropped"])


def quick_pipeline(url: str, timeout: float, **options: Any) -> Any:
    """The real pipeline with its 30 s / 60 s pauses capped (see ``_app.quick_pipeline``)."""
    return _app.quick_pipeline(url, timeout, **options)


def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- programs in their own interpreter ---------------------------------------------


@dataclass
class AppRun:
    """What a program run by :func:`run_app` did."""

    returncode: int
    stdout: str
    stderr: str
    lines: list[tuple[float, str]] = field(default_factory=list)
    exited_at: float = 0.0

    def tagged(self, tag: str) -> list[dict[str, Any]]:
        """The JSON payloads of the ``TAG {...}`` lines, in order."""
        return [
            json.loads(line[len(tag) + 1 :])
            for _, line in self.lines
            if line[: len(tag) + 1] == tag + " "
        ]

    @property
    def report(self) -> dict[str, Any]:
        """The main process's REPORT (accounting after migas's exit flush)."""
        reports = [r for r in self.tagged("REPORT") if r["main"]]
        assert reports, f"no REPORT line; stdout={self.stdout!r} stderr={self.stderr[-2000:]!r}"
        return reports[-1]

    @property
    def exit_seconds(self) -> float:
        """Seconds from the ``LOGGED`` line to the end of the process."""
        times = [t for t, line in self.lines if line.startswith("LOGGED ")]
        assert times, f"no LOGGED line; stderr={self.stderr[-2000:]!r}"
        return self.exited_at - times[-1]


def app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a program: no MIGAS_* unless given, private config dirs."""
    env = {k: v for k, v in os.environ.items() if k not in MIGAS_VARIABLES}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class App:
    """A program started at once in its own interpreter; :meth:`result` waits for it.

    Its stdout lines are time-stamped as they arrive (the programs flush every line), so
    that the test can time its exit from the ``LOGGED`` line. Several may run at once.
    """

    def __init__(
        self,
        body: str,
        env: dict[str, str],
        *,
        argv: list[str] | None = None,
        prefix: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        code = "from _app import *\nstart()\n" + textwrap.dedent(body)
        cmd = argv if argv is not None else [*(prefix or []), sys.executable, "-c", code]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=str(cwd or REPO),
        )
        self.lines: list[tuple[float, str]] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self._err.append(self.proc.stderr.read())

    def result(self, timeout: float = 60) -> AppRun:
        """Wait for the end of the program (killing it past ``timeout``)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            exited = time.monotonic()
            for reader in self._readers:
                reader.join(10)
        return AppRun(
            self.proc.returncode,
            "\n".join(line for _, line in self.lines),
            "".join(self._err),
            list(self.lines),
            exited,
        )


def run_app(
    body: str,
    env: dict[str, str],
    *,
    timeout: float = 60,
    argv: list[str] | None = None,
) -> AppRun:
    """Run ``from _app import *; start()`` + ``body`` (or ``argv``) and wait for it."""
    return App(body, env, argv=argv).result(timeout)


# --- servers the collector cannot play ---------------------------------------------


class TrickleServer:
    """Answers ``202`` headers at once, then ``chunk`` bytes of body every ``interval`` s.

    With the defaults each read gets a byte well within any read timeout, so only a
    deadline on the whole answer can end the request: the classic slow-loris answer of a
    broken proxy. With ``interval=0`` and a large ``length`` it is a huge answer instead.
    The first ``normal_first`` connections get a proper small answer.
    """

    def __init__(
        self,
        interval: float = 0.2,
        length: int = 1_000_000,
        chunk: int = 1,
        normal_first: int = 0,
    ) -> None:
        self.interval = interval
        self.length = length
        self.chunk = chunk
        self.normal_first = normal_first
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        self.accepted = 0
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            normal = self.accepted <= self.normal_first
            threading.Thread(target=self._answer, args=(conn, normal), daemon=True).start()

    def _answer(self, conn: socket.socket, normal: bool) -> None:
        with conn:
            try:
                conn.recv(65536)
                if normal:
                    body = b'{"success": true, "message": ""}'
                    conn.sendall(
                        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )
                    return
                conn.sendall(
                    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {self.length}\r\n\r\n".encode()
                )
                sent = 0
                block = b" " * self.chunk
                while sent < self.length and not self._stop.wait(self.interval):
                    piece = block[: self.length - sent]
                    conn.sendall(piece)
                    sent += len(piece)
                self._stop.wait()
            except OSError:
                pass

    def close(self) -> None:
        """Stop answering and close the listening socket."""
        self._stop.set()
        self._sock.close()


class Blackhole:
    """A port whose accept queue is full: connecting to it times out (a silent host)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._fill: list[socket.socket] = []
        for _ in range(4):  # fill the queue; later SYNs are dropped by the kernel
            s = socket.socket()
            s.settimeout(0.3)
            try:
                s.connect(self._sock.getsockname())
            except OSError:
                pass
            self._fill.append(s)

    def close(self) -> None:
        """Close every socket."""
        for s in self._fill:
            s.close()
        self._sock.close()


class Listener:
    """A bare listening socket that never answers: it only tells whether anyone came."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def connections(self) -> int:
        """How many connections were made to it so far (accepting them all)."""
        self._sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


# A self-signed certificate for IP 127.0.0.1, valid from 2000 to 2100, made for this
# suite only (``openssl ca -selfsign``). Nothing trusts it unless a test says so.
TEST_CERT = """\
-----BEGIN CERTIFICATE-----
MIIBizCCATCgAwIBAgIBATAKBggqhkjOPQQDAjArMSkwJwYDVQQDDCBtaWdhcy1s
b2dnaW5nIGxvb3BiYWNrIHRlc3Qgb25seTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAw
MDEwMTAwMDAwMFowKzEpMCcGA1UEAwwgbWlnYXMtbG9nZ2luZyBsb29wYmFjayB0
ZXN0IG9ubHkwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATPsc8XQ1o0O9iHnwac
vHKZRIIfVvgDIsemUoY5pcFLCyfYserHuJu3iJfg7T8JEeiL6487bWBas0x/lH5X
dLNXo0MwQTAPBgNVHRMBAf8EBTADAQH/MA8GA1UdEQQIMAaHBH8AAAEwHQYDVR0O
BBYEFDxNkt4N4nqk2ltUIfdmbXhqN5QYMAoGCCqGSM49BAMCA0kAMEYCIQDtu/MM
w2oxCHS5oxJZ4Y5SBXnW3uiYKpGFYF5B5HPBbgIhAJExhuk5noPKBxbopEXcAfee
RyywEnSfau+3bJcIcq/4
-----END CERTIFICATE-----
"""
TEST_KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfcH+5lBZOxSGNW0H
/ZRI6+wWVuUvhwZdMYhQ859rOW+hRANCAATPsc8XQ1o0O9iHnwacvHKZRIIfVvgD
IsemUoY5pcFLCyfYserHuJu3iJfg7T8JEeiL6487bWBas0x/lH5XdLNX
-----END PRIVATE KEY-----
"""


class _Accepting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.server.bodies.append(  # type: ignore[attr-defined]
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        )
        body = b'{"success": true, "message": ""}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class TLSServer:
    """An HTTPS server on 127.0.0.1 with the untrusted TEST_CERT; answers 202 to POSTs."""

    def __init__(self, directory: Path) -> None:
        self.cert = directory / "loopback-test-cert.pem"
        key = directory / "loopback-test-key.pem"
        self.cert.write_text(TEST_CERT)
        key.write_text(TEST_KEY)
        key.chmod(0o600)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
        self._httpd.daemon_threads = True
        self._httpd.bodies = []  # type: ignore[attr-defined]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def bodies(self) -> list[bytes]:
        """The request bodies it received (after a successful handshake)."""
        return list(self._httpd.bodies)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
