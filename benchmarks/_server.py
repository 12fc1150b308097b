"""The server process: the local collector and a sentry envelope sink, steered by the parent.

Both servers run in ONE separate process (``python -m benchmarks._server``), so that
their work never competes for the GIL of the process being measured. The parent talks
to it with one JSON object per line on stdin/stdout:

- ``{"cmd": "state", "state": "healthy" | "slow" | "hang"}``: no fault, a 200 ms delay
  per answer, or never answering (both servers); ``down`` is a closed port and needs
  no command;
- ``{"cmd": "reset"}``: forget stored breadcrumbs and counted requests (and release
  hanging requests);
- ``{"cmd": "counts", "before": T}``: breadcrumb requests received (collector), rows
  stored, envelopes and events received (sink), in total and up to ``time.time() == T``;
- ``{"cmd": "rate_limit", "limit": [COUNT, SECONDS] | null}``: the collector's rate limit
  per client address (none by default), like ``migas-logging serve --rate-limit``;
- ``{"cmd": "sessions", "ids": [...]}``: the collector's counters (requests, ``429``
  answers) and, for each session id, its stored rows and whether its latest one is
  terminal (see :func:`session_summary`);
- ``{"cmd": "stop"}``.

The sink answers any ``POST`` with ``200 {}`` in a single ``send`` (with
``TCP_NODELAY``), like a Sentry relay that accepts everything; it counts envelopes and
the ``event`` items inside them (gzip-compressed bodies are decompressed).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from benchmarks._common import PROJECT, child_env

# --- the sentry sink ------------------------------------------------------------------


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections that clients dropped (a child's ``os._exit``)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.lock = threading.Lock()
        self.state = "healthy"
        self.release = threading.Event()
        self.arrivals: list[tuple[float, int]] = []  # (time.time(), events in envelope)


class _SinkHandler(BaseHTTPRequestHandler):
    server: _SinkServer
    protocol_version = "HTTP/1.1"
    timeout = 60

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        arrived = time.time()
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        with contextlib.suppress(Exception):
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
        events = body.count(b'"type":"event"')
        server = self.server
        with server.lock:
            server.arrivals.append((arrived, events))
            state, release = server.state, server.release
        if state == "slow":
            time.sleep(0.2)
        elif state == "hang":
            release.wait()
            self.close_connection = True
            return
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )

    do_PUT = do_POST


def session_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One session's stored rows (ordered by storage) summed up.

    ``terminal``: a ``C``, ``F`` or ``S`` row was stored. ``latest``: the last row stored
    is terminal AND its timestamp (one-second resolution) is later than every other
    row's, so the dashboard, which reads a session's latest row, shows it as the outcome
    (two rows in the same second have no defined order).
    """
    statuses = [r.get("status") for r in rows]
    terminal = any(s in ("C", "F", "S") for s in statuses)
    latest = False
    if rows and statuses[-1] in ("C", "F", "S"):
        last = rows[-1]["timestamp"]
        latest = all(r["timestamp"] < last for r in rows[:-1])
    return {
        "rows": len(rows),
        "terminal": terminal,
        "latest": latest,
        "status": statuses[-1] if statuses else None,
    }


