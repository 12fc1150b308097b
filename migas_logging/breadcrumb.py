"""The breadcrumb model: what one migas breadcrumb contains, always valid and small enough.

A migas server (0.9 series) answers ``202`` to a breadcrumb BEFORE storing it, then silently
loses or alters whatever its database refuses: a version that is not ``^[A-Za-z0-9._+-]+$``
becomes ``unknown``, one longer than 24 characters is cut; a ``user_id`` that is not a UUID,
a ``language`` over 32 or a ``platform`` over 64 characters, or a text PostgreSQL cannot store
(a NUL, a lone surrogate) make the whole crumb vanish; and a request body over 2,500 bytes is
refused with ``413``. This module makes such crumbs impossible to build:

* **Every instance is valid by construction.** :class:`Breadcrumb` and :class:`Context`
  are immutable value classes whose ``__init__`` normalises every field: versions to the
  server's pattern and length, UUIDs to canonical form or nothing, enumerations to a
  valid value, texts to what PostgreSQL ``text`` stores, and finally the three free-text
  fields are shortened until the serialised body fits :data:`MAX_BODY_BYTES`. Code that
  holds a ``Breadcrumb`` never needs to check it, and :meth:`Breadcrumb.to_json` cannot
  produce a body the server loses.
* **Configuration is loud, run-time data is made safe.** The only error ever raised is
  the ``ValueError`` of a project that is not ``owner/repo`` (a configuration mistake that
  must be fixed, not hidden). Everything that comes from the running application (log
  messages, exceptions, objects whose ``__str__`` raises, bytes, versions of any type) is
  normalised, never rejected. The helpers catch :class:`Exception` only: a
  :class:`KeyboardInterrupt` or :class:`SystemExit` raised inside some ``__str__`` is the
  user or the interpreter stopping the program, and it propagates.
* **Long texts are shortened, never dropped.** The middle is cut, keeping head and tail,
  with a visible marker such as ``…[1234 chars cut]…`` (counted in characters of the
  original text; markers nest and their counts add up). Cuts never split a UTF-8 code
  point, and the JSON escaping of quotes, backslashes, newlines and tabs is accounted for.
  When the body is too large, the largest of ``error_desc``, ``status_desc`` and
  ``error_type`` is shortened first, down to the size of the next largest, then those
  together, and so on ("water filling"), so that no field is sacrificed for another.
* **Redaction is a policy, fitting is an invariant.** :class:`Breadcrumb` never redacts
  (it cannot know what the caller already removed); the builders :func:`build`,
  :func:`from_exception` and :mod:`migas_logging.mapping` apply a :class:`Redactor` to
  ``status_desc`` and ``error_desc`` BEFORE fitting, so that a cut never splits a name out
  of reach of the redactor (very long texts are first cut at white space to about twice
  the body size, which also bounds the cost of redaction whatever the application logs).
  Redaction replaces file-system paths (POSIX, ``~``, Windows drive and UNC, ``file://``,
  relative paths with at least two separators, but not ``owner/repo``), the home
  directory, the user name and the host name (whole words of at least 3 characters, not
  generic ones such as ``root``), e-mail and IPv4 addresses, URLs and the values of
  secret-looking environment variables, by ``<path>``, ``<user>``, ``<host>``,
  ``<email>``, ``<ip>``, ``<url>`` and ``<redacted>``. It recognises shapes and known
  values, not meaning: a person's name typed into a message, a relative path with one
  separator, an unquoted path whose last words are lower-case without an extension, IPv6
  addresses, other machines' names and secrets neither in this process's environment nor
  shaped like a known token pass through (details in :mod:`migas_logging._redact`).
  ``error_type`` (a class name) is not redacted. The safest mode for log records is the
  default ``message="template"``, which sends no argument values at all.
* **Exceptions are summarised cheaply and without paths.** :func:`capture_exception`
  runs on the application's thread, inside a logging call: it reads no source line
  (no ``linecache``, no ``traceback.format_*``), keeps at most ``max_frames`` frames while
  walking the traceback (a deep ``RecursionError`` costs a walk, not a list), follows at
  most :data:`MAX_CAUSE_DEPTH` causes, stops at cycles, and records frames as
  ``(module, function, lineno)``: module names, never file paths.

Everything here is pure: no I/O, no threads, no network, standard library only.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal

from migas_logging._redact import PLACEHOLDERS, Redactor, default_redactor
from migas_logging._value import Frozen

if TYPE_CHECKING:
    pass

__all__ = [
    "LANGUAGE_MAX_CHARS",
    "MAX_BODY_BYTES",
    "MAX_CAUSE_DEPTH",
    "PLATFORM_MAX_CHARS",
    "VERSION_MAX_LEN",
    "Breadcrumb",
    "Context",
    "ExceptionInfo",
    "Frame",
    "Redactor",
    "Status",
    "build",
    "capture_exception",
    "default_redactor",
    "from_exception",
    "normalize_uuid",
    "normalize_version",
    "safe_str",
    "shorten",
    "storable_text",
    "validate_project",
]

#: The largest request body the server accepts (``MIGAS_MAX_REQUEST_SIZE``).
MAX_BODY_BYTES: Final = 2500
#: The server cuts versions longer than this at ingestion.
VERSION_MAX_LEN: Final = 24
#: How many causes (``__cause__``/``__context__``) an :class:`ExceptionInfo` follows.
MAX_CAUSE_DEPTH: Final = 3
#: ``language`` and ``ctx.platform`` column limits (characters).
LANGUAGE_MAX_CHARS: Final = 32
PLATFORM_MAX_CHARS: Final = 64

Status = Literal["R", "C", "F", "S"]

_STATUSES: Final = frozenset({"R", "C", "F", "S"})
_STATUS_WORDS: Final = {
    "running": "R",
    "completed": "C",
    "complete": "C",
    "failed": "F",
    "failure": "F",
    "error": "F",
    "errored": "F",
    "suspended": "S",
}
_USER_TYPES: Final = frozenset({"general", "dev", "ci"})
_CONTAINERS: Final = frozenset({"unknown", "docker", "apptainer"})
_CONTAINER_ALIASES: Final = {"singularity": "apptainer"}  # Singularity is Apptainer's old name
_FALSE_WORDS: Final = frozenset({"", "0", "false", "f", "no", "n", "off", "none", "null"})

# Texts longer than this many characters are cut (at white space) before redaction and
# fitting: a field never keeps more than MAX_BODY_BYTES bytes, so this loses nothing that
# could be sent, and it bounds the cost of cleaning and redacting a huge message.
_PRECUT_CHARS: Final = 2 * MAX_BODY_BYTES
# An exception message is kept to this many characters (the describe() text gathers up to
# 1 + MAX_CAUSE_DEPTH of them, plus frames).
_MESSAGE_MAX_CHARS: Final = 1000
# Bounds on other captured texts: a class or module name, an ``extras`` value, a suffix.
_NAME_MAX_CHARS: Final = 200
_EXTRA_MAX_CHARS: Final = 200
_SUFFIX_MAX_CHARS: Final = 100
# How far back (characters) a pre-cut looks for white space to cut at.
_CUT_WINDOW: Final = 200

_PROJECT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
_PROJECT_HINT: Final = "(for example 'nipreps/fmriprep')"
_VERSION_OK: Final = re.compile(r"[A-Za-z0-9._+-]+")
_VERSION_BAD_RUN: Final = re.compile(r"[^A-Za-z0-9._+-]+")
_VERSION_EDGES: Final = "-._+"
# What PostgreSQL ``text`` refuses (NUL, lone surrogates) plus the other control characters
# (C0 but tab and newline, DEL, C1): invisible, and in JSON a C0 control costs 6 bytes.
_UNSTORABLE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_REPLACEMENT: Final = "\ufffd"
_MARKER_RE: Final = re.compile(r"…\[(\d+) chars cut\]…")
_TEXT_FIELDS: Final = ("error_desc", "status_desc", "error_type")
_FORMAT_FAILED: Final = " [unformatted: args do not match]"
# ``type.__name__`` read through ``type`` itself: a metaclass cannot override it.
_TYPE_NAME: Final = type.__dict__["__name__"]


# --------------------------------------------------------------------------------------
# Text primitives
# --------------------------------------------------------------------------------------


def _exact_str(value: str) -> str:
    """An exact ``str`` with the same characters (a ``str`` subclass may override methods)."""
    return value if type(value) is str else str.__str__(value)


def _call_str(convert: Callable[[object], str], obj: object) -> str | None:
    """``convert(obj)`` as an exact str, or None if it raises."""
    try:
        return _exact_str(convert(obj))
    except Exception:
        return None


def _try_str(obj: object) -> str | None:
    """``str(obj)``, else ``repr(obj)``, as an exact str; None when both raise."""
    if type(obj) is str:
        return obj
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        try:
            return bytes(obj).decode("utf-8", "replace")
        except Exception:  # a memoryview of a released buffer, for instance
            return None
    text = _call_str(str, obj)
    return text if text is not None else _call_str(repr, obj)


def _class_name(cls: object) -> str:
    """The plain ``__name__`` of a class, safe for any class (storable, bounded)."""
    try:
        name = _TYPE_NAME.__get__(cls)
    except Exception:
        return "<unknown>"
    if not isinstance(name, str) or not name:
        return "<unknown>"
    return _clean(_exact_str(name)[:_NAME_MAX_CHARS])


def safe_str(obj: object) -> str:
    """Return a str for any object, never raising.

    ``str(obj)`` is tried, then ``repr(obj)``; if both raise, a placeholder such as
    ``<unprintable ValueError object>`` is returned. Bytes are decoded as UTF-8 with
    replacement characters. ``str`` subclasses are converted to an exact ``str``. Only
    :class:`Exception` is caught: a ``KeyboardInterrupt`` or ``SystemExit`` raised inside a
    ``__str__`` propagates (it is someone stopping the program). The result may still
    contain characters PostgreSQL cannot store: use :func:`storable_text` for that.

    Args:
        obj: Anything.

    Returns:
        A str.
    """
    text = _try_str(obj)
    if text is None:
        return f"<unprintable {_class_name(type(obj))} object>"
    return text


def _clean(text: str) -> str:
    """Make an exact str storable: CR/CRLF to LF, other controls and surrogates to U+FFFD."""
    if text.isprintable():  # fast path: no control character and no surrogate at all
        return text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(_REPLACEMENT, text)


def storable_text(value: object, *, max_chars: int | None = None) -> str:
    """Return ``value`` as text that PostgreSQL ``text`` (and strict UTF-8) accepts.

    The text is :func:`safe_str` of the value; line breaks ``\\r\\n`` and ``\\r`` become
    ``\\n``; NUL, the other C0 controls except tab and newline, DEL, the C1 controls and lone
    surrogates each become U+FFFD (visible, instead of silently removed). Never raises.

    Args:
        value: Anything.
        max_chars: Keep at most this many characters (a plain cut, for bounded columns
            such as ``platform``); None keeps all.

    Returns:
        The storable text.
    """
    text = safe_str(value)
    if max_chars is not None:
        text = text[: max(0, max_chars)]
    return _clean(text)


def _cut_count(text: str, removed_from: int, removed_to: int) -> int:
    """Characters of the ORIGINAL text that ``text[removed_from:removed_to]`` stands for.

    A marker already inside the removed part stands for the characters it counted.
    """
    count = removed_to - removed_from
    if "…[" in text[removed_from:removed_to]:
        for match in _MARKER_RE.finditer(text, removed_from, removed_to):
            count += int(match.group(1)) - len(match.group())
    return count


def _represented_len(text: str) -> int:
    """The length of the original text that ``text`` (maybe holding markers) stands for."""
    return _cut_count(text, 0, len(text))


def _marker(count: int) -> str:
    return f"…[{count} chars cut]…"


def shorten(text: str, max_bytes: int) -> str:
    """Shorten ``text`` to at most ``max_bytes`` bytes of UTF-8, keeping head and tail.

    The middle is replaced by a marker such as ``…[1234 chars cut]…`` (characters of the
    original text; when the text already holds such markers, the counts add up). The cut
    never splits a code point. A text that fits is returned unchanged; when ``max_bytes``
    is too small for a marker, only a head (ending with ``…`` if there is room) is kept.
    Lone surrogates, if any, are counted as the 3 bytes ``surrogatepass`` gives them.

    Args:
        text: The text to shorten.
        max_bytes: The largest allowed size of ``text.encode("utf-8")``.

    Returns:
        The text itself, or a shortened copy whose UTF-8 encoding has at most
        ``max_bytes`` bytes.
    """
    if max_bytes <= 0:
        return ""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    # The marker's length depends on the count; bound it by the count of the whole text.
    marker_max = len(_marker(_represented_len(text)).encode("utf-8"))
    budget = max_bytes - marker_max
    if budget < 2:
        ellipsis = "…" if max_bytes >= 4 else ""
        head = _utf8_head(data, max_bytes - len(ellipsis.encode("utf-8")))
        return head + ellipsis
    head_bytes = (budget + 1) // 2
    tail_start = len(data) - (budget - head_bytes)
    while head_bytes > 0 and (data[head_bytes] & 0xC0) == 0x80:
        head_bytes -= 1  # do not split a code point: end before its first byte
    while tail_start < len(data) and (data[tail_start] & 0xC0) == 0x80:
        tail_start += 1  # start the tail at the first byte of a code point
    head = data[:head_bytes].decode("utf-8", "surrogatepass")
    tail = data[tail_start:].decode("utf-8", "surrogatepass")
    count = _cut_count(text, len(head), len(text) - len(tail))
    return head + _marker(count) + tail


def _utf8_head(data: bytes, max_bytes: int) -> str:
    """The longest prefix of UTF-8 ``data`` of at most ``max_bytes`` bytes, as text."""
    end = max(0, min(max_bytes, len(data)))
    while 0 < end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass")


def _precut(text: str, max_chars: int) -> str:
    """Cut the middle of a text longer than ``max_chars`` characters, at white space.

    Used before redaction, so the cut lands between words whenever there is white space
    within :data:`_CUT_WINDOW` characters: a name is not split into pieces the redactor
    would no longer recognise. The result is at most about ``max_chars`` characters.
    """
    if len(text) <= max_chars:
        return text
    marker_len = len(_marker(_represented_len(text)))
    keep = max(2, max_chars - marker_len)
    head_end = (keep + 1) // 2
    tail_start = len(text) - (keep - head_end)
    window_lo = max(0, head_end - _CUT_WINDOW)
    space = max(text.rfind(" ", window_lo, head_end), text.rfind("\n", window_lo, head_end))
    if space > 0:
        head_end = space + 1
    window_hi = min(len(text), tail_start + _CUT_WINDOW)
    candidates = [
        i
        for i in (text.find(" ", tail_start, window_hi), text.find("\n", tail_start, window_hi))
        if i >= 0
    ]
    if candidates:
        tail_start = min(candidates)
    if any(sep in text[max(head_end, tail_start - 400) : tail_start] for sep in "/\\"):
        tail_start = _past_a_cut_name(text, tail_start)  # a path was cut in its middle
    return text[:head_end] + _marker(_cut_count(text, head_end, tail_start)) + text[tail_start:]


_CUT_PIECE = re.compile(r"\s*(?:[^\s]*[/\\][^\s]*|[A-Z][^\s]*|[^\s]+\.[A-Za-z0-9]{1,8})(?=\s|$)")


def _past_a_cut_name(text: str, start: int) -> int:
    """Move the tail's start past words that may be the rest of a path with spaces that
    the cut split (``Doe.nii`` of ``/data/Patient Records/John Doe.nii``):
    capitalised words, words with a separator or a file extension. The redactor could
    no longer recognise them without their beginning."""
    for _ in range(20):
        match = _CUT_PIECE.match(text, start)
        if match is None or match.end() == start:
            return start
        start = match.end()
    return start


def bounded_redacted(value: str, redactor: Redactor) -> str:
    """``value`` bounded and redacted as the builders do (for texts set by ``replace``)."""
    return _bounded_text(value, redactor) or ""


def _bounded_text(value: object, redactor: Redactor | None = None) -> str | None:
    """None stays None; anything else becomes bounded, storable (and maybe redacted) text."""
    if value is None:
        return None
    text = _clean(_precut(safe_str(value), _PRECUT_CHARS))
    if redactor is not None:
        try:
            text = _clean(safe_str(redactor(text)))
        except Exception:
            text = PLACEHOLDERS["secret"]
    return text


# --------------------------------------------------------------------------------------
# Field normalisers
# --------------------------------------------------------------------------------------


def validate_project(project: object) -> str:
    """Return ``project`` if it is a GitHub-like ``owner/repo``; raise ``ValueError`` if not.

    The owner is 1 to 39 letters, digits or hyphens, not starting with a hyphen; the
    repository is 1 to 100 letters, digits, ``.``, ``_`` or ``-`` (not ``.`` or ``..``).
    This is a configuration check, so it is loud: the message names the value and the fix.

    Args:
        project: The project, as configured.

    Returns:
        The project, unchanged.

    Raises:
        ValueError: The project is not a str of the form ``owner/repo``.
    """
    if not isinstance(project, str):
        raise ValueError(
            f"project {_shown(project)} is not of the form 'owner/repo' {_PROJECT_HINT}: "
            f"expected a str, got {_class_name(type(project))}"
        )
    project = _exact_str(project)
    if _PROJECT_RE.fullmatch(project) and project.split("/", 1)[1] not in (".", ".."):
        return project
    message = f"project {_shown(project)} is not of the form 'owner/repo' {_PROJECT_HINT}"
    if project.count("/") == 1:
        owner, repo = project.split("/")
        problems = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}", owner):
            problems.append("the owner must be 1-39 letters, digits or '-', not starting with '-'")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", repo) or repo in (".", ".."):
            problems.append("the repository must be 1-100 letters, digits, '.', '_' or '-'")
        if problems:
            message += ": " + "; ".join(problems)
    raise ValueError(message)


def _shown(value: object) -> str:
    """A bounded, storable repr of a configuration value for an error message."""
    try:
        shown = _exact_str(repr(value))
    except Exception:
        shown = f"<unprintable {_class_name(type(value))} object>"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return _clean(shown)


def normalize_version(version: object) -> str:
    """Return a version the server keeps as it is: ``^[A-Za-z0-9._+-]+$``, at most 24 chars.

    Letters with accents lose them (NFKD); every run of other disallowed characters
    (spaces, slashes, parentheses...) becomes one ``-``, and ``-._+`` are stripped from the
    ends of a changed version (``"1.0 (beta)"`` gives ``"1.0-beta"``). A tuple or list is
    joined with dots (``(3, 11, 7)`` gives ``"3.11.7"``). When longer than 24 characters,
    a PEP 440 local segment (``+...``) is dropped first, then the version is cut. None, an
    empty or unprintable value gives ``"unknown"``. Never raises.

    Args:
        version: A str, a ``packaging.version.Version``, a tuple, or anything printable.

    Returns:
        The normalised version.
    """
    if version is None:
        return "unknown"
    text: str | None
    if isinstance(version, (tuple, list)):
        parts = [_try_str(part) for part in version[:8]]
        text = ".".join(part for part in parts if part)
    else:
        text = _try_str(version)
    if not text:
        return "unknown"
    text = text[:256]
    if not (len(text) <= VERSION_MAX_LEN and _VERSION_OK.fullmatch(text)):
        text = text.strip()
        if not _VERSION_OK.fullmatch(text):
            decomposed = unicodedata.normalize("NFKD", text)
            text = "".join(c for c in decomposed if not unicodedata.combining(c))
            text = _VERSION_BAD_RUN.sub("-", text)
        text = text.strip(_VERSION_EDGES)
        if len(text) > VERSION_MAX_LEN:
            public = text.split("+", 1)[0].strip(_VERSION_EDGES)
            text = public if public else text
            text = text[:VERSION_MAX_LEN].strip(_VERSION_EDGES)
    return text or "unknown"


def normalize_uuid(value: object) -> str | None:
    """Return ``value`` as a canonical UUID (lower case, hyphenated), or None.

    Anything :class:`uuid.UUID` accepts (upper case, braces, ``urn:uuid:``, no hyphens) is
    canonicalised; anything else (including None) gives None, so that the field is left
    out of the body instead of making the server lose the crumb. Never raises.

    Args:
        value: A :class:`uuid.UUID`, a str or bytes, or anything.

    Returns:
        The canonical UUID string, or None.
    """
    try:
        import uuid  # here, not at import: it pulls in platform (2 ms at start-up)

        if isinstance(value, uuid.UUID):
            return str(uuid.UUID(int=value.int))
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("ascii")
        if not isinstance(value, str) or len(value) > 64:
            return None
        return str(uuid.UUID(_exact_str(value).strip()))
    except Exception:
        return None


def _normalize_status(status: object) -> str:
    """One of R, C, F, S (also from the words running, completed...); else R."""
    if isinstance(status, str):
        text = _exact_str(status).strip()
        upper = text.upper()
        if upper in _STATUSES:
            return upper
        return _STATUS_WORDS.get(text.lower(), "R")
    return "R"


def _choice(value: object, allowed: frozenset[str], default: str, aliases: dict[str, str]) -> str:
    """``value`` lower-cased if it is one of ``allowed`` (or an alias of one), else ``default``."""
    if isinstance(value, str):
        text = _exact_str(value).strip().lower()
        text = aliases.get(text, text)
        if text in allowed:
            return text
    return default


def _to_bool(value: object) -> bool:
    """A real bool: strings such as ``"false"``, ``"0"``, ``"no"`` are False. Never raises."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return _exact_str(text).strip().lower() not in _FALSE_WORDS
    try:
        return bool(value)
    except Exception:
        return False


