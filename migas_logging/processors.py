"""``MigasProcessor``: a drop-in structlog processor that sends events as breadcrumbs.

Needs the extra: ``pip install 'migas-logging[structlog]'``.

Pure structlog — put the processor BEFORE ``format_exc_info`` (which replaces
``exc_info`` by a rendered ``exception`` string that holds no exception to summarise)
and before the renderer::

    structlog.configure(processors=[
        structlog.processors.add_log_level,
        MigasProcessor("nipreps/fmriprep", "24.1.0"),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ])

The processor returns the event dict it was given, unchanged: it never mutates it, never
raises ``DropEvent`` and never raises into the application, so the rendered output is
byte for byte what it was without it. It takes the options of
:class:`~migas_logging.MigasHandler` and shares with every handler of the process the
background worker, the session id, the folding of repeats and the rate cap. Events of
the package's own loggers are never sent.

structlog over the standard library — either send from stdlib logging with a
``MigasHandler`` (it receives structlog's events and every other library's records), or
send from structlog with the processor. If both are configured, an event sent by the
processor and then passed to stdlib logging on the same thread is not sent again by the
handler: the handler counts it as ``dropped["duplicate"]``.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from migas_logging import breadcrumb as _bc
from migas_logging import config
from migas_logging.handler import (
    IGNORED_LOGGERS,
    MigasHandler,
    clear_shipped,
    mark_shipped,
)
from migas_logging.mapping import exception_of

__all__ = ["MigasProcessor"]

try:
    import structlog  # noqa: F401 - checked here for a helpful message
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "migas_logging.processors needs structlog; "
        "install it with: pip install 'migas-logging[structlog]'"
    ) from exc

_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "log": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class MigasProcessor:
    """A structlog processor that sends events at or above ``level`` to a migas server.

    Args:
        project: ``owner/repo``.
        version: the project's version.
        level: the lowest level sent (default ``WARNING``).
        **options: any option of :class:`~migas_logging.MigasHandler` (``endpoint``,
            ``timeout``, ``message``, ``statuses``, ``extras`` — here, keys of the event
            dict —, ``redact``, ``rate_limit``, ``fold_window``, ``flush_deadline``,
            ``excepthook``, ``track``, ``audit_file``, ...).

    Raises:
        ConfigurationError: a missing or bad option, as for the handler.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        project: str | None = None,
        version: object = "unknown",
        level: int | str = logging.WARNING,
        **options: Any,
    ) -> None:
        # The handler checks every option and makes the client, the route, the mapping and
        # the crash hook; the processor never calls its handle(): it submits directly.
        # Its handler is not registered with logging (it is not the application's), so a
        # dictConfig reload cannot close it.
        options.setdefault("_registered", False)
        options.setdefault("_owner", "MigasProcessor")
        if isinstance(level, str):
            level = level.upper()  # structlog's names are lower case ("warning")
        self._handler = MigasHandler(project, version, level, **options)
        self._warned_after_format = False

    @property
    def handler(self) -> MigasHandler:
        """The handler that holds the processor's settings, ``stats``, ``flush()``, ``close()``."""
        return self._handler

    @property
    def stats(self) -> Any:
        """What became of the processor's events."""
        return self._handler.stats

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the events handed over so far are settled (see the handler)."""
        self._handler.flush(timeout)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Send the event if it is at or above the level; return it unchanged."""
        try:
            self._process(logger, method_name, event_dict)
        except Exception:
            pass
        return event_dict

    def _process(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> None:
        levelno = _level_of(method_name, event_dict)
        handler = self._handler
        if levelno < handler.level:
            return
        name = _bc.safe_str(
            event_dict.get("logger") or getattr(logger, "name", None) or "structlog"
        )
        for ignored in IGNORED_LOGGERS:
            if name == ignored or name.startswith(ignored + "."):
                return
        raised = exception_of(event_dict.get("exc_info"))
        if raised is None and "exception" in event_dict and not self._warned_after_format:
            self._warned_after_format = True
            config.internal_logger().warning(
                "MigasProcessor found a rendered 'exception' and no 'exc_info': it is placed "
                "after format_exc_info (or dict_tracebacks), which removes the exception; "
                "put MigasProcessor before it to send exception types and summaries"
            )
        clear_shipped()  # a mark left by an earlier event must not match this one
        handler._submit_event(name, levelno, event_dict, raised)
        mark_shipped(event_dict, event_dict.get("event"))


def _level_of(method_name: str, event_dict: MutableMapping[str, Any]) -> int:
    level = event_dict.get("level")
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if isinstance(number, int):
            return number
    return _METHOD_LEVELS.get(method_name, logging.INFO)
