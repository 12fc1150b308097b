"""Crash capture and the run lifecycle.

An uncaught exception becomes a final breadcrumb before the process dies, and the hook
that was there before still runs, so the usual traceback still prints and other tools'
hooks still see the exception::

    import migas_logging
    hook = migas_logging.install_excepthook("nipreps/fmriprep", "24.1.0")
    ...
    hook.uninstall()   # optional: restores exactly what was there

A :class:`~migas_logging.MigasHandler` with ``excepthook=True`` (the default) installs the
same hook, so a program whose only telemetry set-up is a ``dictConfig`` reports its
crashes.

What is installed: ``sys.excepthook`` and ``threading.excepthook``, each chaining to the
hook that was there before. Uninstalling restores the previous hook only where ours is
still the current one; where another tool installed its hook on top of ours, ours stays
in the chain but passes everything through untouched. Installing twice for one project
is harmless (the second call returns the first hook). Interactive sessions (``sys.ps1``)
are left alone unless ``interactive=True``.

The crash breadcrumb: ``F`` / ``Errored`` with ``error_type`` the exception's class name
and ``error_desc`` its message plus a compact, path-free summary of where it was raised;
``KeyboardInterrupt`` and ``bdb.BdbQuit`` give ``S`` / ``Suspended``, like the official
client. Exceptions in ``ignore`` (default: ``SystemExit``) are not reported. A crash in
another thread is reported as ``Errored in thread <name>`` through the background worker
(the process goes on); a crash of the main thread is sent synchronously, after whatever
the worker still holds, within the flush deadline, at least one second after the
session's previous breadcrumb (the server's clock has one-second resolution and the
dashboard reads each session's latest breadcrumb, so the crash must not tie with an
earlier one), with ``?wait=true`` so that the server confirms it stored it. With the
server down or hanging, the process still exits within the deadline.

``os._exit()`` ends a process without running any hook: nothing can be sent then.

Installing the hook starts the background worker, which prepares (imports, the user id,
the connection object) off the application's thread, so that the crash path itself
imports nothing: CPython forgets that a ``KeyboardInterrupt`` was unhandled — and exits
with 1 instead of dying by SIGINT — when any code runs ``exec`` on source text (an import
that builds a namedtuple, say) while the interpreter shuts down. An unhandled
``KeyboardInterrupt`` still ends the process by SIGINT, whatever ran meanwhile: the exit
re-raises it itself (see :func:`migas_logging.process.die_at_end`).

The run lifecycle (``track=True``): a ``R`` / ``Started`` breadcrumb at install, and one
terminal breadcrumb at exit: ``C`` / ``Completed`` on a normal exit (and ``sys.exit(0)``),
``F`` / ``Exited with code n`` on ``sys.exit(n)`` (see
:func:`migas_logging.process.watch_exit`),
``F`` / ``Errored`` on a crash, ``S`` / ``Suspended`` on
``KeyboardInterrupt`` and ``S`` / ``Terminated (SIGTERM)`` on SIGTERM. The terminal
breadcrumb carries the run's counts (sent, folded, dropped). Signal handlers are
installed only from the main thread; they record the signal and chain to the previous
handler, doing no I/O. When the previous disposition was the default one, the handler
raises an internal ``BaseException`` so that the interpreter unwinds and runs its exit
hooks; the last of them sends the terminal breadcrumb, flushes logging and re-raises the
signal with its default disposition, so the process still dies by that signal (a parent
sees -15).

asyncio: exceptions of tasks that nobody awaited go to the loop's exception handler, not
to ``sys.excepthook``. One line routes them here too::

    loop.set_exception_handler(migas_logging.excepthook.asyncio_exception_handler)
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from migas_logging import breadcrumb as _bc
from migas_logging import config, process
from migas_logging.process import die_by_signal, exit_deadline, signals_deferred

if TYPE_CHECKING:
    from migas_logging.client import Client
    from migas_logging.handler import MigasHandler
    from migas_logging.worker import Route

__all__ = ["CrashHook", "asyncio_exception_handler", "install_excepthook"]

_log = logging.getLogger("migas_logging.excepthook")

_SUSPEND = ("KeyboardInterrupt", "BdbQuit")

_hooks: dict[str, CrashHook] = {}
_hooks_lock = threading.Lock()


def _is_interactive() -> bool:
    return hasattr(sys, "ps1") or bool(getattr(sys.flags, "interactive", 0))


class CrashHook:
    """Reports uncaught exceptions (and, with ``track``, the run's start and end).

    Made by :func:`install_excepthook` or by a handler; see the module docstring.

    Args:
        project: ``owner/repo``.
        version: the project's version.
        endpoint: the server's base URL (default ``MIGAS_ENDPOINT``, then the hosted one).
        timeout: network timeout, seconds.
        flush_deadline: process-wide (see :func:`migas_logging.configure`): the most
            seconds the whole exit spends sending; default: the process's (2).
        redact: remove identifying text (see :class:`~migas_logging.MigasHandler`).
        ignore: exception classes (or class names) not reported.
        interactive: install even in an interactive session.
        track: report the run lifecycle (start and terminal breadcrumbs).
        error_detail: ``"message"`` (default) or ``"type"``: with ``"type"``, only the
            exception's class name leaves (no ``error_desc``).
        error_classes: exception class name -> function ``(exception) -> (error_type,
            error_desc)`` (or a dict of those keys, or None), like migas-py's
            ``error_funcs``: the application's own stable classes, tried first.
        preset: ``"nipype"``: nipype's failed nodes named, path-free (see
            :mod:`migas_logging.classify`).
        classify: map the failures every pipeline meets (out of memory, no space left,
            killed by a signal, permission denied, missing file) to stable classes
            (default True).
        enabled: process-wide: False turns everything off, like ``MIGAS_OPTOUT``.
        session_id: process-wide: the run's id as the session (see
            :func:`migas_logging.configure`).
        before_send: ``(breadcrumb, hint) -> breadcrumb | None`` for the crash and
            lifecycle breadcrumbs, on the worker thread: rewrite one (``dataclasses``-free:
            use :meth:`~migas_logging.breadcrumb.Breadcrumb.replace`), or return None to
            drop it (counted ``filtered``). ``hint`` holds ``kind`` (``crash``,
            ``thread``, ``unraisable``, ``started``, ``terminal``), ``exception`` (the
            main thread's, when there is one) and ``exit_status``. A hook that raises
            leaves the breadcrumb as it was.
    """

    def __init__(
        self,
        project: str,
        version: object = "unknown",
        *,
        endpoint: str | None = None,
        timeout: float | str | None = None,
        flush_deadline: float | None = None,
        redact: bool = True,
        ignore: Iterable[type[BaseException] | str] = (SystemExit,),
        interactive: bool = False,
        track: bool = False,
        before_send: Callable[[_bc.Breadcrumb, dict[str, Any]], _bc.Breadcrumb | None]
        | None = None,
        error_detail: str = "message",
        error_classes: Mapping[str, Callable[[BaseException], Any]] | None = None,
        preset: str | None = None,
        classify: bool = True,
        enabled: object = True,
        session_id: str | None = None,
        _handler: MigasHandler | None = None,
    ) -> None:
        from migas_logging.client import ClientSettings, get_client, yes_no
        from migas_logging.exceptions import ConfigurationError
        from migas_logging.worker import Route

        self.project = config.checked_project(project)
        self.version = _bc.normalize_version(version)
        if not yes_no(enabled, "enabled"):
            config.set_enabled(False)  # process-wide, like MIGAS_OPTOUT (--notrack)
        self.settings = config.Settings.resolve(endpoint, timeout)
        from migas_logging.client import _seconds

        self._flush_deadline = (
            None if flush_deadline is None else _seconds(flush_deadline, "flush_deadline", 3600.0)
        )
        self.redact = yes_no(redact, "redact")
        try:
            self.ignore = tuple(i if isinstance(i, str) else i.__name__ for i in ignore)
        except (TypeError, AttributeError):
            raise ConfigurationError(
                f"ignore {ignore!r} is not a list of exception classes or class names, "
                f"e.g. [SystemExit, 'BrokenPipeError']"
            ) from None
        self.interactive = yes_no(interactive, "interactive")
        self.track = yes_no(track, "track")
        self._language_version = config.language_version()
        if not self.settings.optout:
            config.get_session_id()  # the run's session starts now, before any fork
        self._installed = False
        self._active = False
        self._refs = 0
        self._prev_sys: Callable[..., Any] | None = None
        self._prev_thread: Callable[..., Any] | None = None
        self._prev_unraisable: Callable[..., Any] | None = None
        if before_send is not None and not callable(before_send):
            raise ConfigurationError(
                f"before_send {before_send!r} is not callable; give a function "
                f"(breadcrumb, hint) -> breadcrumb or None"
            )
        self.before_send = before_send
        from migas_logging.mapping import checked_error_detail

        self.error_detail = checked_error_detail(error_detail)
        from migas_logging.classify import PRESETS

        if preset is not None and preset not in PRESETS:
            raise ConfigurationError(
                f"preset {preset!r} is not one of {', '.join(map(repr, sorted(PRESETS)))}"
            )
        try:
            self.error_classes = dict(error_classes or {})
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"error_classes {error_classes!r} is not a mapping of exception class names "
                f"to functions, e.g. {{'NodeExecutionError': parse}}"
            ) from None
        if not all(isinstance(k, str) and callable(v) for k, v in self.error_classes.items()):
            raise ConfigurationError(
                "error_classes maps exception class names (str) to functions "
                "(exception) -> (error_type, error_desc) or None"
            )
        self.preset = preset
        self.classify = yes_no(classify, "classify")
        self._prev_signals: dict[int, Any] = {}
        self._terminal_sent = False
        self._deferred: int | None = None  # a signal that came while the run was ending
        self._signal: int | None = None
        self._reraise: int | None = None
        self._pid = os.getpid()
        self._route: Route | None = None
        self._crash_route: Route | None = None
        self._client: Client | None = None
        if _handler is not None:
            self._route = _handler._route
            self._client = _handler._client
        elif not self.settings.optout:
            given = {"endpoint"} if endpoint else set()
            if timeout is not None:
                given.add("timeout")
            wanted = ClientSettings.resolve(endpoint, timeout, session_id=session_id)
            if session_id is not None:
                given.add("session_id")
            if self._flush_deadline is not None:
                given.add("flush_deadline")
                wanted = replace(wanted, flush_deadline=self._flush_deadline)
            self._client = get_client(wanted, given=frozenset(given))
            self._route = Route(build=self._build_from_data, name=f"CrashHook({self.project})")
            self._client.attach(self._route)

    @property
    def flush_deadline(self) -> float:
        """The process's exit deadline, seconds (its client's, once there is one)."""
        if self._client is not None:
            return self._client.flush_deadline
        return 2.0 if self._flush_deadline is None else self._flush_deadline

    # --- install / uninstall --------------------------------------------------------

    @property
    def installed(self) -> bool:
        """True while the hook is installed."""
        return self._installed

    def install(self) -> CrashHook:
        """Install the hooks (idempotent); returns self."""
        self._refs += 1
        if self._installed:
            return self
        if self.settings.optout:
            return self
        if _is_interactive() and not self.interactive:
            return self
        self._prev_sys = sys.excepthook
        sys.excepthook = self._sys_hook
        self._prev_thread = threading.excepthook
        threading.excepthook = self._thread_hook
        self._prev_unraisable = sys.unraisablehook
        sys.unraisablehook = self._unraisable_hook
        self._installed = True
        self._active = True
        if self._client is not None:
            self._client.warm_up()
        if self.track:
            self._start_run()
        return self

    def uninstall(self) -> None:
        """Restore what was there before, where ours is still the current hook.

        With several owners (two handlers for one project), the hooks go when the last
        one uninstalls.
        """
        self._refs = max(0, self._refs - 1)
        if self._refs or not self._installed:
            return
        self._active = False
        self._installed = False
        if sys.excepthook == self._sys_hook:
            sys.excepthook = self._prev_sys or sys.__excepthook__
        if threading.excepthook == self._thread_hook:
            threading.excepthook = self._prev_thread or threading.__excepthook__
        if sys.unraisablehook == self._unraisable_hook:
            sys.unraisablehook = self._prev_unraisable or sys.__unraisablehook__
        self._give_back_signals()
        self._prev_signals.clear()
        with _hooks_lock:
            if _hooks.get(self.project) is self:
                del _hooks[self.project]

    # --- the hooks ------------------------------------------------------------------

    def _ignored(self, exc: BaseException | None) -> bool:
        if exc is None:
            return True
        return any(cls.__name__ in self.ignore for cls in type(exc).__mro__)

    def _sys_hook(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        terminated = isinstance(exc, _Terminated)  # a signal, not an error: no report
        if isinstance(exc, KeyboardInterrupt) and os.getpid() == self._pid:
            process.die_at_end(signal.SIGINT)  # see process.die_at_end
        try:
            if (
                self._active
                and not terminated
                and os.getpid() == self._pid
                and not self._ignored(exc)
            ):
                self._report_crash(exc)
        except Exception:
            pass
        if terminated:
            return  # and no traceback: the process is being terminated, not failing
        previous = self._prev_sys if self._prev_sys is not None else sys.__excepthook__
        try:
            previous(exc_type, exc, tb)
        finally:
            if self._deferred is not None:
                die_by_signal(self._deferred)

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        try:
            exc = args.exc_value
            if self._active and exc is not None and not self._ignored(exc):
                name = args.thread.name if args.thread is not None else "?"
                self._report_thread_crash(exc, name)
        except Exception:
            pass
        finally:
            previous = (
                self._prev_thread if self._prev_thread is not None else threading.__excepthook__
            )
            previous(args)

    def _unraisable_hook(self, unraisable: Any) -> None:
        """An exception Python could only call "unraisable" (in ``__del__``, a callback):
        an ``R`` breadcrumb (the process goes on), then the previous hook."""
        try:
            exc = unraisable.exc_value
            if (
                self._active
                and exc is not None
                and os.getpid() == self._pid
                and not self._ignored(exc)
            ):
                self._report_unraisable(exc, unraisable.object)
        except Exception:
            pass
        finally:
            previous = self._prev_unraisable or sys.__unraisablehook__
            previous(unraisable)

    # --- reporting ------------------------------------------------------------------

    def _crumb(
        self, exc: BaseException, ctx: _bc.Context, status_desc: str | None = None
    ) -> _bc.Breadcrumb:
        crumb = _bc.from_exception(
            exc,
            project=self.project,
            version=self.version,
            language_version=self._language_version,
            ctx=ctx,
            status_desc=status_desc,
            redactor=_bc.default_redactor() if self.redact else None,
        )
        found = self._classified(exc)
        if found is not None:
            crumb = crumb.replace(error_type=found[0], error_desc=found[1])
        return crumb if self.error_detail == "message" else crumb.replace(error_desc=None)

    def _build_from_data(self, data: Any, ctx: _bc.Context) -> _bc.Breadcrumb:
        crumb: _bc.Breadcrumb = data
        return crumb

    def _report_thread_crash(self, exc: BaseException, thread_name: str) -> None:
        """A thread died: queue an F breadcrumb (the process goes on)."""
        client, route = self._client, self._route
        if client is None or route is None:
            return
        info = _bc.capture_exception(exc)
        status = "S" if info.type_name in _SUSPEND else "F"
        desc = ("Suspended" if status == "S" else "Errored") + f" in thread {thread_name}"
        data = _ThreadCrash(info, status, desc)
        data.found = self._classified(exc)
        # like any record: the rate cap and the queue bound hold for a storm of crashes
        client.submit(_CrashRoute.of(self, route), data)

    def _report_unraisable(self, exc: BaseException, obj: object) -> None:
        """Queue an ``R`` breadcrumb naming where it happened by type, never by value."""
        client, route = self._client, self._route
        if client is None or route is None:
            return
        # a function's qualified name (``Leaky.__del__``) or an object's class: code
        # names, never a value (which could carry the user's data)
        code = getattr(obj, "__code__", None) or getattr(
            getattr(obj, "__func__", None), "__code__", None
        )
        where = code.co_qualname if code is not None and hasattr(code, "co_qualname") else None
        if where is None:
            where = getattr(obj, "__qualname__", None) if code is not None else None
        if not isinstance(where, str):
            where = type(obj).__qualname__ if obj is not None else "?"
        data = _ThreadCrash(_bc.capture_exception(exc), "R", f"Unraisable exception in {where}")
        data.kind = "unraisable"
        data.found = self._classified(exc)
        client.submit(_CrashRoute.of(self, route), data)

    def _report_crash(self, exc: BaseException) -> None:
        """The main thread died: end the run with its crash, within the exit deadline."""
        self._end(_MainCrash(exc), exit_deadline(self.flush_deadline))

    def send_terminal(self, crumb: _bc.Breadcrumb, *, deadline: float | None = None) -> bool:
        """End the run with ``crumb``, sent after what is queued, by ``deadline``.

        ``deadline`` is a ``time.monotonic()`` value (default: the flush deadline from
        now). The breadcrumb takes the one path of every breadcrumb, as the privileged
        terminal one: counted, audited, spaced a second after the project's previous
        delivery when the deadline allows, confirmed with ``?wait=true``. Once per run.

        Returns:
            True when it was settled (sent or dropped with a reason) in time.
        """
        if deadline is None:
            deadline = time.monotonic() + self.flush_deadline
        return self._end(crumb, deadline)

    def _end(self, data: Any, deadline: float) -> bool:
        client, route = self._client, self._route
        if self._terminal_sent or client is None or route is None or config.optout():
            return False
        self._terminal_sent = True
        with signals_deferred() as got:  # a second Ctrl-C must not lose the terminal
            ok = client.end_run(_CrashRoute.of(self, route), data, deadline)
        if not ok:
            _report("terminal:deadline", "migas: the final breadcrumb was not settled in time")
        if got:
            self._deferred = got[0]
        return ok

    # --- run lifecycle --------------------------------------------------------------

    def _start_run(self) -> None:
        process.watch_exit()
        client, route = self._client, self._route
        if client is not None and route is not None:
            client.submit(_CrashRoute.of(self, route), _Plain("R", "Started"))
        atexit.register(self._at_exit)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ValueError, OSError):
                    previous = signal.getsignal(signum)
                    if previous is signal.SIG_IGN:
                        continue
                    self._prev_signals[signum] = previous
                    signal.signal(signum, self._on_signal)

    def _give_back_signals(self) -> None:
        """Restore the dispositions we replaced, where ours is still the current one."""
        for signum, previous in self._prev_signals.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(signum) == self._on_signal:
                    signal.signal(signum, previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Record the signal and chain; no I/O, no lock (see the module docstring)."""
        previous = self._prev_signals.get(signum, signal.SIG_DFL)
        if os.getpid() != self._pid:
            # A forked child inherited this handler; the run is the parent's. Behave as
            # if it were not there (multiprocessing terminates pool workers this way).
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self._signal = signum
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_DFL:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._reraise = signum  # we took over the default: give it back at the end
            raise _Terminated(signum)

    def _at_exit(self) -> None:
        if not self._active or os.getpid() != self._pid:
            return
        try:
            if not self._terminal_sent:
                self._end(self._terminal_data(), exit_deadline(self.flush_deadline))
        except Exception:
            pass
        finally:
            signum = self._reraise if self._reraise is not None else self._deferred
            if signum is not None:
                die_by_signal(signum)

    def _ending(self, exc: BaseException | None) -> Any:
        """The terminal data for a run that ends with ``exc`` (None: normally)."""
        if exc is None:
            return _Plain("C", "Completed", counts=True)
        if isinstance(exc, SystemExit):
            status, desc = process.describe_exit(exc.code)
            replaced = exc.__context__ if status == "F" else None
            info = _bc.capture_exception(replaced) if replaced is not None else None
            data = _Plain(status, desc, counts=True, info=info)
            data.found = self._classified(replaced)
            return data
        if isinstance(exc, _Terminated):
            name = signal.Signals(exc.signum).name
            return _Plain("S", f"Terminated ({name})", counts=True)
        return _MainCrash(exc)

    def _classified(self, exc: BaseException | None) -> tuple[str, str | None] | None:
        """``(error_type, error_desc)`` for ``exc``: the application's ``error_classes``
        (by class name, along the MRO), then the preset, then the built-in classes."""
        if exc is None:
            return None
        from migas_logging import classify as _classify

        found: Any = None
        for cls in type(exc).__mro__:
            parse = self.error_classes.get(cls.__name__)
            if parse is not None:
                try:
                    found = parse(exc)
                except Exception as error:
                    _report("error_classes", "migas: an error_classes function failed: %r", error)
                if found:
                    break
        if not found and self.preset is not None:
            found = _classify.PRESETS[self.preset](exc)
        result = _as_class(found)
        if result is None and self.classify:
            builtin = _as_class(_classify.classify(exc))
            if builtin is not None:  # a stable type; the summary keeps where it happened
                where = _bc.capture_exception(exc).describe()
                result = builtin[0], f"{builtin[1]} | {where}" if builtin[1] else where
        if result is None or result[1] is None or not self.redact:
            return result
        # Breadcrumb.replace() does not redact: every text leaves here redacted
        return result[0], _bc.bounded_redacted(result[1], _bc.default_redactor())

    def _filtered(self, crumb: _bc.Breadcrumb, data: Any) -> _bc.Breadcrumb:
        """Apply ``before_send``; a hook that fails leaves the breadcrumb as it was."""
        from migas_logging.worker import Filtered

        before_send = self.before_send
        if before_send is None:
            return crumb
        try:
            result: object = before_send(crumb, _hint(data))
        except Exception as exc:
            _report("before_send", "migas: before_send failed (%r); breadcrumb sent as is", exc)
            return crumb
        if result is None:
            raise Filtered
        if not isinstance(result, _bc.Breadcrumb):
            _report("before_send:type", "migas: before_send returned %r, not a Breadcrumb", result)
            return crumb
        return result

    def _terminal_data(self) -> _Plain:
        """How the run ended: a signal, ``sys.exit(status)``, or a normal end."""
        info = None
        if self._signal == signal.SIGINT:
            status, desc = "S", "Suspended"
        elif self._signal is not None:
            status, desc = "S", f"Terminated ({signal.Signals(self._signal).name})"
        else:
            seen = process.exit_status()
            status, desc = ("C", "Completed") if seen is None else process.describe_exit(seen[0])
            if seen is not None and seen[1] is not None and status == "F":
                info = _bc.capture_exception(seen[1])  # what the SystemExit replaced
        data = _Plain(status, desc, counts=True, info=info)
        if info is not None and seen is not None:
            data.found = self._classified(seen[1])
        return data

    def _make(
        self,
        ctx: _bc.Context,
        status: str,
        desc: str,
        info: _bc.ExceptionInfo | None = None,
        found: tuple[str, str | None] | None = None,
    ) -> _bc.Breadcrumb:
        """A lifecycle breadcrumb, or a crash one when ``info`` summarises the exception
        (``found``: its class, when classification found one)."""
        error_type: str | None
        error_desc: str | None
        if found is not None:
            error_type, error_desc = found
        elif info is not None:
            error_type, error_desc = info.type_name, info.describe()
        else:
            error_type = error_desc = None
        return _bc.build(
            project=self.project,
            version=self.version,
            language_version=self._language_version,
            ctx=ctx,
            status=status,
            status_desc=desc,
            error_type=error_type,
            error_desc=error_desc if self.error_detail == "message" else None,
            redactor=_bc.default_redactor() if self.redact else None,
        )


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so that the interpreter unwinds and exits."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


