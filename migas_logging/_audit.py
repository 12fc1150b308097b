"""The audit trail: one JSON line for every breadcrumb sent or dropped.

With ``audit_file=`` (or ``MIGAS_AUDIT_FILE``) the process writes what left the machine,
exactly as it was sent, and what did not, with the reason, so a user can see for
themselves what the telemetry of a tool contains::

    {"time": "...", "event": "sent", "outcome": "delivered", "http_status": 202,
     "via": "rest", "breadcrumb": {"project": "...", "proc": {...}, ...}}
    {"time": "...", "event": "dropped", "reason": "rate_cap", "breadcrumb": {...}}

Lines are written through python-json-logger's ``JsonFormatter`` by a logger that is not
part of the ``logging`` hierarchy (so no configuration of the application can redirect,
silence or duplicate it, and the handler can never ship it), on the worker thread (the
application's thread never touches the file). The file is created with mode 0600 and
rotated at ``max_bytes`` (default 5 MB, one backup): its size is bounded. Under
``MIGAS_OPTOUT`` nothing is written and the file is not even created.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging.handlers

__all__ = ["AuditTrail", "audit_path"]

DEFAULT_MAX_BYTES = 5_000_000


def audit_path(explicit: str | os.PathLike[str] | None) -> str | None:
    """The audit file to use: the argument, else ``MIGAS_AUDIT_FILE``, else none."""
    if explicit is not None:
        try:
            return os.fspath(explicit) or None
        except TypeError:
            from migas_logging.exceptions import ConfigurationError

            raise ConfigurationError(
                f"audit_file {explicit!r} is not a file path; give for example 'migas-audit.jsonl'"
            ) from None
    return os.environ.get("MIGAS_AUDIT_FILE") or None


def _private_rotating_handler() -> type[logging.handlers.RotatingFileHandler]:
    """A rotating file handler whose files are created with mode 0600.

    Made on first use: ``logging.handlers`` is not imported by an application that
    writes no audit trail.
    """
    import logging.handlers

    class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
        def _open(self) -> io.TextIOWrapper:
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            return io.TextIOWrapper(
                io.FileIO(fd, "a"), encoding=self.encoding or "utf-8", errors=self.errors
            )

    return PrivateRotatingFileHandler


class AuditTrail:
    """Writes the audit lines of one process.

    Args:
        path: the file.
        max_bytes: rotate past this size (one backup, ``<path>.1``).
    """

    def __init__(self, path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        from pythonjsonlogger.json import JsonFormatter

        self.path = path
        handler = _private_rotating_handler()(
            path, maxBytes=max_bytes, backupCount=1, encoding="utf-8", delay=True
        )
        # An unwritable file must not print logging's "--- Logging error ---" traceback
        # on the application's stderr for every breadcrumb: report it once, quietly.
        handler.handleError = self._write_failed  # type: ignore[method-assign]
        self._failed = False
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(message)s",
                rename_fields={"asctime": "time", "message": "event"},
                json_ensure_ascii=False,
            )
        )
        # Not logging.getLogger(): a logger outside the hierarchy cannot be reconfigured,
        # disabled or propagated by the application's logging set-up.
        self._logger = logging.Logger("migas_logging.audit", logging.INFO)
        self._logger.addHandler(handler)
        self._handler = handler
        self._notes: deque[tuple[Any, Any, str]] = deque(maxlen=10_000)
        self._lock = threading.Lock()

    def sent(
        self,
        payload: dict[str, Any],
        *,
        outcome: str,
        status: int | None,
        via: str,
        possible_duplicate: bool = False,
    ) -> None:
        """Record a breadcrumb that the server took (``possible_duplicate``: an earlier
        try timed out, so the server may hold it twice)."""
        fields = {"outcome": outcome, "http_status": status, "via": via, "breadcrumb": payload}
        if possible_duplicate:
            fields["possible_duplicate"] = True
        self._write("sent", fields)

    def dropped(self, reason: str, payload: dict[str, Any] | None, **details: Any) -> None:
        """Record a breadcrumb that did not leave, or was refused, with the reason."""
        self._write("dropped", {"reason": reason, "breadcrumb": payload, **details})

    def note(self, route: Any, data: Any, reason: str) -> None:
        """Remember a drop decided on the application's thread (written by the worker)."""
        self._notes.append((route, data, reason))

    def take_notes(self) -> list[tuple[Any, Any, str]]:
        """The drops noted since the last call, oldest first."""
        notes = []
        while self._notes:
            try:
                notes.append(self._notes.popleft())
            except IndexError:
                break
        return notes

    def _write_failed(self, record: logging.LogRecord) -> None:
        """A line could not be written: say so once on the package's logger."""
        if self._failed:
            return
        self._failed = True
        try:
            logging.getLogger("migas_logging.audit").warning(
                "could not write the migas audit trail to %s; audit lines are lost", self.path
            )
        except Exception:
            pass

    def after_fork_in_child(self) -> None:
        """A parent's thread may have held the lock at the fork; the notes are the parent's."""
        self._lock = threading.Lock()
        self._notes.clear()

    def close(self) -> None:
        """Close the file."""
        self._handler.close()

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        if "MIGAS_OPTOUT" in os.environ:
            return
        with self._lock:
            self._logger.info(event, extra=fields)


class AuditListener:
    """The audit trail as a listener of the ledger (see :mod:`migas_logging.ledger`).

    Args:
        trail: where the lines go.
        build: builds an entry's breadcrumb ``(route, data, suffix, wait=...)``.
        report: reports a problem once.
    """

    def __init__(self, trail: AuditTrail, build: Any, report: Any) -> None:
        self.trail = trail
        self._build = build
        self._report = report

    def _payload(self, route: Any, data: Any, suffix: str = "", crumb: Any = None) -> Any:
        if crumb is None and data is not None:
            try:
                crumb = self._build(route, data, suffix, wait=False)
            except Exception:
                crumb = None
        return crumb.to_payload() if crumb is not None else None

    def settled(self, entry: Any, result: str) -> None:
        """Write the line of one settled entry (worker thread)."""
        try:
            payload = self._payload(entry.route, entry.data, entry.suffix, entry.crumb)
            outcome = entry.outcome
            if result == "sent":
                self.trail.sent(
                    payload or {},
                    outcome=outcome.kind.value if outcome is not None else "delivered",
                    status=outcome.status if outcome is not None else None,
                    via=outcome.via if outcome is not None else "rest",
                    possible_duplicate=entry.timed_out,
                )
                return
            details: dict[str, Any] = {"summary": entry.summary, "terminal": entry.terminal}
            if outcome is not None:
                details["last_outcome"] = outcome.kind.value
                details["http_status"] = outcome.status
                details["detail"] = outcome.detail
            self.trail.dropped(result, payload, **details)
        except Exception as exc:
            self._report("audit-write", "could not write the migas audit trail: %r", exc)

    def refused_early(self, entry: Any, reason: str) -> None:
        """Note a drop decided on the application's thread; written by the worker."""
        route, data = entry
        self.trail.note(route, data, reason)

    def write_notes(self) -> None:
        """Write the noted drops (worker thread)."""
        for route, data, reason in self.trail.take_notes():
            try:
                self.trail.dropped(reason, self._payload(route, data), summary=False)
            except Exception as exc:
                self._report("audit-write", "could not write the migas audit trail: %r", exc)
