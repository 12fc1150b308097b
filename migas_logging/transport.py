"""HTTP to a migas server: one breadcrumb or one GraphQL call at a time, answers as values.

The transport builds requests and maps every answer to an :class:`Outcome`; it never
raises and keeps no queue. It holds one ``requests.Session`` so that consecutive calls
reuse one keep-alive connection, keeps TLS verification on, and sends
``User-Agent: migas-logging/<version>``.

Every request is bounded by the wall clock: connecting, sending, the status line, the
headers and the body together take at most ``timeout`` seconds, and a send given a
``deadline`` (with its GraphQL fallback or its 413 retry) ends by that deadline. A
server that trickles its answer a byte at a time cannot stretch either: ``requests``
only times each socket operation, so a watchdog thread (:mod:`migas_logging._watchdog`,
one per process) shuts the request's socket down when its time is up, and the outcome
is ``TIMEOUT``. Connecting is bounded per attempt by the connect timeout, clamped to the
time left; name resolution only by the system's resolver.

Breadcrumbs go to ``POST /api/breadcrumb``. A server that answers 404 or 405 there is an
older one: the transport then sends the GraphQL ``add_breadcrumb`` mutation instead, and
remembers that for the rest of its life. A ``413`` that names a smaller size limit than
2,500 bytes (a deployment may lower it) makes the transport refit the breadcrumb to
that limit and try once more, so the breadcrumb is shortened rather than lost.

Proxies and certificate authorities come from the environment as ``requests`` reads it
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE``), and from ``SSL_CERT_FILE``, which ``requests`` ignores. A failure on
the way through a proxy names the proxy (never its password); one the proxy itself
causes (refused, unknown, a tunnel or credentials refused, a URL that cannot be used)
is ``UNREACHABLE``: the server was not reached. See docs/network.md.

``requests`` is imported when the first transport is made, not when this module is
imported: ``import migas_logging`` stays cheap for applications that never log an error.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from migas_logging._version import __version__
from migas_logging.breadcrumb import MAX_BODY_BYTES, Breadcrumb

if TYPE_CHECKING:
    import requests

__all__ = ["USER_AGENT", "Outcome", "OutcomeKind", "Transport"]

USER_AGENT = f"migas-logging/{__version__}"

ADD_BREADCRUMB_MUTATION = (
    "mutation AddBreadcrumb($project: String!, $project_version: String!, $language: String!, "
    "$language_version: String!, $ctx: ContextInput!, $proc: ProcessInput!) "
    "{ add_breadcrumb(project: $project, project_version: $project_version, "
    "language: $language, language_version: $language_version, ctx: $ctx, proc: $proc) "
    "{ success message } }"
)

#: OpenSSL's words for a certificate whose issuer is not trusted (a private CA).
_UNKNOWN_ISSUER = ("issuer certificate", "self-signed", "self signed")
_TRUST_HINT = "to trust a private CA, set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to its file"
_AUTH = "Proxy Authentication Required"
_USERINFO = re.compile(r"://[^/\s@'\"]*@")
_SIZE_LIMIT = re.compile(r"maximum size \((\d+)\)")
#: The longest single wait on a socket or a lock: longer ones overflow (near 1e10 s).
_LONGEST_WAIT = 365 * 86400.0
_DETAIL_MAX = 300


class OutcomeKind(enum.Enum):
    """What became of one request."""

    DELIVERED = "delivered"
    """The server took it (2xx with the expected JSON)."""
    REJECTED = "rejected"
    """The server refused it for good (400, 413, 422, other 4xx, ``success: false``)."""
    RATE_LIMITED = "rate_limited"
    """429: this address sent too many requests in the server's window."""
    SERVER_ERROR = "server_error"
    """5xx, or the connection broke after the request was sent."""
    TIMEOUT = "timeout"
    """No connection or no answer within the timeout."""
    UNREACHABLE = "unreachable"
    """No connection: refused, unknown host, TLS failure."""
    BAD_ANSWER = "bad_answer"
    """A 2xx answer that is not the JSON a migas server gives (a proxy's page, garbage)."""
    CLIENT_ERROR = "client_error"
    """The client itself failed to build or send the request (a bug; reported once)."""


