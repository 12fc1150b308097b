"""The one mapping from a log record (or a structlog event) to a breadcrumb.

Two steps, both pure: :meth:`RecordMapping.capture` runs on the application's thread and
keeps only what the breadcrumb needs (small, immutable, bounded in size, free of frames
and arguments); :meth:`RecordMapping.build` runs on the worker and makes the breadcrumb
(redaction and fitting happen there). :class:`~migas_logging.MigasHandler`, the structlog
processor and the tests use it; there is no other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from migas_logging import breadcrumb as _bc
from migas_logging.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_STATUSES",
    "Captured",
    "ErrorDetail",
    "MessageMode",
    "RecordMapping",
    "exception_of",
]

MessageMode = Literal["template", "formatted", "none", "json"]
_MESSAGE_MODES = ("template", "formatted", "none", "json")

#: The longest ``status_desc`` that ``message="json"`` produces, in bytes: small enough
#: that fitting the breadcrumb never has to cut it (a cut would break the JSON).
JSON_DESC_MAX_BYTES = 800

#: Default status by level: records at or above each level get its status.
DEFAULT_STATUSES: Mapping[str, str] = {"NOTSET": "R", "ERROR": "F"}

#: The most characters of a message kept per record (queued or folded): a huge message
#: must not hold megabytes per record; the breadcrumb keeps far less anyway.
MAX_TEXT_CHARS = 4096


def _record_name(record: logging.LogRecord) -> str:
    """The record's logger name as text: receivers (socket, queue) may build records
    whose ``name`` is None or not a string, which logging's own handlers accept."""
    name = record.name
    return name if type(name) is str else _bc.safe_str(name)


class Captured:
    """What ``emit()`` keeps of a record: small, immutable, free of frames and args."""

    __slots__ = ("exc", "extras", "name", "status", "text")

    def __init__(
        self,
        name: str,
        status: str,
        text: str | None,
        exc: _bc.ExceptionInfo | None,
        extras: tuple[tuple[str, Any], ...],
    ) -> None:
        self.name = name
        self.status = status
        self.text = text
        self.exc = exc
        self.extras = extras


def _parse_statuses(statuses: Mapping[Any, Any] | None) -> tuple[tuple[int, str], ...]:
    """Turn ``{"ERROR": "F", ...}`` into thresholds, highest first."""
    table = dict(DEFAULT_STATUSES if statuses is None else statuses)
    if not table:
        raise ConfigurationError("statuses must map at least one level to a status")
    thresholds: dict[int, str] = {}
    for level, status in table.items():
        if isinstance(level, int) and not isinstance(level, bool):
            number = level
        else:
            number = logging.getLevelName(str(level).upper())
            if not isinstance(number, int):
                raise ConfigurationError(
                    f"statuses: {level!r} is not a logging level name; use for example "
                    f"{{'WARNING': 'R', 'ERROR': 'F'}}"
                )
        if status not in ("R", "C", "F", "S"):
            raise ConfigurationError(
                f"statuses: {status!r} (for {level!r}) is not a migas status; use R, C, F or S"
            )
        thresholds[number] = status
    if min(thresholds) > 0:
        thresholds.setdefault(0, "R")
    return tuple(sorted(thresholds.items(), reverse=True))


ErrorDetail = Literal["message", "type"]
_ERROR_DETAILS = ("message", "type")


def checked_error_detail(value: object) -> ErrorDetail:
    """``error_detail`` as given, or a :class:`ConfigurationError`."""
    if value not in _ERROR_DETAILS:
        raise ConfigurationError(
            f"error_detail {value!r} is not 'message' (the exception's message and where, "
            f"redacted) or 'type' (the exception's class name only)"
        )
    return value  # type: ignore[return-value]


def is_prepared(record: logging.LogRecord) -> bool:
    """True for a record a ``QueueHandler`` prepared: ``msg`` is the formatted message
    (the very object ``prepare()`` stored as ``message``) and ``args`` is None."""
    return record.args is None and record.__dict__.get("message") is record.msg


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::[ ]?(.*))?$")