class _Plain:
    __slots__ = ("counts", "desc", "found", "info", "starts_run", "status")

    def __init__(
        self,
        status: str,
        desc: str,
        *,
        counts: bool = False,
        info: _bc.ExceptionInfo | None = None,
    ) -> None:
        self.status = status
        self.desc = desc
        self.counts = counts  # end with the run's counts, read when it is built
        self.info = info
        self.found: tuple[str, str | None] | None = None
        self.starts_run = status == "R" and desc == "Started"  # jittered with a budget


class _MainCrash:
    """The main thread's crash: the exception itself, built into the terminal breadcrumb."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _ThreadCrash:
    __slots__ = ("desc", "found", "info", "kind", "status")

    def __init__(self, info: _bc.ExceptionInfo, status: str, desc: str) -> None:
        self.info = info
        self.status = status
        self.desc = desc
        self.kind = "thread"
        self.found: tuple[str, str | None] | None = None


class _CrashRoute:
    """A route that shares a handler's stats but builds crash and lifecycle breadcrumbs."""

    @classmethod
    def of(cls, hook: CrashHook, route: Route) -> Route:
        """The hook's crash route, made once and kept on the hook (not in a global
        cache, which kept every reloaded handler alive)."""
        from migas_logging.worker import Route as _Route

        cached: Route | None = getattr(hook, "_crash_route", None)
        if cached is None:

            def build(data: Any, ctx: _bc.Context) -> _bc.Breadcrumb:
                crumb = _made(hook, data, ctx)
                return crumb if hook.before_send is None else hook._filtered(crumb, data)

            cached = _Route(build=build, stats=route.stats, name=route.name)
            hook._crash_route = cached
        return cached


