"""``MigasHandler``: log records become breadcrumbs, delivered in the background.

The handler is a plain :class:`logging.Handler`, so it is configured like any other::

    LOGGING = {
        "version": 1,
        "handlers": {
            "migas": {
                "class": "migas_logging.MigasHandler",
                "project": "nipreps/fmriprep",
                "version": "24.1.0",
                "level": "WARNING",
            },
        },
        "root": {"handlers": ["migas"], "level": "INFO"},
    }
    logging.config.dictConfig(LOGGING)

``emit()`` does the least it can on the application's thread: it reads the record's
level, logger name and message template, summarises an attached exception without
reading any source file, and hands that to the process-wide
:class:`~migas_logging.worker.Pipeline`. It never waits on the network and never raises:
problems are counted in :attr:`MigasHandler.stats` and reported once on the package's own
logger.

Records of the package's own loggers (``migas_logging.*``) and of ``urllib3`` and
``requests``, and every record logged on the worker thread, are never shipped: the
worker's HTTP cannot re-enter the handler, even with the root logger at DEBUG.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from migas_logging import breadcrumb as _bc
from migas_logging import config
from migas_logging.exceptions import ConfigurationError
from migas_logging.worker import Pipeline, RateCap, Route, Stats, get_pipeline

__all__ = ["DEFAULT_STATUSES", "IGNORED_LOGGERS", "MigasHandler"]

MessageMode = Literal["template", "formatted", "none", "json"]
_MESSAGE_MODES = ("template", "formatted", "none", "json")

#: The longest ``status_desc`` that ``message="json"`` produces, in bytes: small enough
#: that fitting the breadcrumb never has to cut it (a cut would break the JSON).
JSON_DESC_MAX_BYTES = 800

# Set by the structlog processor on the thread that is logging an event it has sent,
# so that a MigasHandler further down the same call does not send it again.
_shipped = threading.local()

# Set while asyncio's default exception handler logs an exception that the crash hook
# has already reported, so that a MigasHandler does not report it a second time.
_reported = threading.local()

#: Default status by level: records at or above each level get its status.
DEFAULT_STATUSES: Mapping[str, str] = {"NOTSET": "R", "ERROR": "F"}

#: Loggers whose records are never shipped (with their children).
IGNORED_LOGGERS = ("migas_logging", "urllib3", "requests")

_DEFAULT_RATE_LIMIT = "30/60"


_IGNORED_PREFIXES = tuple(IGNORED_LOGGERS)


def _record_name(record: logging.LogRecord) -> str:
    """The record's logger name as text: receivers (socket, queue) may build records
    whose ``name`` is None or not a string, which logging's own handlers accept."""
    name = record.name
    return name if type(name) is str else _bc.safe_str(name)


def _ignored_logger(name: str) -> bool:
    """True for the loggers whose records are never shipped (and their children)."""
    if not name.startswith(_IGNORED_PREFIXES):  # one C call for nearly every record
        return False
    return any(name == i or name.startswith(i + ".") for i in IGNORED_LOGGERS)


class _Captured:
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


