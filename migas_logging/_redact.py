r"""Redaction of personal data from free text (private helper of :mod:`migas_logging.breadcrumb`).

The privacy promise of migas-logging is that nothing identifying a person leaves the machine
in the free-text fields of a breadcrumb (``status_desc`` and ``error_desc``). A
:class:`Redactor` replaces, with readable placeholders:

=================================================================  ==============
what                                                               placeholder
=================================================================  ==============
values of secret-looking environment variables (literal match)     ``<redacted>``
the home directory and anything below it (literal match)           ``<path>``
``file:/...`` URLs                                                 ``<path>``
other URLs (``scheme://...``)                                      ``<url>``
e-mail addresses (and ``someone@host``)                            ``<email>``
IPv4 addresses                                                     ``<ip>``
Windows paths (``C:\x``, ``C:/x``, ``\\server\share``, ``\a\b``)   ``<path>``
POSIX absolute paths (``/a``), ``~/x`` and ``~user/x``               ``<path>``
relative paths with at least two separators (``a/b/c.txt``)        ``<path>``
the user name, as a whole word, in any letter case                 ``<user>``
the host name (full and short), as a whole word, in any case       ``<host>``
=================================================================  ==============

Design choices:

* A relative path needs TWO separators: ``owner/repo``, ``and/or``, ``km/h`` and ``I/O``
  stay readable, ``sub-01/anat/T1w.nii.gz`` does not. Dates written ``2024/01/02`` are
  redacted too: over-redaction is the safe side.
* A path ends at white space, a quote, a bracket, ``<>|,;:`` or a backtick; it starts after
  one of those or after ``=`` (so ``--out=/scratch/x`` keeps ``--out=``). Trailing sentence
  punctuation is given back (``see /a/b.`` becomes ``see <path>.``).
* User and host names are replaced only when at least 3 characters long, and never when
  they are generic account or machine names (``root``, ``runner``, ``localhost``...):
  a one- or two-letter name (``jo``) would turn that word in every message into
  ``<user>`` while protecting almost nothing (the paths, where a user name mostly occurs,
  are redacted whatever they contain), and a generic name identifies nobody.
* "Whole word" means not preceded or followed by a letter or a digit, so ``alice_run1`` and
  ``alice.log`` lose ``alice`` while ``malice`` keeps its letters.
* Secrets are literal values, replaced wherever they occur (case-sensitive, even inside a
  word). The default redactor takes the values (at least 6 characters) of the environment
  variables whose NAME contains ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``,
  ``API_KEY``, ``KEY``, ``CREDENTIAL`` or ``AUTH``.

What redaction CANNOT do: it recognises shapes and known values, not meaning. A person's
name typed into a message (other than the user's), identifiers that are not paths, a path
with spaces outside the home directory (only the part before the first space is
recognised as a path), IPv6 addresses, exotic e-mail addresses (quoted local parts), host
names of other machines and secrets that are not in this process's environment all pass
through. Applications should still avoid logging personal data; the breadcrumb builders'
``message="template"`` mode sends the unformatted log template, which carries no argument
values at all.

Cost: a Redactor compiles its patterns once (:func:`default_redactor` builds one per
process). A call runs three passes, each skipped when a cheap C-level test shows it cannot
match: the literal values (only when one occurs: ``in``), the shapes (only on the
space-delimited words holding ``/``, ``\``, ``@`` or digit-dot-digit, or in one pass over
the text when there are many such words; the pattern only tries a match after a boundary
character) and the names (``str.find`` in the case-folded text). On a quiet machine a 2 KB
message full of paths and addresses takes about 45 µs, plain prose about 12 µs.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable
from typing import Final

__all__ = [
    "GENERIC_NAMES",
    "MIN_NAME_LEN",
    "PLACEHOLDERS",
    "SECRET_MIN_LEN",
    "SECRET_NAME_PATTERN",
    "Redactor",
    "default_redactor",
]

#: User and host names shorter than this are not redacted as words (see the module docstring).
MIN_NAME_LEN: Final = 3
#: Secret environment values shorter than this are ignored by :func:`default_redactor`.
SECRET_MIN_LEN: Final = 6
#: Names of the environment variables whose values :func:`default_redactor` treats as secrets.
SECRET_NAME_PATTERN: Final = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|KEY|CREDENTIAL|AUTH", re.IGNORECASE
)
#: Account and machine names that identify nobody: never redacted as words.
GENERIC_NAMES: Final = frozenset(
    {
        "root",
        "admin",
        "user",
        "users",
        "nobody",
        "runner",
        "jovyan",
        "ubuntu",
        "debian",
        "docker",
        "neuro",
        "guest",
        "localhost",
        "unknown",
        "none",
    }
)
#: The placeholder of each kind of redacted item.
PLACEHOLDERS: Final = {
    "secret": "<redacted>",
    "path": "<path>",
    "url": "<url>",
    "email": "<email>",
    "ip": "<ip>",
    "user": "<user>",
    "host": "<host>",
}

# Unicode white space, spelled out: an explicit class scans faster than ``\s`` and the
# same set must be used everywhere (a path ends, and another one may start, at each).
_WS = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_PATH = _WS + "'\"`<>|,;:()\\[\\]{}"
_PC = f"[^{_NOT_PATH}]"  # a character inside a path (``=`` allowed: ``year=2024/x``)
_SC = f"[^{_NOT_PATH}=/\\\\]"  # a character inside one path segment
_SEP = r"[/\\]"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


def _shapes_pattern(possessive: bool) -> re.Pattern[str]:
    """Compile the pattern of the shapes (paths, URLs, e-mail and IPv4 addresses).

    Every match starts with the boundary character before the item (consumed, and given
    back by the replacement), so the engine only tries a match after a boundary: the text
    is prefixed with a space so that an item can also start the text.

    Args:
        possessive: Match the first segment of a relative path, e-mail local part or URL
            scheme with a possessive quantifier (Python 3.11+); otherwise with the
            equivalent idiom of a look-ahead capture re-read by a back-reference, which
            Python 3.10 supports (a little slower). Either way the segment is read once,
            without backtracking.

    Returns:
        The compiled pattern.
    """
    run_chars = f"[^{_NOT_PATH}=/\\\\@]"
    run = f"{run_chars}++" if possessive else f"(?=(?P<run>{run_chars}+))(?P=run)"
    after_run = "|".join(
        (
            rf"@(?:[A-Za-z][\w-]*(?:\.[\w-]+)*|{_IPV4})(?P<email>)",
            r"://[^" + _WS + r"'\"<>`]*(?P<url>)",
            f"{_SEP}{_SC}+{_SEP}{_PC}*(?P<relative>)",
        )
    )
    branches = (
        f"[fF][iI][lL][eE]:/{_PC}*(?P<fileurl>)",
        f"[A-Za-z]:{_SEP}{_PC}*(?P<drive>)",
        f"{run}(?:{after_run})",
        f"/+{_SC}{_PC}*(?P<posix>)",
        f"~[\\w.-]*{_SEP}{_PC}*(?P<tilde>)",
        f"\\\\{{2,}}{_SC}+{_SEP}{_PC}*(?P<unc>)",
        f"\\\\{_SC}+\\\\{_PC}*(?P<bsroot>)",
        f"{_IPV4}(?![0-9]|\\.[0-9])(?P<ip>)",
    )
    return re.compile(f"[{_NOT_PATH}=](?:{'|'.join(branches)})")


@functools.lru_cache(maxsize=1)
def _shapes() -> re.Pattern[str]:
    """The shapes pattern, compiled on first use (on the worker thread, not at import)."""
    return _shapes_pattern(possessive=sys.version_info >= (3, 11))


_SHAPE_KIND: Final = {
    "fileurl": "<path>",
    "drive": "<path>",
    "email": "<email>",
    "url": "<url>",
    "relative": "<path>",
    "posix": "<path>",
    "tilde": "<path>",
    "unc": "<path>",
    "bsroot": "<path>",
    "ip": "<ip>",
}
# The literal pass replaces secrets and the home directory by these private-use characters,
# which the shapes treat as ordinary path or URL characters: a secret inside a URL
# (``https://user:SECRET@host/x``) does not cut the URL short, and the whole URL goes.
# They become placeholders at the end (any already in the text become U+FFFD first).
_SECRET_MARK: Final = "\ue000"  # noqa: S105  # a marker, not a password
_HOME_MARK: Final = "\ue001"
# Every shape holds one of ``/ \\ @`` or, for an IPv4 address, a digit, a dot and a digit;
# and no shape contains a space. These patterns find the space-delimited words that hold
# such a trigger (each match runs from the trigger to the end of its word).
_TRIGGER: Final = re.compile(r"[/\\@][^ ]*")
_IP_TRIGGER: Final = re.compile(r"[0-9]\.[0-9][^ ]*")
# Above this many trigger words, one pass over the whole text is cheaper than one per word.
_MAX_WORDS: Final = 4
_PATH_TRAILING: Final = ".,!?"
_URL_TRAILING: Final = ".,!?)]}'"
_TRAILING: Final = frozenset(_URL_TRAILING)


def _redact_shapes(text: str) -> str:
    """Replace the shapes (paths, URLs, e-mail and IPv4 addresses) in ``text``.

    No shape contains a space, so the shapes pattern only needs to see the space-delimited
    words holding a trigger character (see ``_TRIGGER``). A few such words (the common
    case: prose mentioning one path) are redacted one by one, which spares the pattern a
    scan of all the other words; otherwise the whole text is redacted in one pass. Both
    give the same result: a word is always preceded by a space or starts the text, which
    is what the space prefixed to the text stands for.
    """
    words: list[tuple[int, int]] = []
    for pattern in (_TRIGGER, _IP_TRIGGER):
        for match in pattern.finditer(text):
            words.append((text.rfind(" ", 0, match.start()) + 1, match.end()))
            if len(words) > _MAX_WORDS:
                return _shapes().sub(_replace_shape, " " + text)[1:]
    if not words:
        return text
    pieces: list[str] = []
    done = 0
    for start, end in sorted(set(words)):
        if start < done:  # the same word, found by both patterns
            continue
        pieces.append(text[done:start])
        pieces.append(_shapes().sub(_replace_shape, " " + text[start:end])[1:])
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _replace_shape(match: re.Match[str]) -> str:
    """Boundary character + placeholder (+ trailing punctuation given back).

    This runs once per match, in Python: it is kept to the fewest operations.
    """
    found = match.group()
    kind = match.lastgroup or "posix"
    if found[-1] in _TRAILING and kind != "ip":
        kept = found.rstrip(_URL_TRAILING if kind == "url" else _PATH_TRAILING)
        if len(kept) > 1:
            return found[0] + _SHAPE_KIND[kind] + found[len(kept) :]
    return found[0] + _SHAPE_KIND[kind]


def _strings(value: Iterable[str] | str | None) -> list[str]:
    """The str items of ``value`` (a str, an iterable of str, or None); others are ignored."""
    if value is None:
        return []
    if isinstance(value, str):
        return [str.__str__(value)]
    try:
        return [str.__str__(v) for v in value if isinstance(v, str)]
    except Exception:
        return []


def _name_ok(name: str) -> bool:
    """True for a user or host name worth redacting as a word."""
    return len(name) >= MIN_NAME_LEN and name.casefold() not in GENERIC_NAMES


def _longest_first(values: Iterable[str]) -> list[str]:
    """Unique values, longest first: in an alternation the longest must win."""
    return sorted(set(values), key=lambda v: (-len(v), v))


def _names_pattern(kinds: dict[str, str]) -> re.Pattern[str] | None:
    """The fallback pattern for whole-word names in any case (``kinds``: name -> placeholder).

    Used only for texts whose case-folded form is longer than the text (``ß`` folds to
    ``ss``), where positions in the folded text are not positions in the text.
    """
    if not kinds:
        return None
    branches = [
        f"{re.escape(name)}(?P<{'host' if kinds[name] == '<host>' else 'user'}{i}>)"
        for i, name in enumerate(_longest_first(kinds))
    ]
    return re.compile(f"(?<![^\\W_])(?:{'|'.join(branches)})(?![^\\W_])", re.IGNORECASE)


class Redactor:
    """Replaces paths, names, addresses and secrets in a text by readable placeholders.

    A Redactor is immutable once built and safe to share between threads. Calling it never
    raises: if redaction itself fails (it should not), the whole text is replaced by
    ``<redacted>``, because sending it unredacted would break the privacy promise.

    Args:
        home: The home directory, matched literally (also with the other kind of slash, with
            doubled backslashes as in a ``repr``, and in lower case) together with
            everything below it. Needed for homes containing spaces; other paths are found
            by their shape anyway. Ignored when shorter than 3 characters (``/``, ``~``).
        user: The user name (or several), replaced as a whole word in any letter case when
            at least 3 characters long and not generic (``root``, ``runner``...).
        host: The host name (or several); the short form of each (before the first dot)
            is added. Same rules as ``user``.
        secrets: Literal values replaced wherever they occur (empty strings are ignored).
    """

    __slots__ = ("_folded_names", "_homes", "_literals", "_n_values", "_names", "_secrets")

    def __init__(
        self,
        *,
        home: str | None = None,
        user: Iterable[str] | str | None = None,
        host: Iterable[str] | str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self._secrets = frozenset(s for s in _strings(secrets) if s)
        homes: set[str] = set()
        for given in _strings(home):
            h = given.rstrip("/\\")
            if len(h) >= 3:
                for variant in (h, h.replace("\\", "/"), h.replace("/", "\\")):
                    homes.update((variant, variant.lower(), variant.replace("\\", "\\\\")))
        self._homes = tuple(homes)
        literal_branches = [re.escape(s) for s in _longest_first(self._secrets)]
        literal_branches += [f"{re.escape(h)}(?:{_SEP}{_PC}*)?" for h in _longest_first(homes)]
        self._literals = re.compile("|".join(literal_branches)) if literal_branches else None

        kinds: dict[str, str] = {}
        for h in _strings(host):
            for name in (h, h.split(".", 1)[0]):
                if _name_ok(name):
                    kinds[name] = "<host>"
        for u in _strings(user):
            if _name_ok(u):
                kinds[u] = "<user>"
        self._names = _names_pattern(kinds)
        folded: dict[str, str] = {}
        for name in _longest_first(kinds):
            folded.setdefault(name.casefold(), kinds[name])
        # Longest first, so that of two names found at the same place the longest wins.
        self._folded_names = tuple(sorted(folded.items(), key=lambda kv: -len(kv[0])))
        self._n_values = len(self._secrets) + len(self._homes) + len(kinds)

    def __repr__(self) -> str:
        # Never show the values: a repr may end up in a log.
        return f"<Redactor with {self._n_values} literal values>"

    def __call__(self, text: str) -> str:
        """Return ``text`` with every recognised personal item replaced by its placeholder.

        Args:
            text: The text to redact. A non-str is returned unchanged (callers pass
                storable text).

        Returns:
            The redacted text.
        """
        if not isinstance(text, str) or not text:
            return text
        try:
            return self._redact(text)
        except Exception:
            return PLACEHOLDERS["secret"]

    def _redact(self, text: str) -> str:
        """The three passes (see the module docstring)."""
        marked = False
        if self._literals is not None and (
            any(s in text for s in self._secrets) or any(h in text for h in self._homes)
        ):
            if _SECRET_MARK in text or _HOME_MARK in text:
                text = text.replace(_SECRET_MARK, "\ufffd").replace(_HOME_MARK, "\ufffd")
            text = self._literals.sub(self._replace_literal, text)
            marked = True
        text = _redact_shapes(text)
        if self._folded_names:
            text = self._replace_names(text)
        if marked:
            text = text.replace(_SECRET_MARK, PLACEHOLDERS["secret"])
            text = text.replace(_HOME_MARK, PLACEHOLDERS["path"])
        return text

    def _replace_names(self, text: str) -> str:
        """Replace the user and host names, as whole words, in any letter case.

        ``str.casefold`` never shortens a character, so when the folded text has the same
        length as the text each character folded to exactly one: positions agree, and the
        names are found with ``str.find`` (C speed) instead of a case-insensitive regex.
        """
        folded = text.casefold()
        if len(folded) != len(text):
            return self._names.sub(_replace_name, text) if self._names is not None else text
        spans: list[tuple[int, int, str]] = []
        size = len(text)
        for name, placeholder in self._folded_names:
            start = folded.find(name)
            while start >= 0:
                end = start + len(name)
                if (start == 0 or not text[start - 1].isalnum()) and (
                    end == size or not text[end].isalnum()
                ):
                    spans.append((start, -end, placeholder))
                start = folded.find(name, start + 1)
        if not spans:
            return text
        spans.sort()
        pieces: list[str] = []
        done = 0
        for start, neg_end, placeholder in spans:
            if start < done:  # inside a longer name already replaced
                continue
            pieces.append(text[done:start])
            pieces.append(placeholder)
            done = -neg_end
        pieces.append(text[done:])
        return "".join(pieces)

    def _replace_literal(self, match: re.Match[str]) -> str:
        """The mark of a secret or of the home directory (see ``_SECRET_MARK``)."""
        return _SECRET_MARK if match.group() in self._secrets else _HOME_MARK


def _replace_name(match: re.Match[str]) -> str:
    """The placeholder of a user or host name (the group name says which)."""
    kind = match.lastgroup or "user"
    return PLACEHOLDERS["host"] if kind.startswith("host") else PLACEHOLDERS["user"]


def _guarded(getter: Callable[[], object]) -> str | None:
    """Call ``getter()`` and return its result if it is a str; None if it fails."""
    try:
        value = getter()
    except Exception:
        return None
    return value if isinstance(value, str) else None


@functools.lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    """The redactor for this process, detected once from the environment and cached.

    It knows the home directory (``os.path.expanduser("~")``), the user name
    (``getpass.getuser()`` and the ``USER``, ``LOGNAME``, ``USERNAME`` and ``SUDO_USER``
    variables), the host name (``socket.gethostname()`` and ``platform.node()``; never
    ``socket.getfqdn()``, which can block on DNS) and the secret-looking environment
    values. Detection never raises: what cannot be detected is left out. Call
    ``default_redactor.cache_clear()`` to detect again (tests).

    Returns:
        The shared :class:`Redactor`.
    """
    import getpass
    import os
    import platform
    import socket

    users = [
        _guarded(getpass.getuser),
        *(os.environ.get(name) for name in ("USER", "LOGNAME", "USERNAME", "SUDO_USER")),
    ]
    hosts = [_guarded(socket.gethostname), _guarded(platform.node)]
    secrets = [
        value
        for name, value in os.environ.items()
        if len(value) >= SECRET_MIN_LEN and SECRET_NAME_PATTERN.search(name)
    ]
    return Redactor(
        home=_guarded(lambda: os.path.expanduser("~")),
        user=[u for u in users if u],
        host=[h for h in hosts if h],
        secrets=secrets,
    )