def _serve(stdin: IO[str], stdout: IO[str]) -> None:
    from migas_logging.collector import LocalCollector

    # No rate limit: the benchmarks send thousands of breadcrumbs a minute on purpose.
    collector = LocalCollector(register=(PROJECT,), rate_limit=None).start()
    sink = _SinkServer()
    threading.Thread(
        target=sink.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()

    def reply(obj: dict[str, Any]) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    reply({"url": collector.url, "sink_port": sink.server_address[1]})
    for line in stdin:
        try:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            if cmd == "state":
                state = msg["state"]
                collector.clear_fault()
                with sink.lock:
                    sink.state = state
                    sink.release.set()
                    sink.release = threading.Event()
                if state == "slow":
                    collector.fault("delay", seconds=0.2)
                elif state == "hang":
                    collector.fault("hang")
                reply({"ok": True})
            elif cmd == "reset":
                collector.reset()
                with sink.lock:
                    sink.arrivals.clear()
                reply({"ok": True})
            elif cmd == "counts":
                before = msg.get("before") or float("inf")
                crumbs = [
                    r.time
                    for r in collector.requests()
                    if r.path.partition("?")[0] in ("/api/breadcrumb", "/graphql")
                ]
                with sink.lock:
                    arrivals = list(sink.arrivals)
                reply(
                    {
                        "collector_requests": len(crumbs),
                        "collector_requests_before": sum(1 for t in crumbs if t <= before),
                        "stored": len(collector.breadcrumbs()),
                        "sink_envelopes": len(arrivals),
                        "sink_events": sum(n for _, n in arrivals),
                        "sink_events_before": sum(n for t, n in arrivals if t <= before),
                    }
                )
            elif cmd == "rate_limit":
                limit = msg.get("limit")
                collector.set_rate_limit(None if limit is None else (limit[0], limit[1]))
                reply({"ok": True})
            elif cmd == "sessions":
                stats = collector.stats()
                reply(
                    {
                        "requests": stats["requests"],
                        "rate_limited": stats["rate_limited"],
                        "stored": stats["stored"],
                        "sessions": {
                            sid: session_summary(collector.breadcrumbs(session_id=sid))
                            for sid in msg.get("ids", [])
                        },
                    }
                )
            elif cmd == "stop":
                reply({"ok": True})
                break
            else:
                reply({"error": f"unknown command {cmd!r}"})
        except Exception as exc:
            reply({"error": repr(exc)})
    with sink.lock:
        sink.release.set()
    sink.shutdown()
    collector.stop(timeout=2.0)


# --- the parent's side ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where the libraries send in one server state."""

    state: str
    url: str
    """The collector's base URL (a closed port when the server is down)."""
    sentry_dsn: str
    """A DSN that makes sentry-sdk post envelopes to the sink (or a closed port)."""


class ServerProcess:
    """Start, steer and stop the server process (a context manager)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.sink_port = 0
        self._down_port = 0

    def __enter__(self) -> ServerProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        hello = self._read()
        self.url = str(hello["url"])
        self.sink_port = int(hello["sink_port"])
        from migas_logging.collector import free_port

        self._down_port = free_port()
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            self._send({"cmd": "stop"})
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        self._proc = None

    def _read(self) -> dict[str, Any]:
        if self._proc is None or self._proc.stdout is None:
            raise RuntimeError("the benchmark server process is not running")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark server process died")
        data: dict[str, Any] = json.loads(line)
        if "error" in data:
            raise RuntimeError(f"benchmark server: {data['error']}")
        return data

    def _send(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("the benchmark server process is not running")
        self._proc.stdin.write(json.dumps(msg) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def set_state(self, state: str) -> Endpoints:
        """Put both servers in ``state``; return the endpoints to use in it."""
        self._send({"cmd": "state", "state": "healthy" if state == "down" else state})
        port = self._down_port if state == "down" else int(self.url.rsplit(":", 1)[1])
        sink = self._down_port if state == "down" else self.sink_port
        return Endpoints(
            state=state,
            url=f"http://127.0.0.1:{port}",
            sentry_dsn=f"http://public@127.0.0.1:{sink}/1",
        )

    def reset(self) -> None:
        """Forget what both servers received."""
        self._send({"cmd": "reset"})

    def set_rate_limit(self, limit: tuple[int, float] | None) -> None:
        """Limit the collector to ``limit`` = (requests, seconds) per address, or not."""
        self._send({"cmd": "rate_limit", "limit": None if limit is None else list(limit)})

    def sessions(self, ids: list[str]) -> dict[str, Any]:
        """The collector's counters and each session's summary (see the module docstring)."""
        return self._send({"cmd": "sessions", "ids": ids})

    def counts(self, before: float | None = None) -> dict[str, Any]:
        """What the servers received (see the module docstring)."""
        return self._send({"cmd": "counts", "before": before})


if __name__ == "__main__":
    _serve(sys.stdin, sys.stdout)