class MigasHandler(logging.Handler):
    """Send log records at or above ``level`` to a migas server as breadcrumbs.

    Every option is a plain value, so ``dictConfig`` (and ``fileConfig``'s ``args`` and
    ``kwargs``) can give it. Bad values fail here, at configuration time, with a message
    that names the value and the fix.

    Args:
        project: the project, ``owner/repo`` (required).
        version: the project's version; any value is made safe for the server.
        level: the lowest level shipped (default ``WARNING``).
        endpoint: the server's base URL (default ``MIGAS_ENDPOINT``, then the hosted
            server).
        timeout: network timeout in seconds (default ``MIGAS_TIMEOUT``, then 5).
        message: what ``status_desc`` carries after the logger's name: ``"template"``
            (default: the unformatted message, e.g. ``"step %s failed"``, so repeats fold
            and no argument data leaves), ``"formatted"`` (the full message), ``"json"`` (a
            compact JSON object of the logger name, the template and the named ``extras``,
            made by python-json-logger's formatter) or ``"none"``.
        statuses: level name (or number) to status; a record gets the status of the
            highest level it reaches. Default ``{"NOTSET": "R", "ERROR": "F"}``: ERROR and
            above are ``F`` (failed), lower levels ``R`` (running).
        extras: names of record attributes (``extra={...}``) to send; no other attribute
            is ever sent.
        redact: remove paths, the home directory, user and host names, e-mail and IP
            addresses, URLs and secret-looking environment values from the texts
            (default True; False keeps them).
        queue_size: events waiting at most (default 1000); more are dropped and counted.
        rate_limit: the per-process cap, e.g. ``"30/60"`` (default: 30 breadcrumbs per
            60 s, well under the server's 100 per 60 s per address), or None.
        fold_window: seconds in which repeats of one record (same logger, level, template,
            exception type) fold into one breadcrumb plus a count (default 60; 0 never
            folds).
        retries: extra tries after a 5xx or a timeout (default 3).
        flush_deadline: the most seconds ``flush()``, ``close()`` and the exit flush wait
            (default 2).
        excepthook: also report uncaught exceptions (see
            :func:`migas_logging.install_excepthook`); default True.
        track: report the run lifecycle: ``R`` / ``Started`` now and one terminal
            breadcrumb at exit (``C``, ``F`` or ``S``); default False. Implies
            ``excepthook``.
        audit_file: write every breadcrumb sent, and every one dropped with the reason,
            as a JSON line to this file (default ``MIGAS_AUDIT_FILE``; mode 0600, bounded
            size; nothing under opt-out).

    Raises:
        ConfigurationError: a missing or bad project, endpoint, timeout or option.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        project: str | None = None,
        version: object = "unknown",
        level: int | str = logging.WARNING,
        *,
        endpoint: str | None = None,
        timeout: float | str | None = None,
        message: MessageMode = "template",
        statuses: Mapping[Any, str] | None = None,
        extras: Sequence[str] | str | None = (),
        redact: bool = True,
        queue_size: int = 1000,
        rate_limit: object = _DEFAULT_RATE_LIMIT,
        fold_window: float = 60.0,
        retries: int = 3,
        flush_deadline: float = 2.0,
        excepthook: bool = True,
        track: bool = False,
        audit_file: str | None = None,
    ) -> None:
        if project is None:
            raise ConfigurationError(
                "MigasHandler needs project='owner/repo', the GitHub name of the project "
                "being tracked (for example project='nipreps/fmriprep')"
            )
        # Every value is checked before logging.Handler.__init__ registers the handler
        # for logging.shutdown(): a bad configuration leaves nothing half-built behind.
        self._shut = False
        self._hook: Any = None
        self._pipeline: Pipeline | None = None
        self.project = config.checked_project(project)
        self.version = _bc.normalize_version(version)
        self.settings = config.Settings.resolve(endpoint, timeout)
        if message not in _MESSAGE_MODES:
            raise ConfigurationError(
                f"message {message!r} is not one of {', '.join(map(repr, _MESSAGE_MODES))}"
            )
        self.message: MessageMode = message
        self._statuses = _parse_statuses(statuses)
        if isinstance(extras, str):
            extras = [e.strip() for e in extras.split(",") if e.strip()]
        try:
            if extras is None:  # e.g. YAML "extras:" left empty
                raise TypeError
            self.extras = tuple(str(e) for e in extras)
        except TypeError:
            raise ConfigurationError(
                f"extras {extras!r} is not a list of record attribute names, "
                f"e.g. ['subject', 'step']"
            ) from None
        self.redact = bool(redact)
        self.queue_size = _whole_number(queue_size, "queue_size", 1)
        self.rate_cap = RateCap.parse(rate_limit)
        self.fold_window = _non_negative(fold_window, "fold_window")
        self.retries = _whole_number(retries, "retries", 0)
        self.flush_deadline = _non_negative(flush_deadline, "flush_deadline")
        self.track = bool(track)
        self.excepthook = bool(excepthook) or self.track
        from migas_logging._audit import audit_path

        self.audit_file = audit_path(audit_file)
        try:
            logging._checkLevel(level)  # type: ignore[attr-defined]
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"level {level!r} is not a logging level; use a name such as 'WARNING' "
                f"or a number such as 30"
            ) from None
        super().__init__(level)
        self._reentry = threading.local()
        self._language_version = config.language_version()
        self._route = Route(build=self._build, name=f"MigasHandler({self.project})")
        if self.settings.optout:
            config.internal_logger().debug("MIGAS_OPTOUT is set: migas handler sends nothing")
            return
        config.get_session_id()  # the run's session starts now, before any fork
        self._pipeline = get_pipeline(
            self.settings.endpoint,
            self.settings.timeout,
            queue_size=self.queue_size,
            rate_cap=self.rate_cap,
            fold_window=self.fold_window,
            retries=self.retries,
            flush_deadline=self.flush_deadline,
        )
        self._pipeline.attach(self._route)
        if self.audit_file:
            self._pipeline.set_audit(self.audit_file)
        if self.excepthook:
            self._install_hook()

    # --- public --------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """What became of this handler's records (see :class:`~migas_logging.worker.Stats`)."""
        return self._route.stats

    def status_for(self, levelno: int) -> str:
        """The status a record at ``levelno`` gets."""
        for threshold, status in self._statuses:
            if levelno >= threshold:
                return status
        return "R"

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter out records that would make the handler feed itself, then emit.

        Records of ``migas_logging.*``, ``urllib3.*`` and ``requests.*`` and every record
        logged on the worker thread never reach :meth:`emit`.
        """
        if _ignored_logger(_record_name(record)):
            return False
        pipeline = self._pipeline
        if pipeline is not None and record.thread == pipeline._worker_ident:
            return False
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the server; never blocks on the network, never raises."""
        route = self._route
        pipeline = self._pipeline
        if getattr(self._reentry, "active", False):
            return  # a __str__ or a filter logged from inside emit(): never feed ourselves
        self._reentry.active = True
        try:
            if pipeline is None:
                self._account_without_pipeline(record)
                return
            if self._shut:
                pipeline.account(route, "closed")
                return
            if (_shipped.__dict__ and _already_shipped(record)) or (
                _reported.__dict__ and _is_reported(record)
            ):
                pipeline.account(route, "duplicate")
                return
            captured = self._capture(record)
            key = (
                id(route),
                captured.name,
                record.levelno,
                record.msg if type(record.msg) is str else captured.text,  # dict: its event
                captured.exc.type_name if captured.exc is not None else None,
            )
            pipeline.submit(route, captured, key if self.fold_window > 0 else None)
        except Exception as exc:
            try:
                if pipeline is not None:
                    pipeline.account(route, "error")
                    pipeline._report_once(
                        "emit", "migas handler failed to queue a record: %r", exc
                    )
            except Exception:
                pass
        finally:
            self._reentry.active = False

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the records handed over so far were sent, folded or dropped.

        Never waits past ``timeout`` (default ``flush_deadline``), and returns at once
        when called while ``logging``'s module lock is held (``dictConfig`` does that).
        """
        pipeline = self._pipeline
        if pipeline is not None:
            try:
                pipeline.flush(self.flush_deadline if timeout is None else timeout)
            except Exception:
                pass

    def close(self) -> None:
        """Flush within the deadline, then ignore later records (counted as ``closed``).

        Idempotent. It does not stop the process-wide worker, which other handlers may
        share; the exit flush does that.
        """
        if not self._shut:
            self._shut = True
            self.flush()
            hook = self._hook
            # A tracked run outlives the handler: logging.shutdown(), close() or a
            # dictConfig reload must not lose the terminal breadcrumb, and a reload with
            # the same project shares the hook (one Started per run, not one per reload).
            if hook is not None and not hook.track:
                try:
                    hook.uninstall()
                except Exception:
                    pass
            self._hook = None
        super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        endpoint = config.display_url(self.settings.endpoint)  # never its credentials
        return f"<MigasHandler {self.project} {self.version} ({level}) -> {endpoint}>"

    # --- internals -----------------------------------------------------------------

    def _account_without_pipeline(self, record: logging.LogRecord) -> None:
        """Opt-out at configuration time: count the record, touch nothing else."""
        stats = self._route.stats
        stats.emitted += 1
        stats.dropped["optout"] = stats.dropped.get("optout", 0) + 1

    def _capture(self, record: logging.LogRecord) -> _Captured:
        """Take what the breadcrumb needs, on the application's thread, cheaply."""
        msg = record.msg
        if isinstance(msg, dict):
            return self._capture_event_dict(record, msg)
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
        return _Captured(_record_name(record), self.status_for(record.levelno), text, exc, extras)

    def _capture_event_dict(self, record: logging.LogRecord, event: dict[Any, Any]) -> _Captured:
        """A structlog event dict as the record's message (``ProcessorFormatter``'s route).

        Only the ``event`` text and the named ``extras`` may leave: the other keys are the
        application's bound values (subject ids, file names), which the template mode
        exists to keep home.
        """
        text = event.get("event")
        text = text if isinstance(text, str) else _bc.safe_str(text)
        if self.message == "none":
            text = None
        raised = exception_of(record.exc_info or event.get("exc_info"))
        exc = _bc.capture_exception(raised) if raised is not None else None
        extras = tuple((name, _extra_value(event[name])) for name in self.extras if name in event)
        return _Captured(_record_name(record), self.status_for(record.levelno), text, exc, extras)

    def _build(self, captured: _Captured, ctx: _bc.Context) -> _bc.Breadcrumb:
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
            language_version=self._language_version,
            ctx=ctx,
            status=captured.status,
            status_desc=desc,
            error_type=exc.type_name if exc is not None else None,
            error_desc=exc.describe() if exc is not None else None,
            redactor=_bc.default_redactor() if self.redact else None,
        )

    def _install_hook(self) -> None:
        """Crash capture, when the crash module is available (see its docs)."""
        try:
            from migas_logging import excepthook as _hooks
        except ImportError:
            return
        self._hook = _hooks.install_for_handler(self)


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


