"""The process-wide client: one set of delivery settings, one queue, one ledger.

Delivery settings belong to the process, not to a handler: one connection, one queue,
one rate cap, one exit deadline, one audit trail. Set them once, early, from code::

    import migas_logging
    migas_logging.configure(endpoint="http://127.0.0.1:8080", flush_deadline=3)

or let the first :class:`~migas_logging.MigasHandler` (or structlog processor, or crash
hook) make the client with the values it was given (``dictConfig`` reaches every setting
this way). Handlers, the structlog processor and the crash hook only capture and submit.

A setting given again with a different value is never silently ignored:
:func:`configure` raises :class:`~migas_logging.exceptions.ConfigurationError` when the
client already runs with another value (call :func:`reset` first to start over), and a
handler's differing value gets one warning on ``migas_logging`` naming both values (the
process keeps the first). Before anything was submitted, :func:`configure` may still
change the settings a handler's defaults made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from migas_logging import config
from migas_logging.admission import Admission, RateCap
from migas_logging.delivery import Sender
from migas_logging.exceptions import ConfigurationError
from migas_logging.ledger import Ledger, Stats
from migas_logging.policy import DeliveryPolicy
from migas_logging.worker import Route, Worker

if TYPE_CHECKING:
    from collections.abc import Callable

    from migas_logging._audit import AuditTrail
    from migas_logging.breadcrumb import Context
    from migas_logging.transport import Transport

__all__ = ["Client", "ClientSettings", "configure", "current_client", "get_client", "reset"]

_log = logging.getLogger("migas_logging")

DEFAULT_RATE_LIMIT = "30/60"
#: One budget for the processes of one user on one machine (they share an address): the
#: server's documented window, 100 requests per 60 s per address.
DEFAULT_MACHINE_RATE = "100/60"


def _spool_dir(spool: object) -> str | None:
    """The spool directory, or None (no spool).

    Off unless asked for: ``spool=True`` (the user's cache, ``~/.cache/migas/spool``), a
    directory, or ``MIGAS_SPOOL_DIR`` set by the end user, whose value always wins (an
    empty one turns the spool off whatever the application asked).
    """
    from migas_logging.spool import default_spool_dir

    env = os.environ.get("MIGAS_SPOOL_DIR")
    if spool is None:
        spool = env is not None
    elif isinstance(spool, str) and spool.strip().lower() in ("true", "yes", "on", "1"):
        spool = True
    elif isinstance(spool, str) and spool.strip().lower() in ("false", "no", "off", "0", ""):
        spool = False
    if spool is False:
        return None
    if spool is True or env is not None:
        found = default_spool_dir()
        return str(found) if found is not None else None
    if isinstance(spool, str | os.PathLike):
        return os.fspath(spool)
    raise ConfigurationError(
        f"spool {spool!r} is not a directory, True (the user's cache) or False (no spool)"
    )


_YES = frozenset({"1", "yes", "true", "on", "y", "t"})
_NO = frozenset({"0", "no", "false", "off", "n", "f", ""})


def yes_no(value: object, name: str) -> bool:
    """A yes/no option: a bool, 0 or 1, or the spellings configparser accepts.

    Raises:
        ConfigurationError: anything else (``"maybe"``, 2, a list).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
    raise ConfigurationError(
        f"{name} {value!r} is not a yes/no value; use True or False (in text: yes/no, "
        f"true/false, on/off, 1/0)"
    )


def _whole_number(value: object, name: str, minimum: int, maximum: int = 10**9) -> int:
    number = -1
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError:
            pass
    if not minimum <= number <= maximum:
        raise ConfigurationError(
            f"{name} {value!r} must be a whole number from {minimum} to {maximum}"
        )
    return number


def _seconds(value: object, name: str, maximum: float = 86_400.0) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = -1.0
    if not 0 <= number <= maximum or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} {value!r} must be a number of seconds from 0 to {maximum:g}"
        )
    return number