def _made(hook: CrashHook, data: Any, ctx: _bc.Context) -> _bc.Breadcrumb:
    """The crash or lifecycle breadcrumb of ``data`` (on the worker)."""
    if isinstance(data, _bc.Breadcrumb):
        return data
    if isinstance(data, _MainCrash):
        return hook._crumb(data.exc, ctx)
    info = data.info if isinstance(data, _ThreadCrash | _Plain) else None
    desc = data.desc
    client = hook._client
    if isinstance(data, _Plain) and data.counts and client is not None:
        desc += _counts(client.total.as_dict())
    found = data.found if isinstance(data, _ThreadCrash | _Plain) else None
    return hook._make(ctx, data.status, desc, info, found)


def _as_class(found: Any) -> tuple[str, str | None] | None:
    """A classifier's answer as ``(error_type, error_desc)``: a pair, or a dict with
    ``error_type`` / ``error_desc`` (migas-py's error functions return such keywords)."""
    if not found:
        return None
    if isinstance(found, Mapping):
        found = (found.get("error_type"), found.get("error_desc"))
    try:
        error_type, error_desc = found
    except (TypeError, ValueError):
        return None
    if not isinstance(error_type, str) or not error_type:
        return None
    return error_type, error_desc if isinstance(error_desc, str) else None


