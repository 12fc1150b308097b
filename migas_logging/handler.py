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
:class:`~migas_logging.client.Client` (see docs/architecture.md). It never waits on the
network and never raises:
problems are counted in :attr:`MigasHandler.stats` and reported once on the package's own
logger.

Records of the package's own loggers (``migas_logging.*``) and of ``urllib3`` and
``requests``, and every record logged on the worker thread, are never shipped: the
worker's HTTP cannot re-enter the handler, even with the root logger at DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from migas_logging import breadcrumb as _bc
from migas_logging import config
from migas_logging.admission import RateCap
from migas_logging.client import (
    DEFAULT_MACHINE_RATE,
    DEFAULT_RATE_LIMIT,
    Client,
    ClientSettings,
    get_client,
    yes_no,
)
from migas_logging.exceptions import ConfigurationError
from migas_logging.ledger import Stats
from migas_logging.mapping import (
    DEFAULT_STATUSES,
    MAX_TEXT_CHARS,
    Captured,
    MessageMode,
    RecordMapping,
    _record_name,
)
from migas_logging.worker import Route

__all__ = ["DEFAULT_STATUSES", "IGNORED_LOGGERS", "MigasHandler"]

# Set by the structlog processor on the thread that is logging an event it has sent,
# so that a MigasHandler further down the same call does not send it again.
_shipped = threading.local()

# Set while asyncio's default exception handler logs an exception that the crash hook
# has already reported, so that a MigasHandler does not report it a second time.
_reported = threading.local()

#: Loggers whose records are never shipped (with their children).
IGNORED_LOGGERS = ("migas_logging", "urllib3", "requests")