@dataclass(frozen=True)
class ClientSettings:
    """The process-wide delivery settings (see :func:`configure` for each)."""

    endpoint: str
    timeout: float
    queue_size: int = 1000
    rate_limit: RateCap | None = None
    fold_window: float = 60.0
    retries: int = 3
    flush_deadline: float = 2.0
    audit_file: str | None = None
    enabled: bool = True
    session_id: str | None = None
    spool_dir: str | None = None
    machine_rate: RateCap | None = None
    rate_window: float = 60.0
    circuit_cooldown: float = 30.0

    @classmethod
    def resolve(
        cls,
        endpoint: str | None = None,
        timeout: float | str | None = None,
        *,
        queue_size: object = 1000,
        rate_limit: object = DEFAULT_RATE_LIMIT,
        fold_window: object = 60.0,
        retries: object = 3,
        flush_deadline: object = 2.0,
        audit_file: str | None = None,
        enabled: object = True,
        session_id: object = None,
        spool: object = None,
        machine_rate: object = DEFAULT_MACHINE_RATE,
    ) -> ClientSettings:
        """Check every value and fill in the environment's and the defaults.

        Raises:
            ConfigurationError: a value is invalid; the message names it and the fix.
        """
        from migas_logging._audit import audit_path

        connection = config.Settings.resolve(endpoint, timeout)
        enabled = yes_no(enabled, "enabled")
        return cls(
            endpoint=connection.endpoint,
            timeout=connection.timeout,
            queue_size=_whole_number(queue_size, "queue_size", 1, 1_000_000),
            rate_limit=RateCap.parse(rate_limit),
            fold_window=_seconds(fold_window, "fold_window"),
            retries=_whole_number(retries, "retries", 0, 100),
            flush_deadline=_seconds(flush_deadline, "flush_deadline", 3600.0),
            audit_file=audit_path(audit_file),
            enabled=enabled,
            session_id=None if session_id is None else config.session_uuid(session_id),
            spool_dir=_spool_dir(spool),
            machine_rate=RateCap.parse(machine_rate),
        )

    def differences(self, other: ClientSettings) -> list[tuple[str, Any, Any]]:
        """``(name, ours, theirs)`` for every setting that differs."""
        out = []
        for field in fields(self):
            ours, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(ours, RateCap) or isinstance(theirs, RateCap):
                same = ours.same_as(theirs) if isinstance(ours, RateCap) else theirs is None
            else:
                same = ours == theirs
            if not same:
                out.append((field.name, ours, theirs))
        return out


