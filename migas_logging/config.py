"""Settings, identity and detected context.

Everything that comes from arguments or from the ``MIGAS_*`` environment variables is
resolved here, once, at configuration time, so that a bad value fails loudly when the
application sets up logging, never later inside a logging call.

Precedence is always: explicit argument > environment variable > default.

| setting | argument | variable | default |
| --- | --- | --- | --- |
| endpoint | ``endpoint`` | ``MIGAS_ENDPOINT`` | ``https://migas.nipreps.org`` |
| timeout (s) | ``timeout`` | ``MIGAS_TIMEOUT`` | ``5`` |
| opt-out | (none) | ``MIGAS_OPTOUT`` | off |
| own log level | (none) | ``MIGAS_LOG_LEVEL`` | ``WARNING`` |
| session id | (none) | ``MIGAS_SESSION_ID`` | a new UUID4 per process run |

Identity is compatible with the official client (``migas`` on PyPI): the user id is
the UUID kept in ``$XDG_CONFIG_HOME/migas/user_id`` (default ``~/.config/migas/user_id``,
mode 0600); when that file is absent it is derived as the official client derives it (a
UUID3, DNS namespace, of ``user@domain`` or ``user@hostname``) and saved. Under
``MIGAS_OPTOUT`` the file is never read or written and no id is generated.

The session id is one UUID per process run, shared by every breadcrumb of the run. A
child made by ``os.fork()`` (``multiprocessing`` with the fork start method) is part of
the same run and keeps its parent's session id. A child started afresh (``spawn``, a
subprocess) starts a new session, unless the parent exports ``MIGAS_SESSION_ID`` (see
:func:`export_session_id`), which every process of a pipeline then shares.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from migas_logging._value import Frozen
from migas_logging.exceptions import ConfigurationError

if TYPE_CHECKING:
    from migas_logging.breadcrumb import Context

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_TIMEOUT",
    "Settings",
    "checked_project",
    "detect_container",
    "detect_context",
    "display_url",
    "export_session_id",
    "get_session_id",
    "get_user_id",
    "internal_logger",
    "is_ci",
    "is_loopback_url",
    "optout",
    "resolve_endpoint",
    "resolve_timeout",
    "user_id_file",
]

DEFAULT_ENDPOINT = "https://migas.nipreps.org"
DEFAULT_TIMEOUT = 5.0

#: Where a malformed ``MIGAS_ENDPOINT`` points: a name that never resolves (RFC 6761),
#: so that a typo can never send to the hosted server instead. Sending is off anyway.
UNUSABLE_ENDPOINT = "http://migas-endpoint.invalid"

_env_warned: set[str] = set()


def _env_fallback(name: str, value: str, problem: str, fallback: str) -> None:
    """One warning for an unusable ``MIGAS_*`` value: the end user typed it, and a typo
    must never stop the application they are running."""
    if name in _env_warned:
        return
    _env_warned.add(name)
    internal_logger().warning("%s=%r %s; %s", name, value, problem, fallback)


#: Name of the package's own logger. Records from it (and from its children) are
#: never shipped, whatever handler they reach.
INTERNAL_LOGGER_NAME = "migas_logging"

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def internal_logger() -> logging.Logger:
    """Return the package's own logger, configured from ``MIGAS_LOG_LEVEL`` once.

    The package never adds a handler to it unless ``MIGAS_LOG_LEVEL`` is set: a library
    leaves output to the application. When the variable is set, the user asked to see
    the package's diagnostics, so a stderr handler is attached.
    """
    logger = logging.getLogger(INTERNAL_LOGGER_NAME)
    if not getattr(logger, "_migas_configured", False):
        logger._migas_configured = True  # type: ignore[attr-defined]
        # A library leaves output to the application: without this, logging's last resort
        # would print our warnings on the application's stderr when it set up no logging.
        logger.addHandler(logging.NullHandler())
        level = os.environ.get("MIGAS_LOG_LEVEL", "").strip().upper()
        if level:
            numeric = logging.getLevelName(level)
            if not isinstance(numeric, int) and level.isdigit():
                numeric = int(level)
            if isinstance(numeric, int):
                logger.setLevel(numeric)
                stream = logging.StreamHandler(sys.stderr)
                stream.setFormatter(logging.Formatter("<%(name)s> [%(levelname)s] %(message)s"))
                logger.addHandler(stream)
                # shown once, here: not a second time by the application's console handler
                logger.propagate = False
    return logger


internal_logger()  # the NullHandler is in place before any module of ours logs


_enabled = True


def set_enabled(enabled: bool) -> None:
    """``configure(enabled=False)``: the process behaves as under ``MIGAS_OPTOUT``."""
    global _enabled  # noqa: PLW0603 - a process-wide switch, by design
    _enabled = bool(enabled)


def optout() -> bool:
    """Return True when the user opted out of telemetry (or the application disabled it).

    ``MIGAS_OPTOUT`` set to any value, even an empty one, means: no traffic, no files,
    no user id generated. (The official client ignores an empty value; this package errs
    on the side of privacy.) ``configure(enabled=False)`` means the same.
    """
    return not _enabled or "MIGAS_OPTOUT" in os.environ


def is_loopback_url(url: str) -> bool:
    """Return True when ``url``'s host is ``localhost`` or a loopback IP address."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def display_url(url: str) -> str:
    """``url`` without credentials (``user:password@``), for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


_warned_plain_http: set[str] = set()


def resolve_endpoint(endpoint: str | None = None) -> str:
    """Resolve the server's base URL.

    Args:
        endpoint: an explicit URL; ``None`` reads ``MIGAS_ENDPOINT``, then the default.

    Returns:
        The base URL without a trailing ``/`` or ``/graphql``.

    Raises:
        ConfigurationError: the URL given in code is not ``http``/``https`` or has no
            host. A malformed ``MIGAS_ENDPOINT`` (typed by the end user) gets one warning
            and turns telemetry off for the process: it never falls back to the hosted
            server.
    """
    from urllib.parse import urlsplit

    source = "endpoint"
    if endpoint is None:
        endpoint = os.environ.get("MIGAS_ENDPOINT") or None
        source = "MIGAS_ENDPOINT"
    if endpoint is None:
        return DEFAULT_ENDPOINT
    if not isinstance(endpoint, str):
        raise ConfigurationError(
            f"{source} must be a URL string such as 'https://migas.nipreps.org', not {endpoint!r}"
        )
    url = endpoint.strip().rstrip("/")
    if url.endswith("/graphql"):
        url = url[: -len("/graphql")].rstrip("/")
    shown = display_url(endpoint.strip())  # as given, without credentials
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        if source == "MIGAS_ENDPOINT":
            _env_fallback(
                source,
                shown,
                "is not an http(s) URL with a valid host and port (e.g. 'http://127.0.0.1:8080')",
                "migas telemetry is off for this process",
            )
            set_enabled(False)
            return UNUSABLE_ENDPOINT
        raise ConfigurationError(
            f"{source} {shown!r} is not an http(s) URL with a valid host and port; give the "
            f"server's base URL, for example 'https://migas.nipreps.org' or "
            f"'http://127.0.0.1:8080'"
        )
    if parts.scheme == "http" and not is_loopback_url(url) and url not in _warned_plain_http:
        _warned_plain_http.add(url)
        internal_logger().warning(
            "migas endpoint %s is plain http and not on this machine: breadcrumbs will "
            "cross the network unencrypted; use https",
            shown,
        )
    return url


def resolve_timeout(timeout: float | str | None = None) -> float:
    """Resolve the network timeout, in seconds.

    Args:
        timeout: an explicit value; ``None`` reads ``MIGAS_TIMEOUT``, then 5 seconds.

    Returns:
        A finite number of seconds greater than zero.

    Raises:
        ConfigurationError: the value given in code is not a positive finite number.
            An invalid ``MIGAS_TIMEOUT`` (typed by the end user) gets one warning on the
            package's logger and the default instead.
    """
    source = "timeout"
    if timeout is None:
        env = os.environ.get("MIGAS_TIMEOUT")
        if env is None or env.strip() == "":
            return DEFAULT_TIMEOUT
        timeout, source = env, "MIGAS_TIMEOUT"
    try:
        if isinstance(timeout, bool):
            raise TypeError
        value = float(timeout)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        if source == "MIGAS_TIMEOUT":
            _env_fallback(
                source,
                str(timeout),
                "is not a number of seconds greater than 0",
                f"using {DEFAULT_TIMEOUT:g} s",
            )
            return DEFAULT_TIMEOUT
        raise ConfigurationError(
            f"{source} {timeout!r} must be a finite number of seconds greater than 0; "
            f"use for example 5 or 0.5"
        )
    return value


def checked_project(project: object) -> str:
    """The project as ``owner/repo``, or a :class:`ConfigurationError` naming the value.

    Raises:
        ConfigurationError: ``project`` is missing or not ``owner/repo``.
    """
    from migas_logging.breadcrumb import validate_project

    try:
        return validate_project(project)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


class Settings(Frozen):
    """The resolved connection settings.

    Args:
        endpoint: the server's base URL.
        timeout: connect and read timeout, seconds.
        optout: True when ``MIGAS_OPTOUT`` was set at resolution time.
    """

    __slots__ = ("endpoint", "timeout", "optout")  # noqa: RUF023 - the fields in their order
    endpoint: str
    timeout: float
    optout: bool

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = DEFAULT_TIMEOUT,
        optout: bool = False,
    ) -> None:
        self._set("endpoint", endpoint)
        self._set("timeout", timeout)
        self._set("optout", optout)

    @classmethod
    def resolve(cls, endpoint: str | None = None, timeout: float | str | None = None) -> Settings:
        """Resolve every setting from arguments, the environment and defaults.

        Raises:
            ConfigurationError: a value is invalid (see :func:`resolve_endpoint` and
                :func:`resolve_timeout`).
        """
        return cls(
            endpoint=resolve_endpoint(endpoint), timeout=resolve_timeout(timeout), optout=optout()
        )


# --- identity -------------------------------------------------------------------------

# Two locks: the session id is needed on the crash path and must never wait behind the
# user id, whose derivation can block on DNS (getfqdn) or on a hung home directory.
_user_lock = threading.Lock()
_session_lock = threading.Lock()
_user_id: str | None = None
_session_id: str | None = None
_user_ready = threading.Event()
_user_thread: threading.Thread | None = None


def user_id_file() -> Path | None:
    """Return the path of the user-id file the official client uses, or None."""
    try:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        base = Path(xdg) if xdg else Path.home() / ".config"
        return base / "migas" / "user_id"
    except (RuntimeError, KeyError, OSError):
        return None


def _username() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return f"user-{os.getuid()}" if hasattr(os, "getuid") else "user"


def _domain_of(fqdn: str) -> str | None:
    parts = fqdn.split(".")
    if len(parts) < 3 or parts[-1] == "local":
        return None
    return ".".join(parts[1:])


def _derive_user_id() -> str:
    """Derive the user id exactly as the official client does."""
    import socket
    import uuid

    try:
        user = _username()
        domain = _domain_of(socket.getfqdn())
        hostname = os.environ.get("HOSTNAME") or socket.gethostname()
        return str(uuid.uuid3(uuid.NAMESPACE_DNS, f"{user}@{domain or hostname}"))
    except OSError:
        return str(uuid.uuid4())


def _save_user_id(path: Path, value: str) -> None:
    """Write the id atomically with mode 0600; never fail the caller."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, value.encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        internal_logger().debug("could not save the migas user id to %s: %s", path, exc)


