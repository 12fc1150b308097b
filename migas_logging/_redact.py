r"""Redaction of personal data from free text (private helper of :mod:`migas_logging.breadcrumb`).

The privacy promise of migas-logging is that nothing identifying a person leaves the machine
in the free-text fields of a breadcrumb (``status_desc`` and ``error_desc``). A
:class:`Redactor` replaces, with readable placeholders:

=================================================================  ==============
what                                                               placeholder
=================================================================  ==============
secret values known to the redactor (literal match)                ``<redacted>``
tokens of common providers (GitHub, GitLab, Slack, AWS, Google,    ``<redacted>``
JWTs, OpenAI, Stripe, Hugging Face, npm, PyPI, private key blocks)
long random-looking words (32+ characters, both cases and digits)  ``<redacted>``
values after a secret-looking key (``password=``, ``token:``,      ``<redacted>``
``--api-key x``, ``"secret": "x"``, ``Bearer x``)
the home directory and anything below it                           ``<path>``
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
* A path starts after white space, a quote, a bracket, ``<>|,;:=`` or a backtick. A path
  in quotes (``'...'`` or ``"..."``, as ``repr`` and exception messages write them) runs
  to the closing quote on the same line, spaces included. Unquoted, a path continues
  over a single space when one of the next four words holds a separator
  (``/Volumes/Patient Data/John Doe.nii``: ``Data/John`` does), and its last segment,
  when it has no file extension, takes up to three following words when one of them
  ends with an extension (``John Doe.nii``) or, failing that, the following capitalised
  words (``/Users/Jane Doe``). Otherwise a path ends at white space, a quote, a bracket,
  ``<>|,;:`` or a backtick. Trailing sentence punctuation is given back (``see /a/b.``
  becomes ``see <path>.``).
* An e-mail domain may start with a digit (``jane@163.com``, ``a@1und1.de``) and be
  internationalised (``jörg@bücher.de``, ``xn--``); one of its labels must start with a
  letter, so ``numpy@1.26.4`` is a package spec, not an address.
* A value after a secret-looking key is replaced when written ``key=value``, in quotes,
  as a ``--key value`` option, or ``key: value`` when the value looks like a secret
  (holds a digit or a symbol, or is 12+ characters): ``auth: failed`` stays readable.
  Long random-looking words need both cases, a digit and few ``_-+``: a hash (one case)
  and a BIDS name (``sub-01_ses-01_task-rest_T1w``, many separators) stay readable.
* User and host names are replaced only when at least 3 characters long, and never when
  they are generic account or machine names (``root``, ``runner``, ``localhost``...):
  a one- or two-letter name (``jo``) would turn that word in every message into
  ``<user>`` while protecting almost nothing (the paths, where a user name mostly occurs,
  are redacted whatever they contain), and a generic name identifies nobody.
* "Whole word" means not preceded or followed by a letter or a digit, so ``alice_run1`` and
  ``alice.log`` lose ``alice`` while ``malice`` keeps its letters.
* Secrets are literal values, replaced wherever they occur (case-sensitive, even inside a
  word). :func:`default_redactor` takes them from the environment (see
  :func:`environment_identity`): the values (at least 6 characters) of the variables
  whose NAME looks secret (:data:`SECRET_NAME_PATTERN`: ``TOKEN``, ``SECRET``, ``PASS``,
  ``PWD``, ``_PAT``, ``KEY``, ``AUTH``...), the values of ANY variable that look like a
  secret (:func:`looks_secret`: a provider token, or 16+ characters of letters and
  digits mixing cases, or 24+ of them), and passwords of URLs
  (``scheme://user:password@host``). User and host names come from the environment too
  (a full name in ``GIT_AUTHOR_NAME``, ``COMPUTERNAME``, the batch systems' variables).

What redaction CANNOT do: it recognises shapes and known values, not meaning. A person's
name typed into a message (other than the user's), identifiers that are not paths, a
relative path with one separator (``Records/John Doe.nii``), an unquoted path whose last
words are lower-case names without an extension (``/data/jane doe``) or follow a comma
(``/data/Smith, Anna``), IPv6 addresses, host names of other machines, ``key: value``
secrets that look like plain words and secrets that are neither in this process's
environment nor shaped like a known token all pass through (``known_gaps`` in
``tests/data/privacy_corpus.json``, tested to still leak). Applications should
still avoid logging personal data; the breadcrumb builders' ``message="template"`` mode
sends the unformatted log template, which carries no argument values at all.

Cost: a Redactor compiles its patterns once (:func:`default_redactor` builds one per
process). A call runs four passes, each cheap when there is nothing to find: the literal
values (only when one occurs: ``in``), the shapes (only when the text holds ``/``, ``\``,
``@`` or digit-dot-digit; the pattern only tries a match after a boundary character), the
secrets (provider tokens looked for in words of 20+ characters only, with the result per
word cached; keys only when the lower-case text holds a key name) and the names
(``str.find`` in the case-folded text). Shapes come before secrets so that a path with
spaces after ``password:`` goes as a whole. On a quiet machine a 180-character message
takes about 6 µs (prose) to 15 µs (a path, a URL, names), a 2 KB message full of paths
about 125 µs.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Final, NamedTuple

__all__ = [
    "GENERIC_NAMES",
    "MIN_NAME_LEN",
    "PLACEHOLDERS",
    "SECRET_MIN_LEN",
    "SECRET_NAME_PATTERN",
    "EnvironmentIdentity",
    "Redactor",
    "default_redactor",
    "environment_identity",
    "looks_secret",
]

#: User and host names shorter than this are not redacted as words (see the module docstring).
MIN_NAME_LEN: Final = 3
#: Secret environment values shorter than this are ignored by :func:`default_redactor`.
SECRET_MIN_LEN: Final = 6
#: Names of the environment variables whose values :func:`default_redactor` treats as secrets
#: (``PWD`` and ``OLDPWD``, the working directories, excepted).
SECRET_NAME_PATTERN: Final = re.compile(
    r"TOKEN|SECRET|PASS|PWD|(?:^|_)PAT(?:_|$)|KEY|CREDENTIAL|AUTH|COOKIE|PRIVATE|SALT|DSN"
    r"|SIGNATURE",
    re.IGNORECASE,
)
_NOT_SECRET_NAMES: Final = frozenset({"PWD", "OLDPWD"})
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
# After a space inside a path, parentheses are path characters too (``Dropbox (Personal)``).
_NOT_CONTINUED = _WS + "'\"`<>|,;:\\[\\]{}"
_CPC = f"[^{_NOT_CONTINUED}]"
_CSC = f"[^{_NOT_CONTINUED}=/\\\\]"
# An apostrophe before a letter is part of a name (``O'Connor``), not a quote.
_APOSTROPHE = "'(?=[^\\W\\d_])"


def _body(plus: str) -> str:
    """The rest of a path, after its start.

    Path characters (apostrophes before a letter included), and a single space (or a
    comma and a space: ``Doe, John``) before a word when one of the next four words holds
    a separator (``/Volumes/Patient Data/x``), never before a word starting with ``~``
    (``~bob/x``).

    Args:
        plus: ``"++"`` (possessive, Python 3.11+) or ``"+"``: a word is followed by a
            separator, a space or an apostrophe, which it cannot contain, so giving back
            characters could never help; possessive quantifiers do not try.
    """
    star = plus.replace("+", "*", 1)

    def run(chars: str) -> str:
        return f"{chars}{star}(?:{_APOSTROPHE}{chars}{star})*"

    word = f"{_CSC}{plus}(?:{_APOSTROPHE}{_CSC}{plus})*"
    return f"{run(_PC)}(?:,? (?=(?:{word} ){{0,3}}(?!~){word}{_SEP}){run(_CPC)})*"


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
# The literal pass replaces secrets and the home directory by these private-use characters,
# which the shapes treat as ordinary path or URL characters: a secret inside a URL
# (``https://user:SECRET@host/x``) does not cut the URL short, and the whole URL goes.
# They become placeholders at the end (any already in the text become U+FFFD first).
_SECRET_MARK: Final = "\ue000"  # noqa: S105  # a marker, not a password
_HOME_MARK: Final = "\ue001"


def _quoted(quote: str, plus: str) -> str:
    """The branch of a path in ``quote`` marks, running to the closing one on its line.

    The opening quote is the boundary character that the whole pattern starts with (a
    look-behind checks which one it was): a pattern that starts with a character class
    lets the engine skip, at C speed, every position that cannot start a match.
    """
    inside = f"[^{quote}\\n]"
    starts = (
        f"/+{_SC}",
        f"~[\\w.-]*{_SEP}",
        f"[A-Za-z]:{_SEP}",
        r"\\\\",
        f"\\\\{_SC}+\\\\",
        "[fF][iI][lL][eE]:/",
        _HOME_MARK,
        f"(?:{_SC}{plus} )*{_SC}{plus}{_SEP}{inside}*{_SEP}",  # relative: two separators
    )
    group = "squote" if quote == "'" else "dquote"
    return f"(?<={quote})(?=(?:{'|'.join(starts)})){inside}{{1,512}}(?={quote})(?P<{group}>)"


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
    plus = "++" if possessive else "+"
    body = _body(plus)
    label_char = f"[^{_NOT_PATH}=/\\\\@.]"  # in one label of an e-mail domain
    # some label starts with a letter (``163.com``, ``xn--bcher-kva.de``, not ``1.26.4``)
    domain = f"(?:(?:{label_char}{plus}\\.)*[^\\W\\d_]{label_char}*(?:\\.{label_char}+)*|{_IPV4})"
    after_run = "|".join(
        (
            f"(?:'{run_chars}+)*@{domain}(?P<email>)",  # o'brien@x.ie
            r"://[^" + _WS + r"'\"<>`]*(?P<url>)",
            f"{_SEP}{_SC}+{_SEP}{body}(?P<relative>)",
        )
    )
    branches = (
        _quoted("'", plus),
        _quoted('"', plus),
        f"{_HOME_MARK}{body}(?P<home>)",
        f"[fF][iI][lL][eE]:/{body}(?P<fileurl>)",
        f"[A-Za-z]:{_SEP}{body}(?P<drive>)",
        # "john doe"@example.com, also with the quotes escaped (in JSON text)
        f'\\\\?"[^"\\n\\\\]{{1,64}}\\\\?"@{domain}(?P<qemail>)',
        f"{run}(?:{after_run})",
        f"/+{_SC}{body}(?P<posix>)",
        f"~[\\w.-]*{_SEP}{body}(?P<tilde>)",
        f"\\\\{{2,}}{_SC}+{_SEP}{body}(?P<unc>)",
        f"\\\\{_SC}+\\\\{body}(?P<bsroot>)",
        f"{_IPV4}(?![0-9]|\\.[0-9])(?P<ip>)",
    )
    return re.compile(f"[{_NOT_PATH}=](?:{'|'.join(branches)})")


@functools.lru_cache(maxsize=1)
def _shapes() -> re.Pattern[str]:
    """The shapes pattern, compiled on first use (on the worker thread, not at import)."""
    return _shapes_pattern(possessive=sys.version_info >= (3, 11))


_SHAPE_KIND: Final = {
    "squote": "<path>",
    "dquote": "<path>",
    "home": "<path>",
    "fileurl": "<path>",
    "drive": "<path>",
    "qemail": "<email>",
    "email": "<email>",
    "url": "<url>",
    "relative": "<path>",
    "posix": "<path>",
    "tilde": "<path>",
    "unc": "<path>",
    "bsroot": "<path>",
    "ip": "<ip>",
}
# Unquoted paths, whose end is a guess (see ``_path_end``).
_OPEN_PATHS: Final = frozenset(
    {"home", "fileurl", "drive", "relative", "posix", "tilde", "unc", "bsroot"}
)
# Every shape holds one of ``/ \\ @`` (or the home mark) or, for an IPv4 address, a digit,
# a dot and a digit.
_IP_TRIGGER: Final = re.compile(r"[0-9]\.[0-9]")
_PATH_TRAILING: Final = ".,!?"
_URL_TRAILING: Final = ".,!?)]}'"
# A word that may end an unquoted path's last segment: ``Doe.nii``, ``O'Brien``.
_TAIL_WORD: Final = re.compile(f" ({_SC}+(?:'{_SC}+)*)")
_EXTENSION: Final = re.compile(r"[^.\\/]\.[A-Za-z][A-Za-z0-9]{0,7}$")
_TAIL_WORDS: Final = 3


def _redact_shapes(text: str) -> str:
    """Replace the shapes (paths, URLs, e-mail and IPv4 addresses) in ``text``.

    The text is prefixed with a space, which stands for the boundary before an item that
    starts the text. (Running the pattern only around the trigger characters, as an
    earlier version did word by word, saves little now that a path may span words: the
    regions merge.)
    """
    if not (
        "/" in text
        or "\\" in text
        or "@" in text
        or _HOME_MARK in text
        or _IP_TRIGGER.search(text) is not None
    ):
        return text
    padded = " " + text
    return _assemble(padded, _shapes().finditer(padded))


def _assemble(padded: str, matches: Iterable[re.Match[str]]) -> str:
    """``padded`` (without its first space) with the matches replaced by placeholders.

    Assembled here rather than by ``re.sub`` because an unquoted path may end after its
    match (see ``_path_end``); later matches inside the words it took are skipped.
    """
    pieces: list[str] = []
    done = 1  # padded[:done] is handled (the pad is never emitted)
    for match in matches:
        start, end = match.span()
        if start + 1 < done:  # inside the words that the previous path took
            done = max(done, end)
            continue
        kind = match.lastgroup or "posix"
        if kind in _OPEN_PATHS:
            end = _path_end(padded, start, end)
        elif kind in ("squote", "dquote"):
            end -= _escaped_quote(padded, start, end)
        elif kind in ("email", "qemail", "url"):
            end = _without_trailing(padded, start, end, _URL_TRAILING if kind == "url" else "")
        pieces.append(padded[done : start + 1])
        pieces.append(_SHAPE_KIND[kind])
        done = end
    pieces.append(padded[done:])
    return "".join(pieces)


def _without_trailing(padded: str, start: int, end: int, extra: str) -> int:
    """The end of a match without its trailing sentence punctuation (if anything is left)."""
    kept = end
    while kept > start + 2 and (padded[kept - 1] in _PATH_TRAILING or padded[kept - 1] in extra):
        kept -= 1
    return kept


def _escaped_quote(padded: str, start: int, end: int) -> int:
    """1 when the match ends with an odd number of backslashes before a double quote.

    In JSON text (``message="json"``) ``\\"`` is an escaped quote: the backslash is given
    back so that the JSON stays valid.
    """
    if padded[end - 1] != "\\" or end >= len(padded) or padded[end] != '"':
        return 0
    inside = padded[start + 1 : end]
    return (len(inside) - len(inside.rstrip("\\"))) % 2


def _path_end(padded: str, start: int, end: int) -> int:
    """Where an unquoted path that the pattern matched up to ``end`` really ends.

    Sentence punctuation is given back, and closing brackets that the path does not open;
    so is one backslash before a quote when an odd number of them end the path (in JSON
    text, ``\\"`` is an escaped quote, not part of the path). A last segment without a
    file extension takes the following words up to one with an extension (``John
    Doe.nii``) among the next three, or else the following words that start with a
    capital or a caseless letter (``/Users/Jane Doe``).
    """
    kept = end
    while kept > start + 2:
        last = padded[kept - 1]
        if last in _PATH_TRAILING or (
            # ``(see /a/Patient Data/x)``: the bracket closes the sentence's
            last == ")" and padded.count(")", start + 1, kept) > padded.count("(", start + 1, kept)
        ):
            kept -= 1
        else:
            break
    if kept < end:
        return kept
    if _escaped_quote(padded, start, end):
        return end - 1
    if padded[end : end + 1] != " ":
        return end
    following = padded[end + 1 : end + 2]
    if not following.isalpha() or following.islower():
        reach = end
        for _ in range(_TAIL_WORDS):
            reach = padded.find(" ", reach + 1)
            if reach < 0:
                reach = len(padded)
                break
        if "." not in padded[end:reach]:
            return end  # no capitalised word next and no extension in reach
    segment_start = max(padded.rfind("/", start, end), padded.rfind("\\", start, end), start) + 1
    if _EXTENSION.search(padded, segment_start, end) is not None:
        return end
    capitalised = end
    position = end
    for _ in range(_TAIL_WORDS):
        word = _TAIL_WORD.match(padded, position)
        if word is None:
            break
        text = word.group(1)
        core = text.rstrip(_PATH_TRAILING)
        if _EXTENSION.search(core) is not None:
            return word.start(1) + len(core)
        first = core[:1]
        if capitalised == position and first.isalpha() and not first.islower():
            capitalised = word.start(1) + len(core)
        if core != text:  # the sentence ends here
            break
        position = word.end()
    return capitalised


# --- secrets found by their shape ----------------------------------------------------

_B64URL = "[A-Za-z0-9_-]"  # a character of base64url, which most tokens are written in
# Tokens of common providers, by their documented prefixes.
_TOKENS: Final = re.compile(
    "|".join(
        (
            r"gh[pousr]_[A-Za-z0-9]{20,}",
            r"github_pat_[A-Za-z0-9_]{20,}",
            r"gl(?:pat|dt|rt|ptt|ft|soat|cbt|imt|agent|oas|ffct|wt)-" + _B64URL + "{20,}",
            r"xox[abposre]-[A-Za-z0-9-]{10,}",
            r"xapp-[A-Za-z0-9-]{10,}",
            r"A(?:KIA|SIA)[A-Z0-9]{16}",
            r"AIza" + _B64URL + "{30,}",
            r"ya29\." + _B64URL + "{20,}",
            r"eyJ" + _B64URL + r"{8,}\." + _B64URL + r"{8,}\." + _B64URL + "*",
            r"sk-" + _B64URL + "{20,}",
            r"[rsp]k_(?:live|test)_[A-Za-z0-9]{10,}",
            r"hf_[A-Za-z0-9]{30,}",
            r"npm_[A-Za-z0-9]{30,}",
            r"pypi-" + _B64URL + "{40,}",
            r"dckr_pat_" + _B64URL + "{20,}",
            r"SG\." + _B64URL + r"{16,}\." + _B64URL + "{16,}",
            r"do[opr]_v1_[a-f0-9]{64}",
        )
    )
)
# Every provider token is (or holds) a word of 20+ characters, except a private key block,
# whose header has spaces.
_TOKEN_WORD: Final = 20
_KEY_BLOCK: Final = "-----BEGIN"
_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY-----[^-]*(?:-----END[A-Z ]{0,30}PRIVATE KEY-----)?"
)
# Words up to this long have their tokens cached: identifiers come back message after message.
_CACHED_WORD: Final = 256
# Long words of token characters: secrets when they mix cases and digits.
_LONG_WORD: Final = 32
_LONG_WORDS: Final = re.compile(r"(?<![A-Za-z0-9+_-])[A-Za-z0-9+_-]{32,}")
# Values after a secret-looking key, found in the lower-case copy of the text.
_KEY_NAMES = (
    r"(?:token|secret|pass(?:w(?:or)?d|phrase)?|pwd|[_-]pat|key|auth(?:orization)?"
    r"|credentials?|cookie|signature|salt)"
)
# A text holds such a key only if its lower-case copy holds one of these (not ``pat``,
# which every ``<path>`` holds).
_KEY_HINTS: Final = (
    "token",
    "secret",
    "pass",
    "pwd",
    "_pat",
    "-pat",
    "key",
    "auth",
    "credential",
    "cookie",
    "signature",
    "salt",
    "bearer",
)
_BARE = r"[^\s'\"`,;&<>()\[\]{}]+"
_QUOTE = r"\\?['\"]"  # a quote, maybe escaped (JSON text)
_KEY_VALUES: Final = re.compile(
    "|".join(
        (
            # --password hunter2, and in a list repr: '--password', 'hunter2'
            f"--[a-z0-9_-]*?{_KEY_NAMES}(?:{_QUOTE}?,[ \\t]*{_QUOTE}|[ \\t]+)(?P<flag>{_BARE})",
            # password=x, token: x, "secret": "x y", 'key' = 'x'
            (
                f"{_KEY_NAMES}{_QUOTE}?[ \\t]*(?P<sep>[=:])[ \\t]*"
                f"(?:\\\\?'(?P<single>[^'\\n\\\\]*)\\\\?'"
                f'|\\\\?"(?P<double>[^"\\n\\\\]*)\\\\?"'
                f"|(?P<bare>{_BARE}))"
            ),
            f"bearer[ \\t]+(?P<bearer>{_BARE})",
        )
    )
)
_KEY_VALUES_ANY_CASE: Final = re.compile(_KEY_VALUES.pattern, re.IGNORECASE)
# Authorization schemes: the credentials are the word after them.
_SCHEMES: Final = frozenset({"bearer", "basic", "token", "digest", "negotiate", "bot", "apikey"})
_NEXT_BARE: Final = re.compile(f"[ \\t]+{_BARE}")
_SYMBOLS: Final = frozenset("0123456789_-+/=.@%$#!*&^~?")


def _random_looking(word: str) -> bool:
    """Whether a long word looks random: both cases, a digit, few separators.

    ``sub-01_ses-01_task-rest_run-1_T1w`` (a BIDS name) has too many separators, and a
    hash (``3f2a9c...``) only one case.
    """
    separators = word.count("_") + word.count("-") + word.count("+")
    return _mixed(word) and separators * 8 <= len(word)


def _mixed(word: str) -> bool:
    """Whether ``word`` has lower-case and upper-case letters and a digit."""
    return (
        any(c.isdigit() for c in word)
        and any(c.islower() for c in word)
        and any(c.isupper() for c in word)
    )


def _scan_word(word: str) -> tuple[tuple[int, int], ...]:
    """Spans of the provider tokens and long random-looking runs in one word."""
    spans: list[tuple[int, int]] = []
    for match in _TOKENS.finditer(word):
        start, end = match.span()
        # a prefix inside a word (``task-...``), a fixed-size key inside a longer word
        if (start > 0 and (word[start - 1].isalnum() or word[start - 1] == "_")) or (
            end < len(word) and word[end].isalnum()
        ):
            continue
        spans.append((start, end))
    if len(word) >= _LONG_WORD:
        spans.extend(m.span() for m in _LONG_WORDS.finditer(word) if _random_looking(m.group()))
    return tuple(spans)


_word_secrets = functools.lru_cache(maxsize=1024)(_scan_word)


def _secret_spans(text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` holding tokens and the values of secret-looking keys.

    Each scan runs only when cheap ``in`` tests show that it may find something.
    """
    spans: list[tuple[int, int]] = []
    position = 0
    # faster than a regex scan for long words
    for word in [w for w in text.split() if len(w) >= _TOKEN_WORD]:
        position = text.find(word, position)
        # a path or a URL is redacted as a whole anyway
        if word[0] not in "/\\" and "://" not in word:
            found = _word_secrets(word) if len(word) <= _CACHED_WORD else _scan_word(word)
            spans.extend((position + start, position + end) for start, end in found)
        position += len(word)
    if _KEY_BLOCK in text:
        spans.extend(m.span() for m in _PRIVATE_KEY.finditer(text))
    lowered = text.lower()
    if not any(map(lowered.__contains__, _KEY_HINTS)):
        return spans
    if len(lowered) == len(text):
        pattern, haystack = _KEY_VALUES, lowered
    else:  # positions in the lower-case copy would not be positions in the text
        pattern, haystack = _KEY_VALUES_ANY_CASE, text
    for match in pattern.finditer(haystack):
        group = match.lastgroup or "bare"
        start, end = match.span(group)
        if start == end:
            continue
        if group in ("bare", "flag") and haystack[start:end].lower() in _SCHEMES:
            after = _NEXT_BARE.match(haystack, end)
            if after is not None:
                end = after.end()
        if group == "bare" and match.group("sep") == ":" and not _secret_like(text[start:end]):
            continue
        spans.append((start, end))
    return spans


def _secret_like(value: str) -> bool:
    """Whether a ``key: value`` value looks like a secret rather than a word."""
    return len(value) >= 12 or any(c in _SYMBOLS for c in value) or value[1:] != value[1:].lower()


def _mark_secrets(text: str) -> str:
    """``text`` with the spans of :func:`_secret_spans` replaced by the secret mark."""
    spans = _secret_spans(text)
    if not spans:
        return text
    spans.sort()
    pieces: list[str] = []
    done = 0
    for start, end in spans:
        if start < done:  # overlaps the previous span: one mark for both
            done = max(done, end)
            continue
        pieces.append(text[done:start])
        pieces.append(_SECRET_MARK)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def looks_secret(value: str) -> bool:
    """Whether an environment value looks like a secret wherever it is found.

    True for a provider token (``ghp_...``, ``AKIA...``; see the module docstring) and for
    a word of 16 to 1024 characters drawn from letters, digits and ``+/=_.~-`` that holds
    letters and digits and either mixes cases or is at least 24 characters long (random
    passwords, keys, hashes, UUIDs). Paths, URLs and lists of them are not: their shapes
    are redacted anyway.

    Args:
        value: The value.

    Returns:
        Whether to treat it as a secret.
    """
    if not 16 <= len(value) <= 1024 or value[0] in "/~.":
        return False
    if not value.isascii() or any(c not in _VALUE_CHARS for c in value):
        return False
    if _TOKENS.fullmatch(value) is not None:
        return True
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    return _mixed(value) or len(value) >= 24


_VALUE_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=_.~-"
)


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
        # One alternation, longest first: a secret inside the home (or the reverse) loses.
        literals = _longest_first([*self._secrets, *homes])
        self._literals = re.compile("|".join(re.escape(v) for v in literals)) if literals else None

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
        """The four passes (see the module docstring)."""
        if _SECRET_MARK in text or _HOME_MARK in text:
            text = text.replace(_SECRET_MARK, "\ufffd").replace(_HOME_MARK, "\ufffd")
        if self._literals is not None and (
            any(s in text for s in self._secrets) or any(h in text for h in self._homes)
        ):
            text = self._literals.sub(self._replace_literal, text)
        # shapes first: a path with spaces after ``password:`` must go as a whole
        text = _redact_shapes(text)
        text = _mark_secrets(text)
        if self._folded_names:
            text = self._replace_names(text)
        if _SECRET_MARK in text:
            text = text.replace(_SECRET_MARK, PLACEHOLDERS["secret"])
        if _HOME_MARK in text:
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