class Client:
    """The process's delivery core: settings, worker, ledger, audit trail.

    Use :func:`get_client` or :func:`configure`; see the module docstring.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport_factory: Callable[[str, float], Transport] | None = None,
    ) -> None:
        self._reported: set[str] = set()
        self._transport_factory = transport_factory
        self.explicit = False  # made by configure(), not implicitly by a handler
        self.audit: AuditTrail | None = None
        self.spool: Any = None
        self.ledger = Ledger()
        from migas_logging.process import RunFlag

        self.run_flag = RunFlag()
        self._apply(settings)

    def _apply(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.policy = DeliveryPolicy(
            retries=settings.retries,
            rate_window=settings.rate_window,
            circuit_cooldown=settings.circuit_cooldown,
        )
        self.sender = Sender(settings, self.policy, self.report_once, self._transport_factory)
        self.sender.run_over = self.run_flag.ended_elsewhere
        admission = Admission(
            fold_window=settings.fold_window,
            rate_cap=settings.rate_limit,
            queue_size=settings.queue_size,
        )
        self.worker = Worker(admission, self.ledger, self.sender, self.report_once)
        if settings.audit_file and not config.optout():
            self._open_audit(settings.audit_file)
        if settings.spool_dir and not config.optout():
            self._open_spool(settings.spool_dir, settings.machine_rate)

    def _open_spool(self, directory: str, machine_rate: RateCap | None) -> None:
        """Keep what cannot be delivered for later, and share one budget per machine."""
        from migas_logging.replay import SpoolKeeper

        keeper = SpoolKeeper(directory, machine_rate, self.sender, self.report_once)
        self.spool = keeper
        self.worker.spool = keeper
        self.sender.budget = keeper.budget

    def _open_audit(self, path: str) -> None:
        from migas_logging._audit import AuditListener, AuditTrail

        self.audit = AuditTrail(path)
        listener = AuditListener(self.audit, self.sender.build, self.report_once)
        self.ledger.listeners.append(listener)
        self.sender.listeners_notes = listener.write_notes

    # --- what sources call ------------------------------------------------------------

    @property
    def total(self) -> Stats:
        """What became of every record of the process."""
        return self.ledger.total

    @property
    def endpoint(self) -> str:
        """The server's base URL."""
        return self.settings.endpoint

    @property
    def flush_deadline(self) -> float:
        """The exit flush's deadline, seconds."""
        return self.settings.flush_deadline

    @property
    def stopped(self) -> bool:
        """True after :meth:`stop`; later records are dropped (``closed``)."""
        return self.worker.stopped

    @property
    def worker_ident(self) -> int | None:
        """The worker thread's id: records it logs are never shipped."""
        return self.worker.thread_ident

    @property
    def last_delivery(self) -> float:
        """``time.monotonic()`` of the latest delivery (0 if none)."""
        return max(self.sender.last_delivery.values(), default=0.0)

    def attach(self, route: Route) -> None:
        """Know a source's route (a forked child resets its counts)."""
        self.worker.attach(route)

    def submit(self, route: Route, data: Any, key: Any = None) -> int:
        """Hand one record over (see :meth:`Worker.submit`); never blocks or raises."""
        return self.worker.submit(route, data, key)

    def account(self, route: Route, reason: str) -> None:
        """Count a record a source dropped before submitting it."""
        self.worker.account(route, reason)

    def end_run(self, route: Route, data: Any, deadline: float) -> bool:
        """Submit a run's terminal breadcrumb and wait for it until ``deadline``.

        Returns:
            True when it was settled (sent, or dropped with a reason) in time.
        """
        import time

        self.run_flag.end()  # forked children still running send nothing after this
        worker, sender = self.worker, self.sender
        sender.expect_terminal = True
        if worker.submit(route, data, terminal=True) == 0:
            return False
        sender.exit_at(deadline)
        if worker.alive():
            # its first imports must end before the interpreter finalizes: an import
            # during finalization makes CPython forget an unhandled KeyboardInterrupt
            sender.prepared.wait(max(0.0, deadline - sender.reserve() - time.monotonic()))
        # the worker sends it after what is queued before it; if it is still busy (a
        # try on a slow server) when only the terminal's reserve is left, send it here
        if worker.flush(max(0.0, deadline - sender.reserve() - time.monotonic())):
            return True
        worker.keep_rest()
        worker.settle_terminals(own_connection=True)
        return worker.flush(max(0.0, deadline - time.monotonic()))

    def context(self) -> Context:
        """The breadcrumb context, never waiting on identity."""
        return self.sender.context(wait=False)

    def flush(self, timeout: float | None = None, *, final: bool = False) -> bool:
        """Wait until what was submitted is settled, at most ``timeout`` seconds."""
        return self.worker.flush(self.flush_deadline if timeout is None else timeout, final=final)

    def stop(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then stop; what is left is dropped (``shutdown``)."""
        done = self.worker.stop(self.flush_deadline if timeout is None else timeout)
        if self.audit is not None:
            with contextlib.suppress(Exception):
                self.audit.close()
        return done

    def warm_up(self) -> None:
        """Start the worker so that it prepares off the application's thread."""
        self.worker.warm_up()

    def report_once(self, key: str, message: str, *args: object) -> None:
        """Report an internal problem once per process, on the package's own logger."""
        if key in self._reported:
            return
        self._reported.add(key)
        with contextlib.suppress(Exception):
            _log.warning(message, *args)

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child."""
        self.worker.after_fork_in_child()
        if self.audit is not None:
            self.audit.after_fork_in_child()


# --- the process-wide instance --------------------------------------------------------

_client: Client | None = None
_client_lock = threading.Lock()


def configure(
    *,
    endpoint: str | None = None,
    timeout: float | str | None = None,
    queue_size: int = 1000,
    rate_limit: object = DEFAULT_RATE_LIMIT,
    fold_window: float = 60.0,
    retries: int = 3,
    flush_deadline: float = 2.0,
    audit_file: str | None = None,
    enabled: bool = True,
    session_id: str | None = None,
    spool: object = None,
    machine_rate: object = DEFAULT_MACHINE_RATE,
) -> Client:
    """Set the process-wide delivery settings (call it once, early).

    Args:
        endpoint: the server's base URL (default ``MIGAS_ENDPOINT``, then the hosted one).
        timeout: network timeout per request, seconds (default ``MIGAS_TIMEOUT``, then 5).
        queue_size: breadcrumbs waiting at most; more are dropped (``queue_full``).
        rate_limit: the per-process cap, e.g. ``"30/60"``, or None.
        fold_window: seconds in which repeats of one record fold into one (0: never).
        retries: extra tries after a 5xx, a timeout or no connection.
        flush_deadline: the most seconds ``flush()``, ``close()`` and the whole exit take.
        audit_file: write a JSON line for every breadcrumb sent or dropped (default
            ``MIGAS_AUDIT_FILE``).
        enabled: False turns everything off, exactly like ``MIGAS_OPTOUT`` (map a
            tool's ``--notrack`` to it).
        session_id: the run's id as the session (a UUID, or any text turned into a
            stable UUID), as fMRIPrep uses its run UUID; forked children share it, and
            :func:`~migas_logging.config.export_session_id` passes it to others.
        spool: keep breadcrumbs that could not reach the server, to send them later
            (see docs/spool.md): True (``~/.cache/migas/spool``), a directory, or False.
            Off by default; ``MIGAS_SPOOL_DIR`` (the end user's) turns it on there, or
            off when empty, whatever the application says. Nothing under opt-out.
        machine_rate: with a spool, one budget for this user's processes on this
            machine, e.g. ``"100/60"`` (the default: the server's documented window per
            address), kept in a small locked file beside the spool; None: per-process
            caps only.

    Returns:
        The process's client.

    Raises:
        ConfigurationError: a bad value, or the client already runs with other values.

    .. versionadded:: 0.2.0
    """
    settings = ClientSettings.resolve(
        endpoint,
        timeout,
        queue_size=queue_size,
        rate_limit=rate_limit,
        fold_window=fold_window,
        retries=retries,
        flush_deadline=flush_deadline,
        audit_file=audit_file,
        enabled=enabled,
        session_id=session_id,
        spool=spool,
        machine_rate=machine_rate,
    )
    global _client  # noqa: PLW0603 - one client per process, by design
    with _client_lock:
        client = _client
        if client is None or client.stopped:
            client = _client = _new(settings)
        else:
            diffs = client.settings.differences(settings)
            if diffs and (client.explicit or client.total.emitted):
                raise ConfigurationError(
                    "migas_logging is already configured with "
                    + ", ".join(
                        f"{name}={ours!r} (not {theirs!r})" for name, ours, theirs in diffs
                    )
                    + "; configure() once, before the first handler, or reset() first"
                )
            if diffs:
                client.stop(0.0)
                client = _client = _new(settings)
        client.explicit = True
        return client


def _new(
    settings: ClientSettings, transport_factory: Callable[[str, float], Transport] | None = None
) -> Client:
    from migas_logging import process

    config.set_enabled(settings.enabled)
    if settings.session_id is not None:
        config.set_session_id(settings.session_id)
    client = Client(settings, transport_factory=transport_factory)
    process.register(client)
    return client


def install(
    settings: ClientSettings,
    *,
    transport_factory: Callable[[str, float], Transport] | None = None,
) -> Client:
    """Replace the process's client by one with exactly ``settings`` (for tests: the
    policy's windows and a transport of their own)."""
    global _client  # noqa: PLW0603
    with _client_lock:
        if _client is not None:
            _client.stop(0.0)
        _client = _new(settings, transport_factory)
        _client.explicit = True
        return _client


def get_client(
    settings: ClientSettings | None = None, given: frozenset[str] = frozenset()
) -> Client:
    """The process's client, made on first use with ``settings`` (or the defaults).

    A later caller's ``settings`` that differ in an option it ``given`` explicitly get one
    warning naming both values; the client keeps its own.
    """
    global _client  # noqa: PLW0603
    with _client_lock:
        client = _client
        if client is None or client.stopped:
            client = _client = _new(settings or ClientSettings.resolve())
            return client
    if settings is not None:
        for name, ours, theirs in client.settings.differences(settings):
            if name in given:
                client.report_once(
                    f"setting:{name}:{theirs!r}",
                    "migas_logging: %s=%r was asked for, but this process already uses "
                    "%s=%r (delivery settings are process-wide: set them once with "
                    "migas_logging.configure())",
                    name,
                    config.display_url(theirs) if name == "endpoint" else theirs,
                    name,
                    config.display_url(ours) if name == "endpoint" else ours,
                )
    return client


def current_client() -> Client | None:
    """The process's client, if one was made."""
    return _client


def reset(timeout: float = 0.5) -> None:
    """Stop the process's client (flushing within ``timeout``) and forget it.

    The next handler or :func:`configure` makes a new one. Meant for tests; sources made
    before the reset count their later records as ``closed``.
    """
    global _client  # noqa: PLW0603
    with _client_lock:
        if _client is not None:
            _client.stop(timeout)
        _client = None
    config.set_enabled(True)


def _after_fork_in_child() -> None:
    global _client_lock  # noqa: PLW0603
    _client_lock = threading.Lock()
    if _client is not None:
        _client.after_fork_in_child()


def with_settings(settings: ClientSettings, **changes: Any) -> ClientSettings:
    """A copy of ``settings`` with some values changed (tests use it)."""
    return replace(settings, **changes)
