"""``track()``: a run's lifecycle around one function or one ``with`` block.

For tools whose ``main()`` is one function::

    @migas_logging.track("nipreps/mriqc", __version__)
    def main() -> int:
        ...

or::

    with migas_logging.track("nipreps/mriqc", __version__):
        run_the_workflow()

On entry: ``R`` / ``Started`` (crash capture installed, as ``install_excepthook`` with
``track=True``). On exit, the terminal breadcrumb, at once, by the rules of the exit (a
decorated function's ``int`` return value counts as its exit status):
``C`` / ``Completed`` when the block ends normally (or by ``sys.exit(0)``), ``F`` /
``Exited with code n`` for ``SystemExit(n)`` (with the exception it replaced), ``F`` /
``Errored`` for an exception, ``S`` / ``Suspended`` for ``KeyboardInterrupt``. The
exception goes on as before: the traceback prints and the exit status is unchanged.
One run per process: what is logged after the terminal breadcrumb is not sent.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

__all__ = ["track"]


class track(contextlib.ContextDecorator):
    """Track one run: ``R`` at the start, the terminal breadcrumb at the end.

    Args:
        project: ``owner/repo``.
        version: the project's version.
        **options: options of :func:`migas_logging.install_excepthook` (``endpoint``,
            ``timeout``, ``flush_deadline``, ``redact``, ``ignore``, ...).

    Raises:
        ConfigurationError: a bad option, at once (not at the first run).

    .. versionadded:: 0.2.0
    """

    def __init__(self, project: str, version: object = "unknown", **options: Any) -> None:
        from migas_logging.excepthook import CrashHook

        options.pop("track", None)
        CrashHook(project, version, track=True, **options)  # check the options now
        self._project = project
        self._version = version
        self._options = options
        self._hook: Any = None
        self._returned: object = None

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:  # type: ignore[override]
        """Decorate ``func``: a non-zero ``int`` it returns is the run's exit status
        (``sys.exit(main())``), so a ``main()`` that returns 2 ends the run as failed."""

        @functools.wraps(func)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            with self._recreate_cm() as run:
                run._returned = result = func(*args, **kwargs)
                return result

        return tracked

    def __enter__(self) -> track:
        from migas_logging.excepthook import install_excepthook

        with contextlib.suppress(Exception):
            self._hook = install_excepthook(
                self._project, self._version, track=True, **self._options
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        hook = self._hook
        if hook is None:
            return False
        returned, self._returned = self._returned, None
        if exc is None and isinstance(returned, int) and not isinstance(returned, bool):
            exc = SystemExit(returned)  # a main() that returns its exit status
        with contextlib.suppress(Exception):
            hook._end(hook._ending(exc), time.monotonic() + hook.flush_deadline)
        return False  # the exception, if any, goes on