def _hint(data: Any) -> dict[str, Any]:
    """What ``before_send`` learns of a breadcrumb besides the breadcrumb."""
    if isinstance(data, _MainCrash):
        return {"kind": "crash", "exception": data.exc}
    if isinstance(data, _ThreadCrash):
        return {"kind": data.kind, "exception": None, "exception_type": data.info.type_name}
    if isinstance(data, _Plain):
        kind = "started" if data.desc == "Started" else "terminal"
        return {"kind": kind, "exception": None, "exit_status": process.exit_status()}
    return {"kind": "terminal", "exception": None}


def _counts(stats: dict[str, Any]) -> str:
    if not stats:
        return ""
    dropped = stats.get("dropped", {})
    text = f" [sent {stats.get('sent', 0)}, folded {stats.get('folded', 0)}"
    text += f", dropped {sum(dropped.values())}"
    if dropped:
        text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) + ")"
    return text + "]"


def _report(key: str, message: str, *args: object) -> None:
    with contextlib.suppress(Exception):
        _log.warning(message, *args)


def _after_fork_in_child() -> None:
    """A forked child gets back the signal dispositions its parent had before us.

    The run is the parent's. Beyond that, a Python-level handler in place of the
    kernel's default can be lost: a SIGTERM that lands between the interpreter's check
    and a blocking wait (``Pool.terminate()`` sends it to workers blocked on a queue
    lock) sets a flag nobody reads, and the worker never exits. ``SIG_DFL`` kills at once.
    """
    for hook in list(_hooks.values()):  # no lock: another thread may have held it at fork
        hook._give_back_signals()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def install_excepthook(
    project: str,
    version: object = "unknown",
    **options: Any,
) -> CrashHook:
    """Report uncaught exceptions of this process to a migas server.

    Args:
        project: ``owner/repo``.
        version: the project's version.
        **options: see :class:`CrashHook` (``endpoint``, ``timeout``, ``flush_deadline``,
            ``redact``, ``ignore``, ``interactive``, ``track``).

    Returns:
        The installed hook; call its ``uninstall()`` to restore what was there. A second
        call for the same project returns the same hook.

    Raises:
        ConfigurationError: a bad project, endpoint or timeout.

    .. versionadded:: 0.1.0
    """
    with _hooks_lock:
        hook = _hooks.get(str(project))
        if hook is None or not hook.installed:
            hook = CrashHook(project, version, **options)
            _hooks[hook.project] = hook
    return hook.install()