def get_user_id() -> str | None:
    """Return this user's id, creating and saving it on first use.

    It can be slow (the official derivation asks for the machine's FQDN, which may wait
    on DNS): the handler calls it from its background worker, never from a logging call.

    Returns:
        The id, or None under ``MIGAS_OPTOUT`` (nothing is read or written then).
    """
    global _user_id  # noqa: PLW0603 - one identity per process, by design
    if optout():
        return None
    with _user_lock:
        if _user_id is not None:
            return _user_id
        import stat
        import uuid

        path = user_id_file()
        if path is not None:
            try:
                if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block
                    raise OSError(f"{path} is not a regular file")
                text = path.read_text(encoding="ascii").strip()
                _user_id = str(uuid.UUID(text))
                return _user_id
            except (OSError, ValueError, UnicodeDecodeError):
                pass
        value = _derive_user_id()
        if path is not None:
            _save_user_id(path, value)
        _user_id = value
        return _user_id


def prepare_identity() -> None:
    """Import what deriving the user id needs, now (on the worker, while it prepares).

    The identity thread may still run while the interpreter finalizes; an import then
    makes CPython forget that a KeyboardInterrupt was unhandled (exit status 1 instead
    of death by SIGINT).
    """
    import getpass  # noqa: F401
    import socket  # noqa: F401
    import stat  # noqa: F401
    import uuid  # noqa: F401