def _short_text(value: object, max_chars: int, default: str) -> str:
    """Storable text of at most ``max_chars`` characters, ``default`` when empty."""
    text = storable_text(value, max_chars=max_chars).strip()
    return text or default


# --------------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------------


class Context(Frozen):
    """The ``ctx`` of a breadcrumb: who runs, where. Every instance is valid.

    Construction normalises every field and never raises: ``user_id`` and
    ``session_id`` become canonical UUIDs or None (left out of the body); ``user_type``
    becomes ``general``, ``dev`` or ``ci`` (else ``general``); ``container`` becomes
    ``unknown``, ``docker`` or ``apptainer`` (``singularity`` is taken as ``apptainer``;
    anything else is ``unknown``); ``platform`` becomes storable text of at most 64
    characters (``unknown`` when empty); ``is_ci`` becomes a real bool (the strings
    ``""``, ``"0"``, ``"false"``, ``"no"``, ``"off"`` are False).

    Args:
        user_id: The user's UUID.
        session_id: The run's UUID, the same in every crumb of one run.
        user_type: ``general``, ``dev`` or ``ci``.
        platform: Usually ``sys.platform``.
        container: ``unknown``, ``docker`` or ``apptainer``.
        is_ci: Whether this runs in continuous integration.
    """

    __slots__ = ("user_id", "session_id", "user_type", "platform", "container", "is_ci")  # noqa: RUF023 - field order
    user_id: str | None
    session_id: str | None
    user_type: str
    platform: str
    container: str
    is_ci: bool

    def __init__(  # noqa: PLR0917 - positional like the dataclass it replaces
        self,
        user_id: object = None,
        session_id: object = None,
        user_type: object = "general",
        platform: object = "unknown",
        container: object = "unknown",
        is_ci: object = False,
    ) -> None:
        set_ = self._set
        set_("user_id", normalize_uuid(user_id))
        set_("session_id", normalize_uuid(session_id))
        set_("user_type", _choice(user_type, _USER_TYPES, "general", {}))
        set_("platform", _short_text(platform, PLATFORM_MAX_CHARS, "unknown"))
        set_("container", _choice(container, _CONTAINERS, "unknown", _CONTAINER_ALIASES))
        set_("is_ci", _to_bool(is_ci))

    def to_payload(self) -> dict[str, Any]:
        """The ``ctx`` object of the request body (None ids are left out).

        Returns:
            A JSON-ready dict.
        """
        payload: dict[str, Any] = {}
        if self.user_id is not None:
            payload["user_id"] = self.user_id
        if self.session_id is not None:
            payload["session_id"] = self.session_id
        payload["user_type"] = self.user_type
        payload["platform"] = self.platform
        payload["container"] = self.container
        payload["is_ci"] = self.is_ci
        return payload