def install_for_handler(handler: MigasHandler) -> CrashHook | None:
    """Install (or share) the crash hook for a handler built with ``excepthook=True``."""
    with _hooks_lock:
        hook = _hooks.get(handler.project)
        if hook is None or not hook.installed:
            hook = CrashHook(
                handler.project,
                handler.version,
                endpoint=handler.settings.endpoint,
                timeout=handler.settings.timeout,
                flush_deadline=handler.flush_deadline,
                redact=handler.redact,
                track=handler.track,
                before_send=handler.before_send,
                error_detail=handler.error_detail,
                error_classes=handler.error_classes,
                preset=handler.preset,
                classify=handler.classify,
                _handler=handler,
            )
            _hooks[hook.project] = hook
    return hook.install()


def asyncio_exception_handler(loop: Any, context: dict[str, Any]) -> None:
    """An asyncio loop exception handler that reports, then calls the loop's default.

    Use: ``loop.set_exception_handler(asyncio_exception_handler)``. Exceptions of tasks
    that nobody awaited are reported like a thread's crash (the loop goes on).
    """
    from migas_logging.handler import _reported

    exc = context.get("exception")
    reported = False
    if isinstance(exc, BaseException):
        for hook in list(_hooks.values()):
            if hook.installed and not hook._ignored(exc):
                with contextlib.suppress(Exception):
                    hook._report_thread_crash(exc, "asyncio")
                    reported = True
    if not reported:
        loop.default_exception_handler(context)
        return
    # the default handler logs the same exception on the "asyncio" logger: a
    # MigasHandler that receives that record must not report it a second time
    _reported.exc = exc
    try:
        loop.default_exception_handler(context)
    finally:
        _reported.__dict__.pop("exc", None)