def _resolve_user_id() -> None:
    try:
        get_user_id()
    except Exception:
        pass
    finally:
        _user_ready.set()


def user_id_within(timeout: float) -> str | None:
    """The user id if it is known within ``timeout`` seconds, else None (for now).

    The first call starts resolving it on a daemon thread of its own, so that a slow
    ``getfqdn`` or a hung home directory never holds a caller longer than ``timeout``
    (0: never wait). The breadcrumbs sent meanwhile go without a user id.
    """
    global _user_thread  # noqa: PLW0603
    if _user_id is not None or optout():
        return _user_id
    if _user_thread is None:
        with _session_lock:
            if _user_thread is None:
                thread = threading.Thread(
                    target=_resolve_user_id, name="migas-logging-identity", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # a finalizing interpreter: no identity then
                    _user_ready.set()
                _user_thread = thread
    if timeout > 0:
        _user_ready.wait(timeout)
    return _user_id


def get_session_id() -> str:
    """Return the session id of this process run (see the module docstring)."""
    global _session_id  # noqa: PLW0603 - one session per process run, by design
    with _session_lock:
        if _session_id is None:
            import uuid

            given = os.environ.get("MIGAS_SESSION_ID", "").strip()
            try:
                _session_id = str(uuid.UUID(given)) if given else str(uuid.uuid4())
            except ValueError:
                internal_logger().warning(
                    "MIGAS_SESSION_ID %r is not a UUID; starting a new session", given
                )
                _session_id = str(uuid.uuid4())
        return _session_id


def session_uuid(value: object) -> str:
    """The session id for an application's run id: a UUID as is, any other text as a
    stable UUID derived from it (the same run id always gives the same session).

    Raises:
        ConfigurationError: an empty value.
    """
    import uuid

    text = str(value).strip() if value is not None else ""
    if not text:
        from migas_logging.exceptions import ConfigurationError

        raise ConfigurationError(
            f"session_id {value!r} is empty; give the run's id, e.g. a UUID or 'run-2024-01'"
        )
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"migas-logging:session:{text}"))