# --- what the environment tells about the person --------------------------------------

#: Variables holding the user's login name.
_USER_VARIABLES: Final = (
    "USER",
    "LOGNAME",
    "USERNAME",
    "SUDO_USER",
    "SLURM_JOB_USER",
    "PBS_O_LOGNAME",
    "GITHUB_ACTOR",
)
#: Variables holding a person's full name (each word of it is redacted as a name).
_PERSON_VARIABLES: Final = (
    "GIT_AUTHOR_NAME",
    "GIT_COMMITTER_NAME",
    "DEBFULLNAME",
    "FULLNAME",
)
#: Variables holding this machine's (or the submitting machine's) name.
_HOST_VARIABLES: Final = (
    "HOSTNAME",
    "HOST",
    "COMPUTERNAME",
    "USERDOMAIN",
    "SLURMD_NODENAME",
    "SLURM_SUBMIT_HOST",
    "PBS_O_HOST",
)
_URL_PASSWORD: Final = re.compile(r"://[^/@\s:]*:([^/@\s]+)@")


class EnvironmentIdentity(NamedTuple):
    """What the environment variables reveal, as :func:`environment_identity` found it."""

    secrets: list[str]
    users: list[str]
    hosts: list[str]


def environment_identity(environ: Mapping[str, str]) -> EnvironmentIdentity:
    """The secrets, user names and host names to redact, read from environment variables.

    Secrets (at least :data:`SECRET_MIN_LEN` characters) are the values of the variables
    whose name matches :data:`SECRET_NAME_PATTERN` (not ``PWD``, ``OLDPWD``), the values
    that :func:`looks_secret`, and the passwords of URLs written
    ``scheme://user:password@host``. User names come from ``USER``, ``LOGNAME``,
    ``USERNAME``, ``SUDO_USER`` and the batch systems' variables, and every word of a
    full name in ``GIT_AUTHOR_NAME``, ``GIT_COMMITTER_NAME``, ``DEBFULLNAME`` or
    ``FULLNAME``; host names from ``HOSTNAME``, ``COMPUTERNAME``, ``NAME`` and the like.
    Never raises: a value that is not a str is ignored.

    Args:
        environ: The variables (``os.environ``).

    Returns:
        The values found.
    """
    secrets: list[str] = []
    users: list[str] = []
    hosts: list[str] = []
    try:
        items = [(k, v) for k, v in environ.items() if isinstance(k, str) and isinstance(v, str)]
    except Exception:
        return EnvironmentIdentity(secrets, users, hosts)
    for name, value in items:
        if len(value) >= SECRET_MIN_LEN and (
            (name.upper() not in _NOT_SECRET_NAMES and SECRET_NAME_PATTERN.search(name))
            or looks_secret(value)
        ):
            secrets.append(value)
        if "://" in value:
            for password in _URL_PASSWORD.findall(value):
                if len(password) >= SECRET_MIN_LEN:
                    secrets.append(password)
    for name in _USER_VARIABLES:
        if environ.get(name):
            users.append(str(environ[name]))
    for name in _PERSON_VARIABLES:
        full = environ.get(name)
        if isinstance(full, str):
            users.extend(w for w in re.split(r"[\s,.]+", full) if w)
    for name in _HOST_VARIABLES:
        if environ.get(name):
            hosts.append(str(environ[name]))
    return EnvironmentIdentity(secrets, users, hosts)


@functools.lru_cache(maxsize=1)
def default_redactor() -> Redactor:
    """The redactor for this process, detected once from the environment and cached.

    It knows the home directory (``os.path.expanduser("~")``), the user name
    (``getpass.getuser()`` and the variables of :func:`environment_identity`), the host
    name (``socket.gethostname()``, ``platform.node()`` and the variables; never
    ``socket.getfqdn()``, which can block on DNS) and the secrets of the environment.
    Detection never raises: what cannot be detected is left out. Call
    ``default_redactor.cache_clear()`` to detect again (tests).

    Returns:
        The shared :class:`Redactor`.
    """
    import getpass
    import os
    import platform
    import socket

    found = environment_identity(os.environ)
    users = [_guarded(getpass.getuser), *found.users]
    hosts = [_guarded(socket.gethostname), _guarded(platform.node), *found.hosts]
    return Redactor(
        home=_guarded(lambda: os.path.expanduser("~")),
        user=[u for u in users if u],
        host=[h for h in hosts if h],
        secrets=found.secrets,
    )