_RETRYABLE = frozenset({OutcomeKind.SERVER_ERROR, OutcomeKind.TIMEOUT, OutcomeKind.UNREACHABLE})


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one call, as a value.

    Args:
        kind: what happened.
        status: the HTTP status, when there was an answer.
        detail: a one-line, human-readable account (the server's message if any).
        retry_after: seconds to wait, from a ``Retry-After`` header, when sent.
        via: ``"rest"`` or ``"graphql"``.
        elapsed: seconds spent on the call.
        payload: the decoded JSON answer, when there was one.
        body_bytes: the size of the request body that was sent.
        unsent: True when the request certainly never reached the server (no
            connection, or no time left to send it).
    """

    kind: OutcomeKind
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    via: str = "rest"
    elapsed: float = 0.0
    payload: Any = field(default=None, compare=False)
    body_bytes: int = 0
    unsent: bool = False

    @property
    def ok(self) -> bool:
        """True when the server took the request."""
        return self.kind is OutcomeKind.DELIVERED

    @property
    def retryable(self) -> bool:
        """True for failures that another try may fix (5xx, timeouts, no connection)."""
        return self.kind in _RETRYABLE


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


def _detail_of(payload: Any, fallback: str) -> str:
    """Pull the server's human message out of a JSON answer."""
    if isinstance(payload, dict):
        detail = payload.get("detail")
        if isinstance(detail, str):
            return _short(detail)
        if isinstance(detail, list) and detail:
            first = detail[0]
            if isinstance(first, dict):
                loc = ".".join(str(p) for p in first.get("loc", []))
                return _short(f"{loc}: {first.get('msg', '')}".strip(": "))
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return _short(str(errors[0].get("message", fallback)))
        message = payload.get("message")
        if isinstance(message, str) and message:
            return _short(message)
    return fallback


class Transport:
    """Send breadcrumbs and GraphQL calls to one migas server.

    Calls on one transport are serialised (a call that waits for another counts the
    wait against its own bound); give each thread its own transport to run them at once.

    Args:
        endpoint: the server's base URL (already resolved, see
            :func:`migas_logging.config.resolve_endpoint`).
        timeout: seconds for one request as a whole: connecting, sending and reading
            the whole answer.
        connect_timeout: seconds for connecting (each address tried); defaults to
            ``timeout``, and never more than the time left.
        session: a ``requests.Session`` to use instead of a new one (tests, proxies).
            Its stock adapters are replaced by watched ones; a custom adapter is kept,
            and then only each socket operation is timed.
    """

    def __init__(
        self,
        endpoint: str,
        timeout: float = 5.0,
        *,
        connect_timeout: float | None = None,
        session: requests.Session | None = None,
    ) -> None:
        import requests

        from migas_logging import _watchdog

        self.endpoint = endpoint.rstrip("/")
        self.timeout = float(timeout)
        self.connect_timeout = min(float(connect_timeout or timeout), self.timeout)
        self._requests = requests
        self._watchdog = _watchdog
        self._session = session if session is not None else requests.Session()
        _watch_session(self._session, _watchdog.WatchedAdapter)
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._session.verify = True
        self._graphql_only = False
        self._max_body = MAX_BODY_BYTES
        self._lock = threading.Lock()
        # Started now, while threads can still start: on Python 3.12 none can during
        # the interpreter's exit, which is when a crash's breadcrumb may be sent.
        _watchdog.start()
        self._warm_up()

    def _warm_up(self) -> None:
        """Do now the imports ``requests`` makes on a first request (``netrc``, ...).

        A fork in the middle of such an import leaves the module's import lock held in
        the child, whose own first request then waits on it forever. The worker does
        not fork while it prepares, and it makes its transport then.
        """
        rq = self._requests
        with contextlib.suppress(Exception):
            self._session.prepare_request(rq.Request("POST", f"{self.endpoint}/graphql"))

    @property
    def uses_graphql(self) -> bool:
        """True once the server showed it has no REST breadcrumb endpoint."""
        return self._graphql_only

    def close(self) -> None:
        """Close the keep-alive connection(s)."""
        try:
            self._session.close()
        except Exception:
            pass

    # --- breadcrumbs -----------------------------------------------------------------

    def send(
        self, crumb: Breadcrumb, *, wait: bool = False, deadline: float | None = None
    ) -> Outcome:
        """Send one breadcrumb and report what became of it.

        Args:
            crumb: the breadcrumb (valid and within 2,500 bytes by construction).
            wait: ask the server to answer after ingestion (``?wait=true``), so that a
                failed ingestion shows as a 500 instead of being lost after a 202.
            deadline: a ``time.monotonic()`` value that the whole send, a GraphQL
                fallback or a 413 retry included, does not pass; each request is also
                bounded by ``timeout``. Past it the outcome is ``TIMEOUT``; a deadline
                already passed sends nothing.

        Returns:
            The outcome; never raises.
        """
        try:
            if self._graphql_only:
                return self._send_graphql(crumb, deadline)
            outcome = self._send_rest(crumb, wait, deadline)
            if outcome.status in (404, 405):
                self._graphql_only = True
                return self._send_graphql(crumb, deadline)
            if outcome.kind is OutcomeKind.REJECTED and outcome.status == 413:
                match = _SIZE_LIMIT.search(outcome.detail)
                limit = int(match.group(1)) if match else 0
                if 200 <= limit < self._max_body:
                    self._max_body = limit
                    return self._send_rest(crumb, wait, deadline)
            return outcome
        except Exception as exc:  # a bug must not reach the application
            return Outcome(OutcomeKind.CLIENT_ERROR, detail=_short(f"{type(exc).__name__}: {exc}"))

    def _send_rest(self, crumb: Breadcrumb, wait: bool, deadline: float | None) -> Outcome:
        if self._max_body < MAX_BODY_BYTES:
            crumb = crumb.fitted(self._max_body)
        body = crumb.to_json()
        url = f"{self.endpoint}/api/breadcrumb" + ("?wait=true" if wait else "")
        outcome = self._post(url, body, via="rest", deadline=deadline)
        if outcome.kind is OutcomeKind.DELIVERED and not (
            isinstance(outcome.payload, dict) and outcome.payload.get("success") is True
        ):
            return _replace(outcome, OutcomeKind.BAD_ANSWER, "answer lacks success: true")
        return outcome

    def _graphql_body(self, crumb: Breadcrumb) -> bytes:
        payload = crumb.to_payload()
        proc = payload.get("proc", {})
        variables = {
            "project": payload["project"],
            "project_version": payload["project_version"],
            "language": payload["language"],
            "language_version": payload["language_version"],
            "ctx": payload.get("ctx", {}),
            "proc": proc,
        }
        return json.dumps(
            {"query": ADD_BREADCRUMB_MUTATION, "variables": variables},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    def _send_graphql(self, crumb: Breadcrumb, deadline: float | None) -> Outcome:
        body = self._graphql_body(crumb)
        # The mutation's text takes part of the size budget: shorten the breadcrumb
        # until the whole request fits.
        for _ in range(4):
            excess = len(body) - self._max_body
            if excess <= 0:
                break
            crumb = crumb.fitted(max(len(crumb.to_json()) - excess, 200))
            body = self._graphql_body(crumb)
        outcome = self._post(f"{self.endpoint}/graphql", body, via="graphql", deadline=deadline)
        if outcome.kind is not OutcomeKind.DELIVERED:
            return outcome
        data = outcome.payload.get("data") if isinstance(outcome.payload, dict) else None
        result = data.get("add_breadcrumb") if isinstance(data, dict) else None
        if isinstance(result, dict) and result.get("success") is True:
            return outcome
        if isinstance(result, dict):
            return _replace(
                outcome, OutcomeKind.REJECTED, _short(str(result.get("message") or "refused"))
            )
        if isinstance(outcome.payload, dict) and outcome.payload.get("errors"):
            return _replace(outcome, OutcomeKind.REJECTED, _detail_of(outcome.payload, "error"))
        return _replace(outcome, OutcomeKind.BAD_ANSWER, "answer lacks add_breadcrumb")

    # --- GraphQL ---------------------------------------------------------------------

    def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> Outcome:
        """Run one GraphQL operation with variables (never with pasted user input).

        Args:
            query: the operation.
            variables: its variables.
            deadline: a ``time.monotonic()`` value the call does not pass (besides
                ``timeout``).

        Returns:
            The outcome; ``payload`` holds the decoded answer (``data`` and ``errors``).
            A 200 answer that carries ``errors`` is still ``DELIVERED``: the caller reads
            ``payload["errors"]``. Never raises.
        """
        try:
            body = json.dumps(
                {"query": query, "variables": variables or {}},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode("utf-8")
            return self._post(f"{self.endpoint}/graphql", body, via="graphql", deadline=deadline)
        except Exception as exc:
            return Outcome(
                OutcomeKind.CLIENT_ERROR,
                detail=_short(f"{type(exc).__name__}: {exc}"),
                via="graphql",
            )

    # --- one POST --------------------------------------------------------------------

    def _post(self, url: str, body: bytes, *, via: str, deadline: float | None) -> Outcome:
        start = time.monotonic()
        until = start + self.timeout if deadline is None else min(start + self.timeout, deadline)

        def timed_out(detail: str, *, unsent: bool = False) -> Outcome:
            return Outcome(
                OutcomeKind.TIMEOUT,
                detail=detail,
                via=via,
                elapsed=time.monotonic() - start,
                body_bytes=len(body),
                unsent=unsent,
            )

        if until <= start:
            return timed_out("no time left before the deadline; not sent", unsent=True)
        if not self._lock.acquire(timeout=min(until - start, _LONGEST_WAIT)):
            return timed_out(
                "another call held the transport until the deadline; not sent", unsent=True
            )
        try:
            left = min(until - time.monotonic(), _LONGEST_WAIT)
            if left <= 0:
                return timed_out("no time left before the deadline; not sent", unsent=True)
            guard = self._watchdog.Guard(until)
            reading = False
            try:
                with guard:
                    resp = self._session.post(
                        url,
                        data=body,
                        headers={"Content-Type": "application/json"},
                        timeout=(min(self.connect_timeout, left), left),
                        verify=self._verify(),
                        allow_redirects=False,
                        stream=True,  # the answer is read by _read_answer, bounded
                    )
                    reading = True
                    try:
                        status = resp.status_code
                        headers = resp.headers
                        text = _read_answer(resp, until).decode("utf-8", "replace")
                    finally:
                        resp.close()
            except Exception as exc:
                proxy = self._proxy_for(url)
                through = f" (through the proxy {proxy})" if proxy else ""
                if guard.expired or isinstance(exc, _Overdue):
                    # no socket registered: the connection never came up, nothing was sent
                    return timed_out(
                        f"no complete answer within {until - start:.3g} s{through}",
                        unsent=not guard.watched,
                    )
                if _is_proxy_failure(exc, self._requests, proxy):
                    kind = OutcomeKind.UNREACHABLE
                    detail = f"{_cannot_use(proxy)}: {_root_message(exc)}"
                else:
                    kind, detail = self._failure(exc, until - start, reading=reading)
                    detail += through
                return Outcome(
                    kind,
                    detail=_short(_USERINFO.sub("://", detail)),  # a proxy URL's password
                    via=via,
                    elapsed=time.monotonic() - start,
                    body_bytes=len(body),
                    unsent=kind is OutcomeKind.UNREACHABLE or _is_connect_timeout(exc),
                )
        finally:
            self._lock.release()
        elapsed = time.monotonic() - start
        if status == 407:  # only a proxy says so: the request never reached the server
            return Outcome(
                OutcomeKind.UNREACHABLE,
                status=status,
                detail=_short(f"{_cannot_use(self._proxy_for(url))}: 407 {resp.reason or _AUTH}"),
                via=via,
                elapsed=elapsed,
                body_bytes=len(body),
                unsent=True,
            )
        return _answer(status, headers, text, via=via, elapsed=elapsed, body_bytes=len(body))

    def _proxy_for(self, url: str) -> str | None:
        """The proxy ``requests`` takes for ``url`` (the session's, else ``*_PROXY`` unless
        ``NO_PROXY`` names the host), without credentials; None when it goes direct."""
        from migas_logging.config import display_url

        try:
            proxies = self._session.merge_environment_settings(url, {}, None, None, None)
            proxy = self._requests.utils.select_proxy(url, proxies["proxies"])
        except Exception:
            return None
        if not proxy:
            return None
        return display_url(proxy if "://" in proxy else f"http://{proxy}")

    def _verify(self) -> bool | str:
        """The authorities a request trusts: the CA file ``SSL_CERT_FILE`` names, or True.

        True lets ``requests`` choose: ``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``,
        then certifi's bundle. ``requests`` never reads ``SSL_CERT_FILE`` (OpenSSL's
        variable, which sites with a private CA set), so it is read here, after those
        two, as OpenSSL does: a name that is not a file is ignored. Verification is
        never turned off.
        """
        if not self._session.trust_env:
            return True
        if os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
            return True
        path = os.environ.get("SSL_CERT_FILE")
        return path if path and os.path.isfile(path) else True

    def _failure(self, exc: Exception, budget: float, *, reading: bool) -> tuple[OutcomeKind, str]:
        """What an exception of a request means: no answer in time, none at all, or a
        connection that broke after the request went out (``reading``: while the body
        was read, where ``urllib3`` and ``http.client`` errors come unwrapped).

        Raises:
            Exception: ``exc`` itself when it is none of those (a bug, reported by the
                caller as ``CLIENT_ERROR``).
        """
        import http.client

        import urllib3

        rq = self._requests
        if isinstance(exc, (rq.exceptions.Timeout, urllib3.exceptions.TimeoutError)):
            return OutcomeKind.TIMEOUT, f"no answer within {budget:.3g} s ({type(exc).__name__})"
        if isinstance(exc, rq.exceptions.SSLError):
            detail = f"TLS failure: {_root_message(exc)}"
            if any(sign in detail for sign in _UNKNOWN_ISSUER):
                detail += f"; {_TRUST_HINT}"
            return OutcomeKind.UNREACHABLE, detail
        if isinstance(exc, rq.exceptions.ConnectionError):
            if _is_connect_failure(exc):
                return OutcomeKind.UNREACHABLE, "cannot connect: " + _root_message(exc)
            return OutcomeKind.SERVER_ERROR, (
                "connection broke during the answer: " + _root_message(exc)
            )
        if isinstance(exc, rq.exceptions.RequestException):
            return OutcomeKind.SERVER_ERROR, f"{type(exc).__name__}: {_root_message(exc)}"
        if reading and isinstance(
            exc, (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
        ):
            return OutcomeKind.SERVER_ERROR, (
                "connection broke during the answer: " + _root_message(exc)
            )
        raise exc


def _watch_session(
    session: requests.Session, adapter: type[requests.adapters.HTTPAdapter]
) -> None:
    """Mount watched adapters where ``session`` has ``requests``' stock ones."""
    import requests

    for prefix in ("https://", "http://"):
        current = session.adapters.get(prefix)
        if current is None or type(current) is requests.adapters.HTTPAdapter:
            retries = current.max_retries if current is not None else 0
            session.mount(prefix, adapter(max_retries=retries))


class _Overdue(Exception):
    """The answer did not end by its deadline."""


#: The most of an answer that is read: a migas answer is a few dozen bytes.
ANSWER_MAX_BYTES = 16 * 1024


def _read_answer(resp: Any, deadline: float) -> bytes:
    """Read an answer's body, at most ``ANSWER_MAX_BYTES``, by ``deadline``.

    The watchdog ends a read that passes the deadline; the check here between whatever
    arrives also holds where it cannot run, and the size limit keeps a huge page out of
    the memory. ``read1`` (urllib3 2) does at most one ``recv`` per call; with an older
    urllib3 the body is read a byte at a time (a few microseconds for a migas answer of
    a few dozen bytes).

    Raises:
        _Overdue: the deadline passed before the answer ended.
        http.client.IncompleteRead: the body ended before its ``Content-Length`` (an
            older urllib3 does not say so itself).
    """
    data = bytearray()
    read1 = getattr(resp.raw, "read1", None)
    chunks: Any
    if read1 is not None:
        chunks = iter(lambda: read1(ANSWER_MAX_BYTES + 1 - len(data), decode_content=True), b"")
    else:
        chunks = resp.iter_content(chunk_size=1)
    for chunk in chunks:
        data += chunk
        if len(data) > ANSWER_MAX_BYTES:
            break
        if time.monotonic() > deadline:
            raise _Overdue
    else:  # read to the end, not cut at ANSWER_MAX_BYTES
        _check_length(resp.headers, bytes(data))
    return bytes(data)


def _check_length(headers: Any, body: bytes) -> None:
    """Raise ``IncompleteRead`` if a plain body is shorter than its ``Content-Length``."""
    import http.client

    length = str(headers.get("Content-Length") or "").strip()
    encoding = str(headers.get("Content-Encoding") or "identity").strip().lower()
    if length.isdigit() and encoding == "identity" and len(body) < int(length):
        raise http.client.IncompleteRead(body, int(length) - len(body))


def _answer(
    status: int, headers: Any, text: str, *, via: str, elapsed: float, body_bytes: int
) -> Outcome:
    """The outcome of an answer that arrived whole."""
    try:
        payload: Any = json.loads(text) if text else None
    except ValueError:
        payload = None
    if 200 <= status < 300:
        if payload is None:
            return Outcome(
                OutcomeKind.BAD_ANSWER,
                status=status,
                detail=_short(f"HTTP {status} with a body that is not JSON: {text[:80]!r}"),
                via=via,
                elapsed=elapsed,
                body_bytes=body_bytes,
            )
        return Outcome(
            OutcomeKind.DELIVERED,
            status=status,
            via=via,
            elapsed=elapsed,
            payload=payload,
            body_bytes=body_bytes,
        )
    detail = _detail_of(payload, f"HTTP {status}: {text[:120]}")
    if status == 429:
        kind = OutcomeKind.RATE_LIMITED
    elif status >= 500:
        kind = OutcomeKind.SERVER_ERROR
    else:
        kind = OutcomeKind.REJECTED
    return Outcome(
        kind,
        status=status,
        detail=detail,
        retry_after=_retry_after(headers.get("Retry-After")),
        via=via,
        elapsed=elapsed,
        payload=payload,
        body_bytes=body_bytes,
    )


def _replace(outcome: Outcome, kind: OutcomeKind, detail: str) -> Outcome:
    return Outcome(
        kind,
        status=outcome.status,
        detail=detail,
        retry_after=outcome.retry_after,
        via=outcome.via,
        elapsed=outcome.elapsed,
        payload=outcome.payload,
        body_bytes=outcome.body_bytes,
    )


def _root_message(exc: BaseException) -> str:
    """The innermost cause's message, without the long urllib3 wrapper text."""
    seen: set[int] = set()
    current: BaseException | None = exc
    last = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        last = current
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        current = nxt
    reason = getattr(last, "reason", None)
    text = str(reason if isinstance(reason, BaseException) else last)
    return text or type(last).__name__


def _cannot_use(proxy: str | None) -> str:
    return f"cannot use the proxy {proxy}" if proxy else "cannot use the proxy"


def _is_proxy_failure(exc: BaseException, rq: Any, proxy: str | None) -> bool:
    """True when the proxy failed: it could not be reached, refused the tunnel (a 407,
    say), or its URL is one ``requests`` cannot use (no host, SOCKS without PySocks)."""
    if isinstance(exc, rq.exceptions.ProxyError):
        return True
    return bool(proxy) and isinstance(exc, (rq.exceptions.InvalidSchema, rq.exceptions.InvalidURL))


def _is_connect_timeout(exc: BaseException) -> bool:
    """True for a timeout while connecting: nothing was sent."""
    return type(exc).__name__ in ("ConnectTimeout", "ConnectTimeoutError")


def _is_connect_failure(exc: BaseException) -> bool:
    """True when the connection was never established (refused, DNS, unreachable)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in (
            "NewConnectionError",
            "ConnectionRefusedError",
            "NameResolutionError",
            "gaierror",
            "ConnectTimeoutError",
        ):
            return True
        if name in ("ProtocolError", "RemoteDisconnected", "ConnectionResetError"):
            return False
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        reason = getattr(current, "reason", None)
        if nxt is None and isinstance(reason, BaseException):
            nxt = reason
        current = nxt
    return "Max retries exceeded" in str(exc) and "NewConnectionError" in str(exc)