def _as_context(ctx: object) -> Context:
    """``ctx`` if it is a Context; a Context from a mapping's known keys; else Context()."""
    if isinstance(ctx, Context):
        return ctx
    if isinstance(ctx, dict):
        try:
            known = {k: v for k, v in ctx.items() if k in Context.__slots__}
            return Context(**known)
        except Exception:
            return Context()
    return Context()


# --------------------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------------------


class Frame(tuple[str, str, int]):
    """One traceback frame, without any path: ``(module, function, lineno)``."""

    __slots__ = ()

    def __new__(cls, module: str, function: str, lineno: int) -> Frame:
        return tuple.__new__(cls, (module, function, lineno))

    @property
    def module(self) -> str:
        """The module's ``__name__``."""
        return self[0]

    @property
    def function(self) -> str:
        """The function's name."""
        return self[1]

    @property
    def lineno(self) -> int:
        """The line number."""
        return self[2]

    def __repr__(self) -> str:
        return f"Frame(module={self[0]!r}, function={self[1]!r}, lineno={self[2]!r})"

    def __str__(self) -> str:
        return f"{self.module}:{self.function}:{self.lineno}"


class ExceptionInfo(Frozen):
    """A cheap, path-free, immutable summary of an exception and its causes.

    Args:
        type_name: The exception class's plain ``__name__`` (``ZeroDivisionError``).
        message: Storable ``str(exception)`` (``'x'`` for ``KeyError('x')``), at most
            about 1000 characters (the middle is cut).
        frames: The innermost frames of the traceback, innermost LAST.
        cause: The summary of ``__cause__``, or of ``__context__`` when the context is not
            suppressed; None at the end of the chain (at most :data:`MAX_CAUSE_DEPTH`).
        cause_implicit: True when ``cause`` is an implicit ``__context__`` ("during
            handling of"), False for an explicit ``raise ... from`` ("caused by").
        total_frames: How many frames the traceback had (``frames`` keeps the last ones).
    """

    __slots__ = ("type_name", "message", "frames", "cause", "cause_implicit", "total_frames")  # noqa: RUF023
    type_name: str
    message: str
    frames: tuple[Frame, ...]
    cause: ExceptionInfo | None
    cause_implicit: bool
    total_frames: int

    def __init__(  # noqa: PLR0917
        self,
        type_name: str,
        message: str,
        frames: tuple[Frame, ...] = (),
        cause: ExceptionInfo | None = None,
        cause_implicit: bool = False,
        total_frames: int = 0,
    ) -> None:
        set_ = self._set
        set_("type_name", type_name)
        set_("message", message)
        set_("frames", frames)
        set_("cause", cause)
        set_("cause_implicit", cause_implicit)
        set_("total_frames", total_frames)

    def describe(self, max_frames: int = 5) -> str:
        """A compact one-line description, e.g. for ``error_desc``.

        The format is ``<message> | at <frame> < <frame> ... | caused by <Type>: <message>
        | at ...``: each frame is ``module:function:lineno``, innermost first, ``<`` reading
        "called from"; a run of identical frames (recursion) is shown once with ``(xN)``;
        frames not shown are counted (``< …(+995 frames)``). Causes follow, each introduced
        by ``caused by`` (``raise ... from``) or ``during handling of`` (implicit context).
        The exception's own type is not repeated (it is the crumb's ``error_type``).

        Example: ``division by zero | at mypkg.steps:run:42 < mypkg.cli:main:10 | caused by
        KeyError: 'x'``.

        Args:
            max_frames: The most frames shown per exception of the chain.

        Returns:
            The description (no newline characters added; the message may contain some).
        """
        parts: list[str] = []
        level: ExceptionInfo | None = self
        label = ""
        depth = 0
        while level is not None and depth <= MAX_CAUSE_DEPTH + 1:
            head = level.message if not label else _with_type(level.type_name, level.message)
            frames = _describe_frames(level.frames, level.total_frames, max_frames)
            text = " | ".join(part for part in (head, f"at {frames}" if frames else "") if part)
            parts.append(f"{label} {text}" if label else text)
            label = "during handling of" if level.cause_implicit else "caused by"
            level = level.cause
            depth += 1
        return " | ".join(part for part in parts if part)