def set_session_id(session_id: str) -> None:
    """Make ``session_id`` (a UUID) this run's session, for this process and its forks."""
    global _session_id  # noqa: PLW0603
    with _session_lock:
        _session_id = session_id


def export_session_id() -> str:
    """Put this run's session id into ``MIGAS_SESSION_ID`` for child processes.

    Call it before starting ``spawn`` or subprocess workers that should report into the
    same session as this process.

    Returns:
        The session id.
    """
    sid = get_session_id()
    os.environ["MIGAS_SESSION_ID"] = sid
    return sid


def _reset_identity_for_tests() -> None:
    global _user_id, _session_id, _user_thread  # noqa: PLW0603
    with _user_lock, _session_lock:
        _user_id = None
        _session_id = None
        _user_thread = None
        _user_ready.clear()
    _env_warned.clear()


def _reinit_lock_after_fork() -> None:
    """A parent's thread may have held a lock at the fork, and its identity thread is gone."""
    global _user_lock, _session_lock, _user_thread, _user_ready  # noqa: PLW0603
    _user_lock = threading.Lock()
    _session_lock = threading.Lock()
    if _user_id is None:
        _user_thread = None
        _user_ready = threading.Event()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_lock_after_fork)


# --- context --------------------------------------------------------------------------

_CI_VARIABLES = (
    "CI",
    "CONTINUOUS_INTEGRATION",
    "BUILD_NUMBER",
    "RUN_ID",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "TRAVIS",
    "CIRCLECI",
    "JENKINS_URL",
    "HUDSON_URL",
    "BUILDKITE",
    "TF_BUILD",
    "APPVEYOR",
    "TEAMCITY_VERSION",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ID",
    "DRONE",
    "SEMAPHORE",
)


def is_ci() -> bool:
    """Return True when running in continuous integration (the variables ci-info reads)."""
    for name in _CI_VARIABLES:
        value = os.environ.get(name)
        if value and value.strip().lower() not in ("false", "0", "no"):
            return True
    return False


def detect_container() -> str:
    """Return ``docker``, ``apptainer`` or ``unknown``, as the official client does."""
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/singularity"):
        return "apptainer"
    return "unknown"


def detect_context(*, with_user_id: bool = True, user_id: str | None = None) -> Context:
    """Detect the breadcrumb context of this process.

    Args:
        with_user_id: include the user id (created on first use unless opted out; this
            may wait on DNS: the worker passes ``user_id`` instead).
        user_id: the user id to use when ``with_user_id`` is False.

    Returns:
        The context: user and session ids, platform, container, CI.
    """
    from migas_logging.breadcrumb import Context

    ci = is_ci()
    return Context(
        user_id=get_user_id() if with_user_id else user_id,
        session_id=get_session_id(),
        user_type="general",
        platform=sys.platform,
        container=detect_container(),
        is_ci=ci,
    )


def language_version() -> str:
    """Return the interpreter's version, as the official client reports it."""
    import platform

    return platform.python_version()