def _exception_from_traceback(trace: str) -> _bc.ExceptionInfo | None:
    """The exception's type and message from a formatted traceback's last line.

    The source lines, file names and frames above it are never kept.
    """
    for line in reversed(trace[-20_000:].splitlines()):
        if not line or line[0].isspace():
            continue
        match = _EXC_LINE.match(line)
        if match is None:
            return None
        type_name = match.group(1).rpartition(".")[2][:64]
        message = _bc.storable_text(match.group(2) or "", max_chars=1000)
        return _bc.ExceptionInfo(type_name, message)
    return None


class RecordMapping:
    """How one source (a handler, a processor) turns records into breadcrumbs.

    Args:
        project: ``owner/repo`` (checked by the caller).
        version: the project's version (normalised by the caller).
        message: ``"template"``, ``"formatted"``, ``"json"`` or ``"none"``.
        statuses: level to status (see :class:`~migas_logging.MigasHandler`).
        extras: names of record attributes (or event keys) to send.
        redact: remove identifying text when building.
        error_detail: how much of an exception leaves: ``"message"`` (its message and a
            path-free summary of where it was raised, redacted) or ``"type"`` (its class
            name only: ``error_desc`` is never sent).
    """

    def __init__(
        self,
        project: str,
        version: str,
        *,
        message: MessageMode = "template",
        statuses: Mapping[Any, str] | None = None,
        extras: Sequence[str] = (),
        redact: bool = True,
        error_detail: ErrorDetail = "message",
    ) -> None:
        from migas_logging import config

        if message not in _MESSAGE_MODES:
            raise ConfigurationError(
                f"message {message!r} is not one of {', '.join(map(repr, _MESSAGE_MODES))}"
            )
        self.project = project
        self.version = version
        self.message: MessageMode = message
        self._statuses = _parse_statuses(statuses)
        self.extras = tuple(extras)
        self.redact = redact
        self.error_detail = checked_error_detail(error_detail)
        self.language_version = config.language_version()

    def status_for(self, levelno: int) -> str:
        """The status a record at ``levelno`` gets."""
        for threshold, status in self._statuses:
            if levelno >= threshold:
                return status
        return "R"

    def capture(self, record: logging.LogRecord) -> Captured:
        """Take what the breadcrumb needs, on the application's thread, cheaply."""
        msg = record.msg
        if isinstance(msg, dict):
            return self._capture_event_dict(record, msg)
        if is_prepared(record):
            return self._capture_prepared(record, msg)
        mode = self.message
        # only a plain str is trusted as is: a subclass may override __str__ or __format__
        template = msg if type(msg) is str else _bc.safe_str(msg)
        if mode == "none":
            text: str | None = None
        elif mode == "formatted":
            try:
                text = record.getMessage()
                if type(text) is not str:
                    text = _bc.safe_str(text)
            except Exception:
                text = template + " [unformattable]"
        else:
            text = template
        if text is not None and len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]  # bounded per record, whatever the message
        exc = None
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            exc = _bc.capture_exception(exc_info[1])
        extras: tuple[tuple[str, Any], ...] = ()
        if self.extras:
            values = record.__dict__
            extras = tuple(
                (name, _extra_value(values[name])) for name in self.extras if name in values
            )
        return Captured(_record_name(record), self.status_for(record.levelno), text, exc, extras)

    def _capture_prepared(self, record: logging.LogRecord, formatted: object) -> Captured:
        """A record a ``QueueHandler`` already formatted (see :func:`is_prepared`).

        Its ``msg`` is the whole formatted line with the traceback appended: arguments and
        source lines that must not leave. The template is gone, so ``template`` and
        ``json`` send the logger name only; ``formatted`` sends the formatted text without
        its traceback. The exception's type and message are read back from the
        traceback's last line, where there is one.
        """
        text = formatted if type(formatted) is str else _bc.safe_str(formatted)
        head, _, trace = text.partition("\nTraceback (most recent call last):")
        shown = head[:MAX_TEXT_CHARS] if self.message == "formatted" else None
        exc = _exception_from_traceback(trace) if trace else None
        return Captured(_record_name(record), self.status_for(record.levelno), shown, exc, ())

    def _capture_event_dict(self, record: logging.LogRecord, event: dict[Any, Any]) -> Captured:
        """A structlog event dict as the record's message (``ProcessorFormatter``'s route).

        Only the ``event`` text and the named ``extras`` may leave: the other keys are the
        application's bound values (subject ids, file names), which the template mode
        exists to keep home.
        """
        raised = exception_of(record.exc_info or event.get("exc_info"))
        return self.capture_event(_record_name(record), record.levelno, event, raised)

    def capture_event(
        self,
        name: str,
        levelno: int,
        event: Mapping[Any, Any],
        raised: BaseException | None,
    ) -> Captured:
        """A structlog event dict: only its ``event`` text and the named extras."""
        text = event.get("event")
        text = text if isinstance(text, str) else _bc.safe_str(text)
        text = None if self.message == "none" else text[:MAX_TEXT_CHARS]
        exc = _bc.capture_exception(raised) if raised is not None else None
        extras = tuple((name, _extra_value(event[name])) for name in self.extras if name in event)
        return Captured(name, self.status_for(levelno), text, exc, extras)

    def build(self, captured: Captured, ctx: _bc.Context) -> _bc.Breadcrumb:
        """Turn a captured record into a breadcrumb (on the worker thread)."""
        if self.message == "json":
            desc = _json_desc(captured)
        else:
            desc = captured.name if captured.text is None else f"{captured.name}: {captured.text}"
            if captured.extras:
                desc += " [" + " ".join(f"{k}={v}" for k, v in captured.extras) + "]"
        exc = captured.exc
        return _bc.build(
            project=self.project,
            version=self.version,
            language_version=self.language_version,
            ctx=ctx,
            status=captured.status,
            status_desc=desc,
            error_type=exc.type_name if exc is not None else None,
            error_desc=exc.describe()
            if exc is not None and self.error_detail == "message"
            else None,
            redactor=_bc.default_redactor() if self.redact else None,
        )