def _with_type(type_name: str, message: str) -> str:
    return f"{type_name}: {message}" if message else type_name


def _describe_frames(frames: tuple[Frame, ...], total: int, max_frames: int) -> str:
    """Innermost first, identical neighbours folded, hidden frames counted."""
    if max_frames <= 0 or not frames:
        return ""
    shown = list(reversed(frames[-max_frames:]))
    pieces: list[str] = []
    index = 0
    while index < len(shown):
        repeat = 1
        while index + repeat < len(shown) and shown[index + repeat] == shown[index]:
            repeat += 1
        frame = shown[index]
        text = f"{frame.module}:{frame.function}:{frame.lineno}"
        pieces.append(f"{text} (x{repeat})" if repeat > 1 else text)
        index += repeat
    hidden = max(total, len(frames)) - len(shown)
    if hidden > 0:
        pieces.append(f"…(+{hidden} frames)")
    return " < ".join(pieces)


def _frames(exc: BaseException, max_frames: int) -> tuple[tuple[Frame, ...], int]:
    """The last ``max_frames`` frames of the traceback (innermost last), and the total."""
    tb = getattr(exc, "__traceback__", None)
    kept: deque[Any] = deque(maxlen=max(0, max_frames))
    total = 0
    while tb is not None:
        kept.append(tb)
        total += 1
        tb = tb.tb_next
    frames = []
    for item in kept:
        frame = item.tb_frame
        module = frame.f_globals.get("__name__")
        function = frame.f_code.co_name
        lineno = item.tb_lineno
        frames.append(
            Frame(
                _clean(_exact_str(module)[:_NAME_MAX_CHARS]) if isinstance(module, str) else "?",
                _clean(_exact_str(function)[:_NAME_MAX_CHARS])
                if isinstance(function, str)
                else "?",
                lineno if isinstance(lineno, int) else 0,
            )
        )
    return tuple(frames), total