def _json_desc(captured: _Captured) -> str:
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


def _already_shipped(record: logging.LogRecord) -> bool:
    """True when this record carries the very event the structlog processor sent.

    The rule is object identity, so it cannot match an unrelated record: structlog's
    ``ProcessorFormatter`` route hands logging the event dict itself as ``msg``;
    ``render_to_log_kwargs`` hands it the event text as ``msg`` and every other key of
    the dict as record attributes, each the same object. A mark is kept (one per thread,
    replaced by the next event) until a record matches it.
    """
    event_dict = _shipped.__dict__.get("event")
    if event_dict is None:
        return False
    msg = record.msg
    if msg is event_dict:
        _shipped.__dict__.pop("event", None)
        return True
    if type(msg) is not str or msg is not _shipped.__dict__.get("text"):
        return False
    values = record.__dict__
    others = [(k, v) for k, v in event_dict.items() if k != "event"]
    if others and all(k in values and values[k] is v for k, v in others):
        _shipped.__dict__.pop("event", None)
        return True
    return False


def _is_reported(record: logging.LogRecord) -> bool:
    """True when the record's exception is the one the crash hook is reporting now."""
    exc_info = record.exc_info
    return bool(exc_info) and exc_info[1] is _reported.__dict__.get("exc")  # type: ignore[index]


def mark_shipped(event_dict: object, text: object) -> None:
    """Note that the structlog processor sent ``event_dict`` (see :func:`_already_shipped`)."""
    _shipped.event = event_dict
    _shipped.text = text


def clear_shipped() -> None:
    """Forget the structlog processor's last mark on this thread."""
    _shipped.__dict__.pop("event", None)
    _shipped.__dict__.pop("text", None)


def _whole_number(value: object, name: str, minimum: int) -> int:
    number = -1
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError:
            pass
    if number < minimum:
        raise ConfigurationError(f"{name} {value!r} must be a whole number of {minimum} or more")
    return number


def _non_negative(value: object, name: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = -1.0
    if not number >= 0 or number == float("inf") or isinstance(value, bool):
        raise ConfigurationError(f"{name} {value!r} must be a number of seconds, 0 or more")
    return number
