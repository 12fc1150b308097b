"""Proxies and private CAs, through real sockets on 127.0.0.1 only.

``migas_logging`` sends with ``requests``, which reads ``HTTP_PROXY`` / ``HTTPS_PROXY`` /
``ALL_PROXY`` / ``NO_PROXY`` (and their lower-case forms) and ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` from the environment; the transport adds ``SSL_CERT_FILE``. These tests
put a real forward proxy (plain forwarding and ``CONNECT`` tunnels) and a real HTTPS
front, whose certificate a private CA made here signed, in front of a
:class:`~migas_logging.collector.LocalCollector`, and check what is delivered, what the
proxy saw, and what a user is told when the proxy or the CA is wrong (docs/network.md
quotes these messages).

The doubles, defined below:

* :class:`Proxy` forwards absolute-form requests (``POST http://host:port/path``, what a
  client sends through ``HTTP_PROXY``) and tunnels ``CONNECT host:port`` (what it sends
  through ``HTTPS_PROXY`` for an ``https`` URL); it records every request, can demand
  credentials (407) and can hang.
* :class:`TLSFront` terminates TLS and pipes the plain bytes to a collector (which speaks
  plain HTTP only): together they are an HTTPS migas server.
* :func:`make_ca` makes a CA and a server certificate for 127.0.0.1 with the
  ``cryptography`` package if it is installed, else with the ``openssl`` command.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import importlib.util
import ipaddress
import logging
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from migas_logging import MigasHandler, check_project, get_usage
from migas_logging.breadcrumb import Breadcrumb, Context, build
from migas_logging.collector import LocalCollector, free_port
from migas_logging.transport import Outcome, OutcomeKind, Transport

PROJECT = "nipreps/migas-logging"

#: Every variable that changes where or how a request goes; cleared around each test.
NETWORK_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUEST_METHOD",
)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


def _shut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


# --- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A private CA and a certificate it signed for 127.0.0.1 (files in one directory)."""

    ca: Path
    cert: Path
    key: Path
    maker: str