def _next_in_chain(exc: BaseException) -> tuple[BaseException | None, bool]:
    """The next exception of the chain and whether it is implicit (``__context__``)."""
    cause = getattr(exc, "__cause__", None)
    if isinstance(cause, BaseException):
        return cause, False
    if getattr(exc, "__suppress_context__", False):
        return None, False
    context = getattr(exc, "__context__", None)
    if isinstance(context, BaseException):
        return context, True
    return None, False


def _capture_one(
    exc: object, max_frames: int, cause: ExceptionInfo | None, implicit: bool
) -> ExceptionInfo:
    """The summary of one exception, given the summary of its cause."""
    type_name = _class_name(type(exc))
    message = _clean(_precut(safe_str(exc), _MESSAGE_MAX_CHARS))
    if isinstance(exc, BaseException):
        frames, total = _frames(exc, max_frames)
    else:
        frames, total = (), 0
    return ExceptionInfo(type_name, message, frames, cause, implicit, total)


def capture_exception(exc: BaseException, *, max_frames: int = 8) -> ExceptionInfo:
    """Summarise an exception cheaply, without file paths; never raises.

    Meant for the application's thread, inside a logging call: no source line is read
    (no ``linecache``, no ``traceback.format_*``), the traceback is walked once keeping only
    the last ``max_frames`` frames in a bounded deque (a 1000-frame ``RecursionError`` costs
    a short walk), and frames are ``(module, function, lineno)`` from
    ``f_globals["__name__"]``, ``f_code.co_name`` and ``tb_lineno``. The chain of
    ``__cause__`` (or, unless suppressed, ``__context__``) is followed for at most
    :data:`MAX_CAUSE_DEPTH` causes and stops at an exception already seen (cycles).

    Args:
        exc: The exception (anything else is summarised as well as possible).
        max_frames: The most frames kept per exception (innermost ones).

    Returns:
        The summary.
    """
    try:
        max_frames = int(max_frames)
    except Exception:
        max_frames = 8
    try:
        info = _capture_chain(exc, max_frames)
    except Exception:
        info = None
    if info is None:
        info = ExceptionInfo(_class_name(type(exc)), "<exception could not be summarised>")
    return info