class _Default:
    """A process-wide option the handler was not given: the client's value applies."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_QUEUE_SIZE = _Default(1000)
_RATE_LIMIT = _Default(DEFAULT_RATE_LIMIT)
_FOLD_WINDOW = _Default(60.0)
_RETRIES = _Default(3)
_FLUSH_DEADLINE = _Default(2.0)
_SPOOL = _Default(None)
_MACHINE_RATE = _Default(DEFAULT_MACHINE_RATE)


_IGNORED_PREFIXES = tuple(IGNORED_LOGGERS)


def _ignored_logger(name: str) -> bool:
    """True for the loggers whose records are never shipped (and their children)."""
    if not name.startswith(_IGNORED_PREFIXES):  # one C call for nearly every record
        return False
    return any(name == i or name.startswith(i + ".") for i in IGNORED_LOGGERS)


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
        queue_size: process-wide (see :func:`migas_logging.configure`): breadcrumbs
            waiting at most (default 1000); more are dropped and counted.
        rate_limit: process-wide: the per-process cap, e.g. ``"30/60"`` (default: 30
            breadcrumbs per 60 s, well under the server's 100 per 60 s per address), or
            None.
        fold_window: process-wide: seconds in which repeats of one record (same logger,
            level, template, exception type) fold into one breadcrumb plus a count
            (default 60; 0 never folds).
        retries: process-wide: extra tries after a 5xx or a timeout (default 3).
        flush_deadline: process-wide: the most seconds ``flush()``, ``close()`` and the
            whole exit wait (default 2).
        excepthook: also report uncaught exceptions (see
            :func:`migas_logging.install_excepthook`); default True.
        track: report the run lifecycle: ``R`` / ``Started`` now and one terminal
            breadcrumb at exit (``C``, ``F`` or ``S``); default False. Implies
            ``excepthook``.
        audit_file: process-wide: write every breadcrumb sent, and every one dropped
            with the reason, as a JSON line to this file (default ``MIGAS_AUDIT_FILE``;
            mode 0600, bounded size; nothing under opt-out).

        enabled: process-wide: False turns everything off, like ``MIGAS_OPTOUT`` (map a
            tool's ``--notrack`` to it); yes/no spellings are accepted from text.
        session_id: process-wide: the run's id as the session (a UUID, or any text made
            a stable UUID), as fMRIPrep uses its run UUID.
        ignore_loggers: loggers (with their children) whose records are never sent, e.g.
            ``["nipype.interface"]``; a comma-separated string works too.
        error_detail: how much of an exception leaves, in records and crashes:
            ``"message"`` (default: its message and a path-free summary of where it was
            raised, redacted) or ``"type"`` (its class name only).
        spool: process-wide: keep breadcrumbs that could not reach the server and send
            them later (see :func:`migas_logging.configure`); off by default.
        machine_rate: process-wide: with a spool, one budget for this user's processes
            on this machine (default ``"100/60"``).
        error_classes: the application's own classes of crashes (see
            :class:`~migas_logging.excepthook.CrashHook`), tried first.
        preset: ``"nipype"``: nipype's failed nodes named, path-free.
        classify: map the failures every pipeline meets to stable classes (default on).
        before_send: ``(breadcrumb, hint) -> breadcrumb | None``, applied to the crash
            and lifecycle breadcrumbs (see :mod:`migas_logging.classify`): return a
            changed breadcrumb, or None to drop it (counted ``filtered``).

    The process-wide options (and ``endpoint`` and ``timeout``) make the process's
    client when this is the first handler; a later handler that gives a different value
    gets one warning naming both, and the first value stays.

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
        queue_size: int | _Default = _QUEUE_SIZE,
        rate_limit: object = _RATE_LIMIT,
        fold_window: float | _Default = _FOLD_WINDOW,
        retries: int | _Default = _RETRIES,
        flush_deadline: float | _Default = _FLUSH_DEADLINE,
        excepthook: bool = True,
        track: bool = False,
        audit_file: str | None = None,
        enabled: object = True,
        session_id: str | None = None,
        ignore_loggers: Sequence[str] | str | None = (),
        before_send: Any = None,
        error_detail: str = "message",
        error_classes: Mapping[str, Any] | None = None,
        preset: str | None = None,
        classify: object = True,
        spool: object = _SPOOL,
        machine_rate: object = _MACHINE_RATE,
        _registered: bool = True,
        _owner: str = "MigasHandler",
        **unknown: Any,
    ) -> None:
        if unknown:
            raise _unknown_options(_owner, unknown)
        if project is None:
            raise ConfigurationError(
                "MigasHandler needs project='owner/repo', the GitHub name of the project "
                "being tracked (for example project='nipreps/fmriprep')"
            )
        # Every value is checked before logging.Handler.__init__ registers the handler
        # for logging.shutdown(): a bad configuration leaves nothing half-built behind.
        self._shut = False
        self._hook: Any = None
        self._client: Client | None = None
        self.project = config.checked_project(project)
        self.version = _bc.normalize_version(version)
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
        self.redact = yes_no(redact, "redact")
        self._mapping = RecordMapping(
            self.project,
            self.version,
            message=message,
            statuses=statuses,
            extras=self.extras,
            redact=self.redact,
            error_detail=error_detail,  # type: ignore[arg-type]  # checked there
        )
        self.error_detail = self._mapping.error_detail
        self.message: MessageMode = message
        process_wide = {
            "queue_size": queue_size,
            "rate_limit": rate_limit,
            "fold_window": fold_window,
            "retries": retries,
            "flush_deadline": flush_deadline,
            "spool": spool,
            "machine_rate": machine_rate,
        }
        given = {k for k, v in process_wide.items() if not isinstance(v, _Default)}
        if endpoint is not None:
            given.add("endpoint")
        if timeout is not None:
            given.add("timeout")
        if audit_file is not None:
            given.add("audit_file")
        if session_id is not None:
            given.add("session_id")
        wanted = ClientSettings.resolve(
            endpoint,
            timeout,
            audit_file=audit_file,
            enabled=enabled,
            session_id=session_id,
            **{k: v.value if isinstance(v, _Default) else v for k, v in process_wide.items()},
        )
        if not wanted.enabled:
            config.set_enabled(False)  # process-wide, like MIGAS_OPTOUT (--notrack)
        self.ignore_loggers = _logger_names(ignore_loggers)
        if before_send is not None and not callable(before_send):
            raise ConfigurationError(
                f"before_send {before_send!r} is not callable; give a function "
                f"(breadcrumb, hint) -> breadcrumb or None (in dictConfig: 'ext://pkg.func')"
            )
        self.before_send = before_send
        self.error_classes = error_classes
        self.preset = preset
        self.classify = yes_no(classify, "classify")
        self.settings = config.Settings(wanted.endpoint, wanted.timeout, config.optout())
        self.track = yes_no(track, "track")
        self.excepthook = yes_no(excepthook, "excepthook") or self.track
        try:
            if _registered:
                super().__init__(level)  # checks the level before registering the handler
            else:
                _init_unregistered(self, level)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"level {level!r} is not a logging level; use a name such as 'WARNING' "
                f"or a number such as 30"
            ) from None
        self._reentry = threading.local()
        self._route = Route(build=self._build, name=f"MigasHandler({self.project})")
        if self.settings.optout:
            self._wanted = wanted
            config.internal_logger().debug("MIGAS_OPTOUT is set: migas handler sends nothing")
            return
        config.get_session_id()  # the run's session starts now, before any fork
        self._client = get_client(wanted, frozenset(given))
        self._client.attach(self._route)
        if self.excepthook:
            self._install_hook()

    # --- the process-wide settings this handler runs with ---------------------------

    @property
    def _process_settings(self) -> ClientSettings:
        client = self._client
        return client.settings if client is not None else self._wanted

    @property
    def queue_size(self) -> int:
        """The process's queue bound (see :func:`migas_logging.configure`)."""
        return self._process_settings.queue_size

    @property
    def fold_window(self) -> float:
        """The process's fold window, seconds."""
        return self._process_settings.fold_window

    @property
    def retries(self) -> int:
        """The process's retries."""
        return self._process_settings.retries

    @property
    def flush_deadline(self) -> float:
        """The process's flush deadline, seconds."""
        return self._process_settings.flush_deadline

    @property
    def rate_cap(self) -> RateCap | None:
        """The process's rate cap."""
        return self._process_settings.rate_limit

    @property
    def audit_file(self) -> str | None:
        """The process's audit file, if any."""
        return self._process_settings.audit_file

    # --- public --------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """What became of this handler's records (see :class:`~migas_logging.ledger.Stats`)."""
        return self._route.stats

    def status_for(self, levelno: int) -> str:
        """The status a record at ``levelno`` gets."""
        return self._mapping.status_for(levelno)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter out records that would make the handler feed itself, then emit.

        Records of ``migas_logging.*``, ``urllib3.*`` and ``requests.*`` and every record
        logged on the worker thread never reach :meth:`emit`.
        """
        name = _record_name(record)
        if _ignored_logger(name) or (self.ignore_loggers and _listed(name, self.ignore_loggers)):
            return False
        client = self._client
        if client is not None and record.thread == client.worker_ident:
            return False
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the server; never blocks on the network, never raises."""
        route = self._route
        client = self._client
        if getattr(self._reentry, "active", False):
            return  # a __str__ or a filter logged from inside emit(): never feed ourselves
        self._reentry.active = True
        try:
            if client is None:
                self._account_without_client()
                return
            if self._shut:
                client.account(route, "closed")
                return
            if (_shipped.__dict__ and _already_shipped(record)) or (
                _reported.__dict__ and _is_reported(record)
            ):
                client.account(route, "duplicate")
                return
            captured = self._capture(record)
            msg = record.msg
            key = (
                id(route),
                captured.name,
                record.levelno,
                # the template (a dict: its event; a prepared record: what is kept)
                msg[:MAX_TEXT_CHARS]
                if type(msg) is str and record.args is not None
                else captured.text,
                captured.exc.type_name if captured.exc is not None else None,
            )
            client.submit(route, captured, key)
        except Exception as exc:
            try:
                if client is not None:
                    client.account(route, "error")
                    client.report_once("emit", "migas handler failed to queue a record: %r", exc)
            except Exception:
                pass
        finally:
            self._reentry.active = False

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the records handed over so far were sent, folded or dropped.

        Never waits past ``timeout`` (default ``flush_deadline``), and returns at once
        when called while ``logging``'s module lock is held (``dictConfig`` does that).
        """
        client = self._client
        if client is not None:
            try:
                client.flush(self.flush_deadline if timeout is None else timeout)
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

    def _account_without_client(self) -> None:
        """Opt-out at configuration time: count the record, touch nothing else."""
        stats = self._route.stats
        stats.emitted += 1
        stats.dropped["optout"] = stats.dropped.get("optout", 0) + 1

    def _submit_event(
        self, name: str, levelno: int, event: Mapping[Any, Any], raised: BaseException | None
    ) -> None:
        """Submit a structlog event (the processor's path: no LogRecord involved)."""
        client = self._client
        route = self._route
        if client is None:
            self._account_without_client()
            return
        if self._shut:
            client.account(route, "closed")
            return
        try:
            captured = self._mapping.capture_event(name, levelno, event, raised)
            key = (
                id(route),
                name,
                levelno,
                captured.text,
                captured.exc.type_name if captured.exc is not None else None,
            )
            client.submit(route, captured, key)
        except Exception as exc:
            with contextlib.suppress(Exception):
                client.account(route, "error")
                client.report_once("emit", "migas processor failed to queue an event: %r", exc)

    def _capture(self, record: logging.LogRecord) -> Captured:
        return self._mapping.capture(record)

    def _build(self, captured: Captured, ctx: _bc.Context) -> _bc.Breadcrumb:
        return self._mapping.build(captured, ctx)

    def _install_hook(self) -> None:
        """Crash capture, when the crash module is available (see its docs)."""
        try:
            from migas_logging import excepthook as _hooks
        except ImportError:
            return
        self._hook = _hooks.install_for_handler(self)


def _unknown_options(owner: str, unknown: Mapping[str, Any]) -> ConfigurationError:
    """An error naming each unknown option and the closest valid one (``tiemout``)."""
    import difflib
    import inspect

    valid = [
        name
        for name in inspect.signature(MigasHandler.__init__).parameters
        if not name.startswith("_") and name not in ("self", "unknown")
    ]
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ConfigurationError(
        f"{owner} got unknown option{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
        f"the options are: {', '.join(valid)}"
    )


def _logger_names(value: Sequence[str] | str | None) -> tuple[str, ...]:
    """``ignore_loggers`` as a tuple of names (a comma-separated string works too)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    try:
        names = tuple(str(v).strip() for v in value)
    except TypeError:
        raise ConfigurationError(
            f"ignore_loggers {value!r} is not a list of logger names, e.g. ['nipype.workflow']"
        ) from None
    return tuple(n for n in names if n)


def _listed(name: str, loggers: tuple[str, ...]) -> bool:
    """True when ``name`` is one of ``loggers`` or a child of one."""
    return any(name == n or name.startswith(n + ".") for n in loggers)


def _init_unregistered(handler: logging.Handler, level: int | str) -> None:
    """``Handler.__init__`` without registering for ``logging.shutdown()`` (public API only).

    A filterer with the level checked by ``setLevel``, a name, a lock, and no formatter.
    """
    logging.Filterer.__init__(handler)
    handler._name = None  # type: ignore[attr-defined]
    handler.level = logging.NOTSET
    handler.setLevel(level)
    handler.formatter = None
    handler._closed = False  # type: ignore[attr-defined]
    handler.createLock()


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