def make_ca(directory: Path, name: str = "ca") -> Certificates:
    """Make a CA and a server certificate for IP 127.0.0.1 and ``localhost``.

    Raises:
        RuntimeError: neither ``cryptography`` nor ``openssl`` is available.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            raise RuntimeError(
                "neither the cryptography package nor openssl is installed"
            ) from None
        return _with_openssl(directory, name)
    return _with_cryptography(directory, name)


def _with_cryptography(directory: Path, name: str) -> Certificates:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"migas-logging test {name}")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = Certificates(
        directory / f"{name}.pem",
        directory / f"{name}-server.pem",
        directory / f"{name}-server.key",
        "cryptography",
    )
    paths.ca.write_bytes(ca_cert.public_bytes(pem))
    paths.cert.write_bytes(cert.public_bytes(pem))
    paths.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _with_openssl(directory: Path, name: str) -> Certificates:
    ca, ca_key = directory / f"{name}.pem", directory / f"{name}.key"
    cert, key = directory / f"{name}-server.pem", directory / f"{name}-server.key"
    csr, ext = directory / f"{name}-server.csr", directory / f"{name}-server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [
            *("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "30"),
            *("-subj", f"/CN=migas-logging test {name}"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        ],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            *("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key),
            *("-set_serial", "2", "-days", "30", "-extfile", ext, "-out", cert),
        ],
    ]
    for command in commands:
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=60)
    return Certificates(ca, cert, key, "openssl")


# --- an HTTPS front for the collector ----------------------------------------------------


class TLSFront:
    """Terminates TLS on 127.0.0.1 and pipes the plain bytes to ``target_port``.

    Args:
        target_port: the port of a plain-HTTP server on 127.0.0.1 (a LocalCollector).
        certs: the certificate (and key) it presents.
    """

    def __init__(self, target_port: int, certs: Certificates) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certs.cert, certs.key)
        self._target = target_port
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self.handshakes = 0
        self.failed_handshakes: list[str] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="tls-front", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self._lock:
                self.failed_handshakes.append(str(exc))
            _shut(conn)
            return
        with self._lock:
            self.handshakes += 1
        upstream = socket.create_connection(("127.0.0.1", self._target), timeout=10)
        with self._lock:
            self._open.append(upstream)
        try:
            while not self._stop.is_set():
                readable = [tls] if tls.pending() else select.select([tls, upstream], [], [], 1)[0]
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is tls else tls).sendall(data)
        except OSError:
            return
        finally:
            _shut(tls, upstream)

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        self._stop.set()
        with self._lock:
            _shut(self._sock, *self._open)


# --- a forward proxy ---------------------------------------------------------------------


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: Proxy


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _admit(self) -> bool:
        """Record the request; False when it was answered already (407, or held)."""
        proxy = self.server.proxy
        proxy.record(self.command, self.path, self.headers.get("Proxy-Authorization"))
        if proxy.hang:
            self.close_connection = True
            proxy.released.wait(60)
            return False
        if proxy.credentials and self.headers.get("Proxy-Authorization") != proxy.credentials:
            body = b"<html><body>Proxy Authentication Required</body></html>"
            self.send_response(407, "Proxy Authentication Required")
            self.send_header("Proxy-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return False
        return True

    def do_CONNECT(self) -> None:
        if not self._admit():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except (OSError, ValueError):
            self.send_error(502, "Bad Gateway")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        _tunnel(self.connection, upstream)

    def _forward(self) -> None:
        if not self._admit():
            return
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute http URL expected")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        path = target.path + (f"?{target.query}" if target.query else "")
        try:
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
        except OSError:
            self.send_error(502, "Bad Gateway")
            return
        self.send_response(answer.status, answer.reason)
        for k, v in answer.getheaders():
            if k.lower() not in _HOP_BY_HOP | {"content-length", "server", "date"}:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward


def _tunnel(client: socket.socket, upstream: socket.socket) -> None:
    """Pipe bytes both ways until either side closes."""

    def one_way(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    back = threading.Thread(target=one_way, args=(upstream, client), daemon=True)
    back.start()
    one_way(client, upstream)
    back.join(10)
    _shut(upstream)


@dataclass(frozen=True)
class Seen:
    """One request a proxy got."""

    method: str
    target: str
    authorization: str | None


class Proxy:
    """An HTTP forward proxy with CONNECT on 127.0.0.1 that records what it is asked.

    Args:
        hang: accept requests and never answer them (until :meth:`close`).
        credentials: ``(user, password)`` it demands (407 without them).
    """

    def __init__(self, *, hang: bool = False, credentials: tuple[str, str] | None = None) -> None:
        self.hang = hang
        self.credentials = (
            "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            if credentials
            else None
        )
        self.released = threading.Event()
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._httpd.proxy = self
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def record(self, method: str, target: str, authorization: str | None) -> None:
        with self._lock:
            self._seen.append(Seen(method, target, authorization))

    @property
    def seen(self) -> list[Seen]:
        """Every request it got, in order."""
        with self._lock:
            return list(self._seen)

    def close(self) -> None:
        """Release held requests and stop."""
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_network_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA variable of the machine running the tests leaks in."""
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _certificates(factory: pytest.TempPathFactory, name: str) -> Certificates:
    try:
        return make_ca(factory.mktemp(name), name)
    except RuntimeError as exc:
        pytest.skip(f"cannot make test certificates: {exc}")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """The private CA that signed the HTTPS front's certificate."""
    return _certificates(tmp_path_factory, "ca")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA that signed nothing the tests talk to (the "wrong CA")."""
    return _certificates(tmp_path_factory, "other")


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,), latest={PROJECT: "2.0.0"}) as c:
        yield c


@pytest.fixture
def front(collector: LocalCollector, ca: Certificates) -> Iterator[TLSFront]:
    """The collector behind HTTPS, with a certificate of the private CA (not trusted yet)."""
    tls = TLSFront(collector.port, ca)
    yield tls
    tls.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.close()


@dataclass
class Server:
    """A migas endpoint of a test, and what a proxy sees when a breadcrumb goes through."""

    url: str
    collector: LocalCollector
    through_proxy: str
    front: TLSFront | None = None

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0]


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(
    scheme: str,
    collector: LocalCollector,
    ca: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Server:
    """The collector over ``scheme``; over https its CA is trusted (REQUESTS_CA_BUNDLE)."""
    if scheme == "http":
        return Server(collector.url, collector, f"POST {collector.url}/api/breadcrumb")
    tls: TLSFront = request.getfixturevalue("front")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.ca))
    return Server(tls.url, collector, f"CONNECT 127.0.0.1:{tls.port}", tls)


def crumb() -> Breadcrumb:
    ctx = Context(user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), platform="linux")
    return build(project=PROJECT, version="1.0.0", language_version="3.11.7", ctx=ctx, status="F")


def send(url: str, timeout: float = 3.0) -> Outcome:
    """Send one breadcrumb with a fresh transport (which reads the environment)."""
    transport = Transport(url, timeout)
    try:
        return transport.send(crumb())
    finally:
        transport.close()


def seen(proxy: Proxy) -> list[str]:
    return [f"{s.method} {s.target}" for s in proxy.seen]


def dead_url(credentials: str = "") -> str:
    """The URL of a port on 127.0.0.1 where nothing listens."""
    return f"http://{credentials}127.0.0.1:{free_port()}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


QUERIES: dict[str, Callable[..., dict[str, Any]]] = {
    "check_project": lambda url, **kw: check_project(PROJECT, "1.0.0", endpoint=url, **kw),
    "get_usage": lambda url, **kw: get_usage(PROJECT, "2020-01-01", endpoint=url, **kw),
}


# --- proxies -----------------------------------------------------------------------------


class TestProxyVariables:
    @pytest.mark.parametrize("case", ["upper", "lower"])
    def test_a_breadcrumb_goes_through_the_proxy(
        self, server: Server, proxy: Proxy, case: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP_PROXY forwards an http breadcrumb; HTTPS_PROXY tunnels an https one (CONNECT)."""
        name = f"{server.scheme}_proxy"
        monkeypatch.setenv(name.upper() if case == "upper" else name, proxy.url)
        outcome = send(server.url)
        assert outcome.ok, outcome
        assert [server.through_proxy] == seen(proxy)
        assert 1 == len(server.collector.breadcrumbs())

    def test_the_variable_follows_the_endpoints_scheme(
        self, server: Server, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTPS_PROXY is not used for an http endpoint, nor HTTP_PROXY for an https one."""
        other = "HTTPS_PROXY" if server.scheme == "http" else "HTTP_PROXY"
        monkeypatch.setenv(other, proxy.url)
        assert send(server.url).ok
        assert [] == seen(proxy)

    def test_all_proxy_covers_both_schemes(
        self, server: Server, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ALL_PROXY is used when the scheme's own variable is not set."""
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        assert send(server.url).ok
        assert [server.through_proxy] == seen(proxy)

    def test_a_proxy_url_without_a_scheme_is_http(
        self, server: Server, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``host:port`` is taken as ``http://host:port``."""
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), f"127.0.0.1:{proxy.port}")
        assert send(server.url).ok
        assert [server.through_proxy] == seen(proxy)

    def test_lower_case_wins_over_upper_case(
        self, server: Server, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With both forms set, the lower-case one is used (as curl and wget do)."""
        name = f"{server.scheme}_proxy"
        monkeypatch.setenv(name.upper(), dead_url())
        monkeypatch.setenv(name, proxy.url)
        assert send(server.url).ok
        assert [server.through_proxy] == seen(proxy)

    @pytest.mark.parametrize(
        "entry", ["127.0.0.1", "127.0.0.0/8", "*", "localhost, 127.0.0.1", "no_proxy=127.0.0.1"]
    )
    def test_no_proxy_bypasses_the_proxy(
        self, server: Server, proxy: Proxy, entry: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """NO_PROXY (or no_proxy): an address, a CIDR block, ``*`` or a list; the proxy sees
        nothing."""
        name, _, value = entry.rpartition("=")
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
        monkeypatch.setenv(name or "NO_PROXY", value)
        assert send(server.url).ok
        assert [] == seen(proxy)
        assert 1 == len(server.collector.breadcrumbs())

    @pytest.mark.parametrize("entry", ["localhost", "127.0.0.1:{port}", "127.*"])
    def test_no_proxy_entries_that_do_not_match_an_address(
        self, server: Server, proxy: Proxy, entry: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Names are not resolved, ports and wildcards never match an IP address: the
        proxy is used."""
        port = urlsplit(server.url).port
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
        monkeypatch.setenv("NO_PROXY", entry.format(port=port))
        assert send(server.url).ok
        assert [server.through_proxy] == seen(proxy)


class TestQueries:
    @pytest.mark.parametrize("query", sorted(QUERIES))
    def test_a_query_goes_through_the_proxy(
        self, server: Server, proxy: Proxy, query: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """check_project and get_usage use the same proxy variables."""
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
        result = QUERIES[query](server.url, timeout=3)
        assert result["success"] is True, result
        expected = server.through_proxy.replace("/api/breadcrumb", "/graphql")
        assert [expected] == seen(proxy)

    @pytest.mark.parametrize("query", sorted(QUERIES))
    def test_no_proxy_bypasses_the_proxy_for_queries(
        self, server: Server, proxy: Proxy, query: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """NO_PROXY=127.0.0.1: the query goes straight to the server."""
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert QUERIES[query](server.url, timeout=3)["success"] is True
        assert [] == seen(proxy)

    def test_a_refused_proxy_is_said_by_the_query(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The query's message names the proxy it could not use."""
        proxy = dead_url()
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy)
        result = check_project(PROJECT, "1.0.0", endpoint=server.url, timeout=3)
        assert result["success"] is False
        assert f"cannot use the proxy {proxy}" in result["message"]


# --- private CAs -------------------------------------------------------------------------


class TestPrivateCA:
    @pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
    def test_the_ca_a_variable_names_is_trusted(
        self, front: TLSFront, ca: Certificates, variable: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A CA bundle named by any of the three variables verifies the server."""
        monkeypatch.setenv(variable, str(ca.ca))
        outcome = send(front.url)
        assert outcome.ok, outcome
        assert 1 == front.handshakes

    @pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
    @pytest.mark.parametrize("query", sorted(QUERIES))
    def test_queries_trust_it_too(
        self,
        front: TLSFront,
        ca: Certificates,
        variable: str,
        query: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """check_project and get_usage read the same variables."""
        monkeypatch.setenv(variable, str(ca.ca))
        assert QUERIES[query](front.url, timeout=3)["success"] is True

    def test_requests_ca_bundle_wins_over_ssl_cert_file(
        self,
        front: TLSFront,
        ca: Certificates,
        other_ca: Certificates,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """REQUESTS_CA_BUNDLE comes first: naming the wrong CA there is not saved by a right
        SSL_CERT_FILE."""
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.ca))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca))
        assert OutcomeKind.UNREACHABLE is send(front.url).kind
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        assert send(front.url).ok

    def test_an_ssl_cert_file_that_names_no_file_is_ignored(
        self, front: TLSFront, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As OpenSSL does: the default authorities are used, and the private CA is not
        trusted (a TLS failure, not an error of the client)."""
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
        outcome = send(front.url)
        assert OutcomeKind.UNREACHABLE is outcome.kind
        assert "certificate verify failed" in outcome.detail

    @pytest.mark.parametrize("trusted", ["nothing", "another CA"])
    def test_an_untrusted_certificate_is_a_tls_failure(
        self,
        front: TLSFront,
        collector: LocalCollector,
        other_ca: Certificates,
        trusted: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Unreachable, nothing sent, at once, and a detail that says what and what to do."""
        if trusted == "another CA":
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.ca))
        start = time.monotonic()
        outcome = send(front.url)
        assert time.monotonic() - start < 2.5  # a refusal, not a wait
        assert (OutcomeKind.UNREACHABLE, True) == (outcome.kind, outcome.unsent)
        assert outcome.detail.startswith("TLS failure: [SSL: CERTIFICATE_VERIFY_FAILED]")
        assert "certificate verify failed: unable to get local issuer certificate" in (
            outcome.detail
        )
        assert "REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in outcome.detail  # what to do
        assert "Watched" not in outcome.detail  # no internal class names
        assert 0 == front.handshakes
        assert [] == collector.breadcrumbs()

    def test_through_a_tunnel_the_tls_failure_names_the_proxy(
        self, front: TLSFront, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A proxy that intercepts TLS is the usual private CA: the detail says a proxy was
        on the way."""
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        outcome = send(front.url)
        assert OutcomeKind.UNREACHABLE is outcome.kind
        assert "certificate verify failed" in outcome.detail
        assert outcome.detail.endswith(f"(through the proxy {proxy.url})")
        assert [f"CONNECT 127.0.0.1:{front.port}"] == seen(proxy)

    def test_a_query_says_why(self, front: TLSFront) -> None:
        """check_project's message names the certificate problem."""
        result = check_project(PROJECT, "1.0.0", endpoint=front.url, timeout=3)
        assert result["success"] is False
        assert "certificate verify failed" in result["message"]

    def test_the_handler_warns_once_naming_the_certificate(
        self,
        front: TLSFront,
        collector: LocalCollector,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Records are not held up by the refusal; one warning on ``migas_logging`` says
        which certificate problem and what to set."""
        log = logging.getLogger("app.tls")
        log.propagate = False
        handler = MigasHandler(PROJECT, "1.0", endpoint=front.url, excepthook=False, retries=0)
        log.addHandler(handler)
        try:
            with caplog.at_level(logging.WARNING, logger="migas_logging"):
                start = time.monotonic()
                for i in range(5):
                    log.error("step %d failed", i)
                assert time.monotonic() - start < 1.0  # the application is not held up
                handler.flush(5)
        finally:
            log.removeHandler(handler)
            handler.close()
        warnings = [r.getMessage() for r in caplog.records if r.name == "migas_logging"]
        assert 1 == len(warnings), warnings
        assert "certificate verify failed" in warnings[0]
        assert "REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in warnings[0]
        assert {"unreachable": 1} == handler.stats.as_dict()["dropped"]  # the rest folded
        assert [] == collector.breadcrumbs()


# --- broken proxies ----------------------------------------------------------------------


class TestBrokenProxies:
    def test_a_refused_proxy_is_unreachable_and_named(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing listens where the proxy should be: unreachable at once, nothing sent,
        the proxy named without its password."""
        proxy = dead_url("alice:s3cret@")
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy)
        start = time.monotonic()
        outcome = send(server.url)
        assert time.monotonic() - start < 2.5
        assert (OutcomeKind.UNREACHABLE, True) == (outcome.kind, outcome.unsent)
        shown = proxy.replace("alice:s3cret@", "")
        assert outcome.detail.startswith(f"cannot use the proxy {shown}: ")
        assert "Connection refused" in outcome.detail
        assert "s3cret" not in outcome.detail

    def test_a_proxy_with_an_unknown_name(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A proxy host that does not resolve (``.invalid`` never does): unreachable, named."""
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), "http://proxy.invalid:3128")
        outcome = send(server.url)
        assert OutcomeKind.UNREACHABLE is outcome.kind
        assert outcome.detail.startswith("cannot use the proxy http://proxy.invalid:3128: ")

    def test_a_proxy_that_wants_credentials(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """407: the server was never reached (unreachable, not refused by the server);
        credentials in the proxy URL are sent, as Proxy-Authorization."""
        proxy = Proxy(credentials=("alice", "s3cret"))
        try:
            name = f"{server.scheme}_proxy".upper()
            monkeypatch.setenv(name, proxy.url)
            outcome = send(server.url)
            assert (OutcomeKind.UNREACHABLE, True) == (outcome.kind, outcome.unsent)
            assert outcome.detail.startswith(f"cannot use the proxy {proxy.url}: ")
            assert "407 Proxy Authentication Required" in outcome.detail
            assert [] == server.collector.breadcrumbs()
            monkeypatch.setenv(name, proxy.url.replace("//", "//alice:s3cret@"))
            assert send(server.url).ok
            assert basic("alice", "s3cret") == proxy.seen[-1].authorization
            assert 1 == len(server.collector.breadcrumbs())
        finally:
            proxy.close()

    def test_a_hanging_proxy_is_bounded_by_the_timeout(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A proxy that takes the request and never answers: a timeout, by the transport's
        bound, naming the proxy. Through a plain proxy the request went out (the proxy may
        have passed it on); a tunnel that never opened sent nothing."""
        proxy = Proxy(hang=True)
        try:
            monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
            start = time.monotonic()
            outcome = send(server.url, timeout=1.0)
            elapsed = time.monotonic() - start
        finally:
            proxy.close()
        assert 0.5 < elapsed < 4.0
        assert OutcomeKind.TIMEOUT is outcome.kind
        assert (server.scheme == "https") == outcome.unsent
        assert outcome.detail.endswith(f"(through the proxy {proxy.url})")

    def test_a_hanging_proxy_and_the_handler(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given up, a breadcrumb a plain proxy may have passed on is ``unconfirmed`` (never
        spooled: it must not land twice); one behind a tunnel that never opened is
        ``unreachable``."""
        proxy = Proxy(hang=True)
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
        log = logging.getLogger("app.hang")
        log.propagate = False
        handler = MigasHandler(
            PROJECT, "1.0", endpoint=server.url, timeout=1, excepthook=False, retries=0
        )
        log.addHandler(handler)
        try:
            log.error("step failed")
            handler.flush(5)
        finally:
            log.removeHandler(handler)
            handler.close()
            proxy.close()
        expected = "unreachable" if server.scheme == "https" else "unconfirmed"
        assert {expected: 1} == handler.stats.as_dict()["dropped"]

    def test_a_hanging_proxy_bounds_a_query(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """check_project through a hanging proxy returns by its timeout."""
        proxy = Proxy(hang=True)
        try:
            monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy.url)
            start = time.monotonic()
            result = check_project(PROJECT, "1.0.0", endpoint=server.url, timeout=1.0)
            elapsed = time.monotonic() - start
        finally:
            proxy.close()
        assert elapsed < 4.0
        assert result["success"] is False
        assert "no complete answer within" in result["message"]
        assert result["message"].endswith(f"(through the proxy {proxy.url})")

    @pytest.mark.parametrize(
        ("url", "shown", "says"),
        [
            ("socks5://127.0.0.1:1080", "", "Missing dependencies for SOCKS support."),
            ("http://alice:s3cret@127.0.0.1:99999", "http://127.0.0.1:99999", "Failed to parse"),
            ("http://:3128", "", "missing the host"),
            ("alice:s3cret@127.0.0.1:3128", "http://127.0.0.1:3128", "missing the host"),
        ],
    )
    def test_a_proxy_url_requests_cannot_use(
        self, server: Server, url: str, shown: str, says: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SOCKS without PySocks, a port out of range, no host, credentials without a
        scheme: unreachable, nothing sent, the proxy named without its password."""
        if url.startswith("socks") and importlib.util.find_spec("socks") is not None:
            pytest.skip("PySocks is installed: requests can use a SOCKS proxy")
        monkeypatch.setenv("ALL_PROXY", url)
        outcome = send(server.url)
        assert (OutcomeKind.UNREACHABLE, True) == (outcome.kind, outcome.unsent)
        assert outcome.detail.startswith(f"cannot use the proxy {shown or url}: ")
        assert says in outcome.detail
        assert "s3cret" not in outcome.detail

    def test_the_handler_warns_naming_the_proxy(
        self, server: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One warning that names the proxy (never its password); the records are not held
        up."""
        proxy = dead_url("alice:s3cret@")
        monkeypatch.setenv(f"{server.scheme}_proxy".upper(), proxy)
        log = logging.getLogger("app.proxy")
        log.propagate = False
        handler = MigasHandler(PROJECT, "1.0", endpoint=server.url, excepthook=False, retries=0)
        log.addHandler(handler)
        try:
            with caplog.at_level(logging.WARNING, logger="migas_logging"):
                log.error("step failed")
                handler.flush(5)
        finally:
            log.removeHandler(handler)
            handler.close()
        warnings = [r.getMessage() for r in caplog.records if r.name == "migas_logging"]
        assert 1 == len(warnings), warnings
        assert f"cannot use the proxy {proxy.replace('alice:s3cret@', '')}" in warnings[0]
        assert "s3cret" not in caplog.text
        assert {"unreachable": 1} == handler.stats.as_dict()["dropped"]


# --- the spool -----------------------------------------------------------------------------


def test_what_a_proxy_refuses_is_spooled_and_sent_once_the_proxy_is_fixed(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that wants credentials: the server was never reached, so with the spool on
    the breadcrumb is kept; ``spool send`` with the credentials delivers it through the
    proxy."""
    proxy = Proxy(credentials=("alice", "s3cret"))
    spool = tmp_path / "spool"
    variable = f"{server.scheme}_proxy".upper()
    monkeypatch.setenv(variable, proxy.url)
    monkeypatch.setenv("MIGAS_SPOOL_DIR", str(spool))
    log = logging.getLogger("app.spool")
    log.propagate = False
    handler = MigasHandler(
        PROJECT, "1.0", endpoint=server.url, excepthook=False, retries=0, spool=True
    )
    log.addHandler(handler)
    try:
        log.error("step failed")
        handler.flush(5)
        assert {"spooled": 1} == handler.stats.as_dict()["dropped"]
        assert [] == server.collector.breadcrumbs()
        env = {k: v for k, v in os.environ.items() if k not in NETWORK_VARIABLES}
        env[variable] = proxy.url.replace("//", "//alice:s3cret@")
        if server.scheme == "https":
            env["REQUESTS_CA_BUNDLE"] = os.environ["REQUESTS_CA_BUNDLE"]
        command = ["spool", "send", "--spool-dir", str(spool), "--endpoint", server.url]
        done = subprocess.run(
            [sys.executable, "-m", "migas_logging", *command],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert 0 == done.returncode, done.stdout + done.stderr
        assert ["F"] == [r["status"] for r in server.collector.breadcrumbs()]
        assert basic("alice", "s3cret") == proxy.seen[-1].authorization
    finally:
        log.removeHandler(handler)
        handler.close()
        proxy.close()


# --- a whole program ---------------------------------------------------------------------


PROGRAM = """
import logging, sys, time
from migas_logging import MigasHandler
if sys.argv[2] == "basicConfig":
    logging.basicConfig()
log = logging.getLogger("app")
log.addHandler(MigasHandler("{project}", "1.0", endpoint=sys.argv[1], excepthook=False))
log.error("the pipeline failed")
print(f"LOGGED {{time.monotonic()}}", flush=True)
"""


@pytest.mark.parametrize("setup", ["basicConfig", "MIGAS_LOG_LEVEL", "no logging set up"])
def test_a_program_against_an_untrusted_server_exits_promptly_and_says_why(
    front: TLSFront, collector: LocalCollector, tmp_path: Path, setup: str
) -> None:
    """With the default options, a program that logs an error to a server whose CA it does
    not trust exits within its flush deadline (2 s). Its stderr names the problem when the
    program set up logging, or MIGAS_LOG_LEVEL asks for it; else the library stays quiet."""
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(PROGRAM.format(project=PROJECT)))
    env = {k: v for k, v in os.environ.items() if k not in NETWORK_VARIABLES}
    env.pop("MIGAS_LOG_LEVEL", None)
    env.update(XDG_CONFIG_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")
    if setup == "MIGAS_LOG_LEVEL":
        env["MIGAS_LOG_LEVEL"] = "WARNING"
    done = subprocess.run(
        [sys.executable, str(script), front.url, setup],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    ended = time.monotonic()
    assert 0 == done.returncode, done.stderr
    logged = float(done.stdout.split("LOGGED ", 1)[1].split()[0])
    assert ended - logged < 2.0 + 3.0  # the flush deadline, and a generous margin
    said = [line for line in done.stderr.splitlines() if "migas" in line]
    if setup == "no logging set up":
        assert [] == said, done.stderr
    else:
        assert said, done.stderr
        assert all("certificate verify failed" in line for line in said), said
        assert all("REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in line for line in said), said
    assert [] == collector.breadcrumbs()
