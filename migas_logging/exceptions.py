"""The exceptions raised by ``migas_logging``.

Nothing here is ever raised into an application from a logging call: the handler,
the crash hook and the structlog processor swallow and count their problems. These
exceptions are for configuration (raised at once, when a handler or a query is set up)
and for explicit calls that ask for them (``raise_on_error=True`` in
:mod:`migas_logging.query`).

The hierarchy::

    MigasError
    ├── ConfigurationError (also a ValueError)   bad project, endpoint, timeout, option
    ├── TelemetryDisabledError                   MIGAS_OPTOUT is set; nothing was sent
    └── MigasRequestError                        a call to the server did not succeed
        ├── MigasConnectionError                 refused, DNS, TLS: no answer at all
        ├── MigasTimeoutError                    connect or read timeout
        ├── MigasHTTPError                       an HTTP error status (.status, .body)
        │   └── MigasRateLimitedError            429 (.retry_after)
        ├── MigasResponseError                   an answer that is not the expected JSON
        └── MigasGraphQLError                    the GraphQL answer carried ``errors``

The original exception (from ``requests``, ``json``) is attached as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "MigasConnectionError",
    "MigasError",
    "MigasGraphQLError",
    "MigasHTTPError",
    "MigasRateLimitedError",
    "MigasRequestError",
    "MigasResponseError",
    "MigasTimeoutError",
    "TelemetryDisabledError",
]


class MigasError(Exception):
    """Base class of every exception this package raises."""


class ConfigurationError(MigasError, ValueError):
    """A configuration value is invalid; the message names the value and the fix."""


class TelemetryDisabledError(MigasError):
    """The user opted out (``MIGAS_OPTOUT``); no request was made."""


class MigasRequestError(MigasError):
    """A request to the migas server did not succeed.

    Args:
        message: what happened, in one line.
        url: the URL that was called (never carries credentials).
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class MigasConnectionError(MigasRequestError):
    """No answer at all: connection refused, name resolution or TLS failure."""


class MigasTimeoutError(MigasRequestError):
    """The server did not connect or answer within the timeout."""


class MigasHTTPError(MigasRequestError):
    """The server answered with an HTTP error status.

    Args:
        message: what happened.
        status: the HTTP status code.
        body: the first part of the answer's body, as text.
        url: the URL that was called.
    """

    def __init__(
        self, message: str, *, status: int, body: str = "", url: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.body = body


class MigasRateLimitedError(MigasHTTPError):
    """The server answered 429: this address sent too many requests in its window.

    ``retry_after`` is the number of seconds to wait: the server's ``Retry-After`` if it
    sent one, else the length of the server's window.
    """

    def __init__(
        self, message: str, *, retry_after: float, body: str = "", url: str | None = None
    ) -> None:
        super().__init__(message, status=429, body=body, url=url)
        self.retry_after = retry_after


class MigasResponseError(MigasRequestError):
    """The server answered, but not with the JSON this client expects."""


class MigasGraphQLError(MigasRequestError):
    """The GraphQL answer carried an ``errors`` list.

    Args:
        message: the first error's message.
        errors: every error object of the answer.
        url: the URL that was called.
    """

    def __init__(
        self, message: str, *, errors: list[dict[str, object]], url: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.errors = errors