def _capture_chain(exc: object, max_frames: int) -> ExceptionInfo | None:
    """The summary of ``exc`` and its chain (see :func:`capture_exception`)."""
    chain: list[tuple[object, bool]] = []
    seen: set[int] = set()
    current: object = exc
    implicit = False
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, implicit))
        if len(chain) > MAX_CAUSE_DEPTH or not isinstance(current, BaseException):
            break
        current, implicit = _next_in_chain(current)
    info: ExceptionInfo | None = None
    for index in range(len(chain) - 1, -1, -1):
        # chain[i + 1][1] says how exception i + 1 was reached from exception i.
        next_implicit = chain[index + 1][1] if index + 1 < len(chain) else False
        info = _capture_one(chain[index][0], max_frames, info, next_implicit)
    return info


# --------------------------------------------------------------------------------------
# Breadcrumb
# --------------------------------------------------------------------------------------


def _dumps(payload: dict[str, Any]) -> bytes:
    """The compact UTF-8 JSON of a body (strict UTF-8: the texts hold no surrogate)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_cost(text: str) -> int:
    """Bytes of ``text`` inside a JSON string (without the quotes), for storable text.

    ``json.dumps(ensure_ascii=False)`` escapes only ``"``, ``\\`` and C0 controls, of which
    storable text keeps ``\\n`` and ``\\t`` (2 bytes each).
    """
    cost = len(text.encode("utf-8", "surrogatepass"))
    return cost + text.count('"') + text.count("\\") + text.count("\n") + text.count("\t")


def _shorten_json(text: str, cap: int) -> str:
    """Shorten ``text`` so that its JSON cost is at most ``cap`` bytes."""
    if cap <= 0:
        return ""
    cost = _json_cost(text)
    if cost <= cap:
        return text
    budget = cap
    while budget > 0:
        out = shorten(text, budget)
        cost = _json_cost(out)
        if cost <= cap:
            return out
        # Escapes made it larger: scale the byte budget down (and by at least one byte).
        budget = min(budget - 1, budget * cap // cost)
    return ""


def _water_fill(costs: dict[str, int], available: int) -> dict[str, int]:
    """Caps for the fields: the smallest keep their size, the largest share the rest."""
    caps: dict[str, int] = {}
    remaining = max(0, available)
    ordered = sorted(costs.items(), key=lambda item: item[1])
    for index, (name, cost) in enumerate(ordered):
        share = remaining // (len(ordered) - index)
        caps[name] = min(cost, share)
        remaining -= caps[name]
    return caps


class Breadcrumb(Frozen):
    """One breadcrumb, valid and at most :data:`MAX_BODY_BYTES` bytes by construction.

    Construction checks the project (the only ``ValueError``), normalises the versions
    (:func:`normalize_version`), the status (R, C, F or S; words such as ``completed`` are
    understood; anything else is R), ``language`` (storable, at most 32 characters) and
    the context; makes the three texts storable; then shortens them until the body fits.
    It does NOT redact: use the builders for that.

    Args:
        project: ``owner/repo``.
        project_version: The project's version.
        language_version: The language's version (``platform.python_version()``).
        ctx: The context.
        status: R (running), C (completed), F (failed) or S (suspended).
        status_desc: Free text about the status.
        error_type: The error's type name.
        error_desc: Free text about the error.
        language: The language (``python``).
    """

    __slots__ = (  # noqa: RUF023 - the fields in their order
        "project",
        "project_version",
        "language_version",
        "ctx",
        "status",
        "status_desc",
        "error_type",
        "error_desc",
        "language",
    )
    project: str
    project_version: str
    language_version: str
    ctx: Context
    status: str
    status_desc: str | None
    error_type: str | None
    error_desc: str | None
    language: str

    def __init__(  # noqa: PLR0917
        self,
        project: object,
        project_version: object,
        language_version: object,
        ctx: object = None,
        status: object = "R",
        status_desc: object = None,
        error_type: object = None,
        error_desc: object = None,
        language: object = "python",
    ) -> None:
        set_ = self._set
        set_("project", validate_project(project))
        set_("project_version", normalize_version(project_version))
        set_("language_version", normalize_version(language_version))
        set_("ctx", _as_context(ctx))
        set_("status", _normalize_status(status))
        set_("language", _short_text(language, LANGUAGE_MAX_CHARS, "unknown"))
        set_("status_desc", _bounded_text(status_desc))
        set_("error_type", _bounded_text(error_type))
        set_("error_desc", _bounded_text(error_desc))
        for name, value in self._fit_texts(MAX_BODY_BYTES).items():
            set_(name, value)

    def to_payload(self) -> dict[str, Any]:
        """The REST request body (``proc`` leaves out None texts).

        Returns:
            A JSON-ready dict.
        """
        return self._payload(self.status_desc, self.error_type, self.error_desc)

    def to_json(self) -> bytes:
        """The request body as compact UTF-8 JSON, at most :data:`MAX_BODY_BYTES` bytes.

        Returns:
            The body.
        """
        return _dumps(self.to_payload())

    def fitted(self, max_bytes: int) -> Breadcrumb:
        """A copy whose :meth:`to_json` has at most ``max_bytes`` bytes.

        For transports that wrap the body (a GraphQL mutation, for instance). The texts
        are shortened as in construction; when even empty texts do not fit, they are
        left out.

        Args:
            max_bytes: The size limit of the body.

        Returns:
            ``self`` when it already fits, else the fitted copy.

        Raises:
            ValueError: ``max_bytes`` is too small even for a crumb without texts (a
                programming error: the fixed fields take at most about 1 KB).
        """
        if len(self.to_json()) <= max_bytes:
            return self
        return self._with_texts(self._fit_texts(max_bytes))

    def replace(
        self,
        *,
        status: object = None,
        status_desc: object = ...,
        error_type: object = ...,
        error_desc: object = ...,
    ) -> Breadcrumb:
        """A copy with some fields changed, valid and fitted like any breadcrumb.

        For ``before_send`` hooks. Texts given here are not redacted: give text that may
        leave the machine. ``...`` (the default) keeps a field; None removes a text.

        Returns:
            The new breadcrumb.
        """
        keep = ...
        return Breadcrumb(
            self.project,
            self.project_version,
            self.language_version,
            self.ctx,
            self.status if status is None else status,
            self.status_desc if status_desc is keep else status_desc,
            self.error_type if error_type is keep else error_type,
            self.error_desc if error_desc is keep else error_desc,
            self.language,
        )

    def with_suffix(self, text: str) -> Breadcrumb:
        """A copy with ``text`` appended to ``status_desc``, refitted keeping it visible.

        Meant for short notes the library adds (``" [x12 repeats]"``); ``text`` is made
        storable, is not redacted, and is kept to 100 characters. If the result is too
        large, ``status_desc`` is shortened BEFORE the suffix.

        Args:
            text: The suffix.

        Returns:
            The new breadcrumb.
        """
        suffix = storable_text(text)[:_SUFFIX_MAX_CHARS]
        base = self.status_desc
        if base is None:
            suffix = suffix.lstrip()
            base = ""
        return self._with_texts(
            self._fit_texts(MAX_BODY_BYTES, status_base=base, status_suffix=suffix)
        )

    # -- internals ---------------------------------------------------------------------

    def _with_texts(self, texts: dict[str, str | None]) -> Breadcrumb:
        """A copy with the given (already fitted) texts."""
        return self._replace(
            status_desc=texts["status_desc"],
            error_type=texts["error_type"],
            error_desc=texts["error_desc"],
        )

    def _payload(
        self, status_desc: str | None, error_type: str | None, error_desc: str | None
    ) -> dict[str, Any]:
        proc: dict[str, Any] = {"status": self.status}
        if status_desc is not None:
            proc["status_desc"] = status_desc
        if error_type is not None:
            proc["error_type"] = error_type
        if error_desc is not None:
            proc["error_desc"] = error_desc
        return {
            "project": self.project,
            "project_version": self.project_version,
            "language": self.language,
            "language_version": self.language_version,
            "ctx": self.ctx.to_payload(),
            "proc": proc,
        }

    def _size(self, texts: dict[str, str | None]) -> int:
        return len(
            _dumps(self._payload(texts["status_desc"], texts["error_type"], texts["error_desc"]))
        )

    def _fit_texts(
        self,
        max_bytes: int,
        *,
        status_base: str | None = None,
        status_suffix: str = "",
    ) -> dict[str, str | None]:
        """The three texts, shortened so that the body has at most ``max_bytes`` bytes.

        With ``status_suffix``, ``status_desc`` is ``status_base + status_suffix`` and only
        its base is shortened (unless the suffix alone does not fit its share).
        """
        texts: dict[str, str | None] = {name: getattr(self, name) for name in _TEXT_FIELDS}
        if status_base is not None:
            texts["status_desc"] = status_base + status_suffix
        size = self._size(texts)
        if size <= max_bytes:
            return texts
        present = {name: text for name, text in texts.items() if text is not None}
        costs = {name: _json_cost(text) for name, text in present.items()}
        caps = _water_fill(costs, max_bytes - (size - sum(costs.values())))
        for name, cap in caps.items():
            if costs[name] <= cap:
                continue
            text = present[name]
            if name == "status_desc" and status_base is not None and status_suffix:
                suffix_cost = _json_cost(status_suffix)
                if suffix_cost <= cap:
                    texts[name] = _shorten_json(status_base, cap - suffix_cost) + status_suffix
                    continue
            texts[name] = _shorten_json(text, cap)
        # The arithmetic above is exact; this loop only guards the invariant.
        while (size := self._size(texts)) > max_bytes:
            longest = max(
                (name for name in _TEXT_FIELDS if texts[name]),
                key=lambda name: _json_cost(texts[name] or ""),
                default=None,
            )
            if longest is None:
                break
            current = texts[longest] or ""
            texts[longest] = _shorten_json(current, _json_cost(current) - (size - max_bytes))
        if self._size(texts) > max_bytes:
            texts = dict.fromkeys(_TEXT_FIELDS)
            if self._size(texts) > max_bytes:
                raise ValueError(
                    f"max_bytes={max_bytes} is too small for this breadcrumb even without "
                    f"its texts ({self._size(texts)} bytes)"
                )
        return texts


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def build(
    *,
    project: str,
    version: object,
    language_version: str,
    ctx: Context,
    status: str = "R",
    status_desc: object = None,
    error_type: object = None,
    error_desc: object = None,
    redactor: Redactor | None = None,
) -> Breadcrumb:
    """Build a breadcrumb from any values, redacting the free texts first.

    Args:
        project: ``owner/repo`` (a ``ValueError`` otherwise: configuration is loud).
        version: The project's version, of any type (see :func:`normalize_version`).
        language_version: The language's version.
        ctx: The context.
        status: R, C, F or S.
        status_desc: Free text (any object: it is made storable).
        error_type: The error's type name (not redacted: it is a class name).
        error_desc: Free text about the error.
        redactor: Applied to ``status_desc`` and ``error_desc`` before fitting; None
            applies none (pass :func:`default_redactor` for the library's promise).

    Returns:
        The breadcrumb.

    Raises:
        ValueError: ``project`` is not ``owner/repo``.
    """
    return Breadcrumb(
        project=project,
        project_version=normalize_version(version),
        language_version=language_version,
        ctx=ctx,
        status=status,
        status_desc=_bounded_text(status_desc, redactor),
        error_type=_bounded_text(error_type),
        error_desc=_bounded_text(error_desc, redactor),
    )


def _is_suspension(exc: BaseException) -> bool:
    """KeyboardInterrupt or ``bdb.BdbQuit`` (checked without importing ``bdb``)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    bdb = sys.modules.get("bdb")
    quit_type = getattr(bdb, "BdbQuit", None)
    return isinstance(quit_type, type) and isinstance(exc, quit_type)


_STATUS_DESCRIPTIONS: Final = {"C": "Completed", "F": "Errored", "S": "Suspended"}


def from_exception(
    exc: BaseException,
    *,
    project: str,
    version: object,
    language_version: str,
    ctx: Context,
    status: str | None = None,
    status_desc: str | None = None,
    redactor: Redactor | None = None,
) -> Breadcrumb:
    """Build a breadcrumb from an exception, following the official client's conventions.

    With ``status=None``: ``KeyboardInterrupt`` and ``bdb.BdbQuit`` give ``S``/``Suspended``;
    ``SystemExit`` with code None or 0 gives ``C``/``Completed`` and no error (a normal
    exit); anything else gives ``F``/``Errored``. With a status and no ``status_desc``,
    the description is the status's word (``Completed``, ``Errored``, ``Suspended``;
    none for ``R``). ``error_type`` is the class name and ``error_desc``
    :meth:`ExceptionInfo.describe`. Never raises for any exception.

    Args:
        exc: The exception.
        project: ``owner/repo`` (a ``ValueError`` otherwise: configuration is loud).
        version: The project's version.
        language_version: The language's version.
        ctx: The context.
        status: R, C, F or S; None chooses as above.
        status_desc: Free text; None chooses as above.
        redactor: Applied to ``status_desc`` and ``error_desc``; None applies none.

    Returns:
        The breadcrumb.

    Raises:
        ValueError: ``project`` is not ``owner/repo``.
    """
    validate_project(project)
    error_type: str | None = None
    error_desc: str | None = None
    try:
        clean_exit = isinstance(exc, SystemExit) and exc.code in (None, 0)
    except Exception:
        clean_exit = False
    if status is None:
        if clean_exit:
            status = "C"
        elif _is_suspension(exc):
            status = "S"
        else:
            status = "F"
    status = _normalize_status(status)
    if status_desc is None:
        status_desc = _STATUS_DESCRIPTIONS.get(status)
    if not (clean_exit and status == "C"):
        info = capture_exception(exc)
        error_type = info.type_name
        error_desc = info.describe() or None
    return build(
        project=project,
        version=version,
        language_version=language_version,
        ctx=ctx,
        status=status,
        status_desc=status_desc,
        error_type=error_type,
        error_desc=error_desc,
        redactor=redactor,
    )