def exception_of(exc_info: object) -> BaseException | None:
    """The exception an ``exc_info`` value means, by structlog's rules.

    An exception is itself; an ``(type, value, traceback)`` tuple means its value; any
    other true value means the exception being handled (``sys.exc_info()``).
    """
    if exc_info is None or exc_info is False:
        return None
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    if not exc_info:
        return None
    import sys

    return sys.exc_info()[1]


def _extra_value(value: object) -> Any:
    """A named extra as captured on the application's thread: small and immutable."""
    if value is None or type(value) is bool or type(value) is float:
        return value
    if type(value) is int and isinstance(value, int) and -(10**18) < value < 10**18:
        return value  # (a huge int cannot even be turned into text: Python refuses)
    return _bc.safe_str(value)[:200]


_json_formatter: logging.Formatter | None = None


def _json_desc(captured: Captured) -> str:
    """``status_desc`` for ``message="json"``, made by python-json-logger's formatter.

    Values are shortened (never the keys) until the JSON fits ``JSON_DESC_MAX_BYTES``,
    so that it stays valid JSON inside the size limit.
    """
    global _json_formatter  # noqa: PLW0603 - one formatter per process, built lazily
    if _json_formatter is None:
        from pythonjsonlogger.json import JsonFormatter

        _json_formatter = JsonFormatter(
            "%(name)s %(message)s", rename_fields={"name": "logger"}, json_ensure_ascii=False
        )
    fields: dict[str, Any] = {k: v for k, v in captured.extras if k not in _RESERVED}
    text = captured.text or ""
    limit = 400
    while True:
        record = logging.makeLogRecord({"name": captured.name, "msg": text[:limit], "args": None})
        record.__dict__.update(
            {k: v[:limit] if isinstance(v, str) else v for k, v in fields.items()}
        )
        desc = _json_formatter.format(record)
        if len(desc.encode("utf-8", "surrogatepass")) <= JSON_DESC_MAX_BYTES or limit <= 8:
            return desc
        limit //= 2


_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
