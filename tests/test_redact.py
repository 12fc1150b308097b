"""Redactor: nothing that identifies a person survives, readable placeholders instead.

Hand-written cases pin the behaviour of each kind of item (and what is deliberately left
alone); Hypothesis properties embed generated home directories, user and host names,
secrets, paths, e-mail and IP addresses and URLs in text and check that none survives.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migas_logging import _redact
from migas_logging._redact import PLACEHOLDERS, Redactor, default_redactor

# Pure functions: the autouse fixtures of conftest.py do not matter to these properties.
PROPS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ALICE = Redactor(
    home="/home/alice",
    user="alice",
    host=["node17.cluster.example.edu"],
    secrets=["s3cr3tT0KEN"],
)


def _strip_placeholders(text: str) -> str:
    """The text without placeholders (a placeholder may contain a word such as 'path')."""
    for placeholder in PLACEHOLDERS.values():
        text = text.replace(placeholder, " ")
    return text


def _has_word(word: str, text: str) -> bool:
    """Whether ``word`` occurs in ``text`` as a whole word, in any case."""
    pattern = rf"(?<![^\W_]){re.escape(word)}(?![^\W_])"
    return re.search(pattern, _strip_placeholders(text), re.IGNORECASE) is not None


class TestPaths:
    """File-system paths of every flavour become <path>; look-alikes stay readable."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("open /tmp/foo/bar.txt failed", "open <path> failed"),
            ("/abs at the start", "<path> at the start"),
            ("No such file: '/data/sub-01/x.nii.gz'", "No such file: '<path>'"),
            ("see /a/b.", "see <path>."),
            ("(/a/b, /c)", "(<path>, <path>)"),
            ("--out=/scratch/x", "--out=<path>"),
            ("PATH=/usr/bin:/bin", "PATH=<path>:<path>"),
            ("~/x and ~bob/y", "<path> and <path>"),
            (r"C:\Users\bob\x.txt", "<path>"),
            ("C:/Users/bob", "<path>"),
            (r"\\server\share\x", "<path>"),
            (r"\Users\bob\x", "<path>"),
            (r"repr 'C:\\Users\\bob'", "repr '<path>'"),
            ("file:///home/x/y and file:/x", "<path> and <path>"),
            ("sub-01/anat/T1w.nii.gz", "<path>"),
            ("dir=a/b/c", "dir=<path>"),
            ("year=2024/x/y", "year=<path>"),
            ("x\u00a0/home/y\u3000/z", "x\u00a0<path>\u3000<path>"),
        ],
    )
    def test_redacted(self, text: str, expected: str) -> None:
        """Each path shape is replaced by <path>, keeping surrounding punctuation."""
        assert Redactor()(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "nipreps/fmriprep",
            "owner/repo",
            "and/or km/h I/O TCP/IP 1/2",
            r"a\nb",
            "a ~ b, 50 % / 2",
            "note: version 1.2.3",
        ],
    )
    def test_look_alikes_kept(self, text: str) -> None:
        """Single-slash tokens (owner/repo, and/or) and escapes are not paths."""
        assert Redactor()(text) == text

    def test_home_with_spaces(self) -> None:
        """The home directory is matched literally, so spaces in it do not leak a name."""
        redact = Redactor(home="/Users/Alice Smith")
        assert redact("at '/Users/Alice Smith/data/x.nii.gz'") == "at '<path>'"
        assert redact("home is /Users/Alice Smith") == "home is <path>"

    def test_windows_home_variants(self) -> None:
        """A Windows home is found with either slash, doubled backslashes, any case."""
        redact = Redactor(home="C:\\Users\\Alice Smith")
        for text in (
            "C:\\Users\\Alice Smith\\x",
            "C:/Users/Alice Smith/x",
            "C:\\\\Users\\\\Alice Smith\\\\x",
            "c:\\users\\alice smith\\x",
        ):
            assert "Smith" not in redact(text), text


class TestAddresses:
    """URLs, e-mail and IPv4 addresses."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("see https://example.org/a?b=1). Then", "see <url>). Then"),
            ("git+ssh://git@host/x", "<url>"),
            ("mail alice.smith@uni.edu now", "mail <email> now"),
            ("bob@node17 and x@10.1.1.1", "<email> and <email>"),
            ("from 10.0.0.12:8080", "from <ip>:8080"),
            ("(192.168.1.1)", "(<ip>)"),
        ],
    )
    def test_redacted(self, text: str, expected: str) -> None:
        """Each address becomes its placeholder."""
        assert Redactor()(text) == expected

    @pytest.mark.parametrize(
        "text",
        ["version 1.2.3", "v1.2.3.4", "256.1.1.1", "1.2.3.4.5", "numpy@1.26.4", "@property"],
    )
    def test_look_alikes_kept(self, text: str) -> None:
        """Versions, invalid octets and package specs are not addresses."""
        assert Redactor()(text) == text


class TestNames:
    """User and host names: whole words, any case, at least 3 characters, not generic."""

    def test_user_and_host(self) -> None:
        """Names are replaced as whole words in any letter case; the short host too."""
        text = "alice_run1 malice Alice ALICE node17 NODE17.cluster.example.edu node17x"
        assert ALICE(text) == "<user>_run1 malice <user> <user> <host> <host> node17x"

    def test_short_and_generic_names_ignored(self) -> None:
        """Names under 3 characters and generic ones (root, runner) are not words to hide."""
        redact = Redactor(user=["jo", "root"], host=["localhost", "runner"])
        text = "jo ran as root on localhost with runner"
        assert redact(text) == text

    def test_case_folding_fallback(self) -> None:
        """Text whose case folding changes its length (ß) still gets names replaced."""
        redact = Redactor(user="alice", host="straße")
        assert (
            redact("Straße 5: alice was here, STRASSE no")
            == "<host> 5: <user> was here, STRASSE no"
        )

    def test_longest_name_wins(self) -> None:
        """Of two names at the same place, the longer one is replaced as a whole."""
        redact = Redactor(host=["node17.cluster.example.edu"])
        assert redact("node17.cluster.example.edu.") == "<host>."


class TestSecrets:
    """Secret values are replaced wherever they occur."""

    def test_inside_words(self) -> None:
        """A secret is found even inside a word, and before the shapes see it."""
        assert ALICE("tok=xxs3cr3tT0KENyy") == "tok=xx<redacted>yy"
        assert ALICE("https://u:s3cr3tT0KEN@h/x") == "<url>"

    def test_repr_hides_values(self) -> None:
        """The repr of a Redactor never shows the values it hides."""
        assert "s3cr3t" not in repr(ALICE)
        assert "alice" not in repr(ALICE)

    def test_never_raises(self) -> None:
        """A non-str is returned as is; an internal failure gives <redacted>, not the text."""
        assert ALICE("") == ""
        assert ALICE(None) is None  # type: ignore[arg-type]

        class Broken(Redactor):
            def _redact(self, text: str) -> str:
                raise RuntimeError("boom")

        assert Broken()("alice at /home/alice") == "<redacted>"


class TestDefaultRedactor:
    """default_redactor(): detected once from the environment, never raises."""

    @pytest.fixture(autouse=True)
    def _fresh(self) -> object:
        default_redactor.cache_clear()
        yield None
        default_redactor.cache_clear()

    def test_detects_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Home, user, host and secret-looking variables come from the environment."""
        import getpass
        import socket

        monkeypatch.setenv("HOME", "/home/zelda")
        monkeypatch.setenv("USER", "zelda")
        monkeypatch.setenv("MY_API_TOKEN", "tok-1234567890")
        monkeypatch.setenv("SHORT_KEY", "abc")
        monkeypatch.setattr(getpass, "getuser", lambda: "zelda")
        monkeypatch.setattr(socket, "gethostname", lambda: "hyrule.lab.example")
        redact = default_redactor()
        assert redact is default_redactor()
        text = "zelda on hyrule.lab.example (hyrule) used tok-1234567890 and abc in /home/zelda"
        assert redact(text) == "<user> on <host> (<host>) used <redacted> and abc in <path>"

    def test_detection_failures(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """getpass failing (no passwd entry in a container) is ignored, and getfqdn unused."""
        import getpass
        import socket

        def fail() -> str:
            raise OSError("no passwd entry")

        def forbidden(*args: object) -> str:
            raise AssertionError("getfqdn can block on DNS")

        monkeypatch.setattr(getpass, "getuser", fail)
        monkeypatch.setattr(socket, "gethostname", fail)
        monkeypatch.setattr(socket, "getfqdn", forbidden)
        assert default_redactor()("text /x/y") == "text <path>"


# ----------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------

LOWER = "abcdefghijklmnopqrstuvwxyz"
ALNUM = LOWER + LOWER.upper() + "0123456789"


def _word(first: str, rest: str, min_rest: int, max_rest: int) -> st.SearchStrategy[str]:
    """A word: one character of ``first``, then ``min_rest`` to ``max_rest`` of ``rest``."""
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(first),
        st.text(st.sampled_from(rest), min_size=min_rest, max_size=max_rest),
    )


SEGMENT = _word(ALNUM + "_-", ALNUM + "._-", 0, 9)
NAME = _word(LOWER, LOWER + "0123456789-", 2, 11).filter(
    lambda n: (
        n not in _redact.GENERIC_NAMES
        and not any(n in p for p in PLACEHOLDERS.values())
        and n not in {"chars", "cut"}
    )
)
SECRET = st.text(st.sampled_from(ALNUM), min_size=6, max_size=20).filter(
    lambda s: not any(s.lower() in p for p in PLACEHOLDERS.values())
)
# Words around the items: anything but the characters that make paths and addresses.
FILLER = st.text(
    st.characters(
        exclude_characters="/\\@:~.",
        max_codepoint=0x2FFF,
    ),
    max_size=12,
)
SEPARATORS = st.sampled_from(
    [" ", "\n", "\t", "'", '"', "(", ")", "[", "]", ", ", ": ", "=", "<", "|"]
)


def _paths() -> st.SearchStrategy[str]:
    segments = st.lists(SEGMENT, min_size=1, max_size=4)
    two_or_more = st.lists(SEGMENT, min_size=3, max_size=5)
    return st.one_of(
        segments.map(lambda s: "/" + "/".join(s)),
        segments.map(lambda s: "~/" + "/".join(s)),
        st.tuples(st.sampled_from("CDcz"), segments, st.sampled_from(["\\", "/"])).map(
            lambda t: f"{t[0]}:{t[2]}" + t[2].join(t[1])
        ),
        st.tuples(SEGMENT, segments).map(lambda t: "\\\\" + t[0] + "\\" + "\\".join(t[1])),
        two_or_more.map("/".join),
        two_or_more.map("\\".join),
        segments.map(lambda s: "file:///" + "/".join(s)),
    )


EMAIL = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    _word(LOWER + "0123456789", LOWER + "0123456789._+-", 0, 10),
    st.lists(_word(LOWER, LOWER + "0123456789-", 0, 8), min_size=1, max_size=2),
    st.text(st.sampled_from(LOWER), min_size=2, max_size=6),
)
IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
URL = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https", "ftp", "s3", "git+ssh"]),
    _word(LOWER, LOWER + "0123456789.-", 0, 15),
    st.text(st.sampled_from(ALNUM + "/?=&%._-"), max_size=20),
)


def _embed(draw: Callable[..., object], items: list[str]) -> str:
    """Items and filler words joined by separators, in a random order."""
    pieces: list[str] = []
    for item in items:
        pieces.append(str(draw(FILLER)))
        pieces.append(str(draw(SEPARATORS)))
        pieces.append(item)
        pieces.append(str(draw(SEPARATORS)))
    pieces.append(str(draw(FILLER)))
    return "".join(pieces)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[Redactor, str, dict[str, list[str]]]:
    """A redactor with generated identity, and a text embedding all of it."""
    user = draw(NAME)
    host = draw(NAME)
    domain = draw(st.sampled_from(["", ".cluster.example.edu", ".local"]))
    secret = draw(SECRET)
    home = draw(
        st.sampled_from(["/home/{}", "/Users/{} Smith", "C:\\Users\\{}", "/gpfs/home/{}"])
    ).format(user)
    paths = draw(st.lists(_paths(), min_size=1, max_size=3))
    emails = draw(st.lists(EMAIL, max_size=2))
    ips = draw(st.lists(IPV4, max_size=2))
    urls = draw(st.lists(URL, max_size=2))
    user_case = draw(st.sampled_from([str.lower, str.upper, str.title]))
    items = [
        user_case(user),
        host + domain,
        host,
        secret,
        home,
        home + draw(st.sampled_from(["/", "\\"])) + draw(SEGMENT),
        *paths,
        *emails,
        *ips,
        *urls,
    ]
    order = draw(st.permutations(items))
    redactor = Redactor(home=home, user=user, host=host + domain, secrets=[secret])
    found = {
        "words": [user, host],
        "substrings": [secret, home, *paths, *emails, *ips, *urls],
    }
    return redactor, _embed(draw, list(order)), found


class TestRedactionProperties:
    """Whatever the surrounding text, no generated identifying item survives."""

    @settings(PROPS, max_examples=500)
    @given(scenario())
    def test_nothing_survives(self, case: tuple[Redactor, str, dict[str, list[str]]]) -> None:
        """Home, user, host, secret, paths, e-mails, IPs and URLs are all gone."""
        redactor, text, found = case
        result = redactor(text)
        for word in found["words"]:
            assert not _has_word(word, result), (word, result)
        for item in found["substrings"]:
            assert item not in _strip_placeholders(result), (item, result)

    @settings(PROPS, max_examples=300)
    @given(st.text(st.characters(exclude_categories=()), max_size=300))
    def test_any_text(self, text: str) -> None:
        """Any text, surrogates and controls included, is redacted without raising."""
        result = ALICE(text)
        assert isinstance(result, str)
        assert "s3cr3tT0KEN" not in result

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="possessive quantifiers: 3.11+")
    @settings(PROPS, max_examples=300)
    @given(st.text(st.sampled_from(list("ab/\\@.:~=1 -_'(")), max_size=60))
    def test_python310_pattern_agrees(self, text: str) -> None:
        """The 3.10 look-ahead idiom matches exactly what the 3.11 possessive form does."""
        fast = _redact._shapes_pattern(possessive=True)
        compat = _redact._shapes_pattern(possessive=False)
        padded = " " + text
        assert [(m.span(), m.lastgroup) for m in fast.finditer(padded)] == [
            (m.span(), m.lastgroup) for m in compat.finditer(padded)
        ]

    @settings(PROPS, max_examples=300)
    @given(
        st.lists(
            st.one_of(_paths(), EMAIL, IPV4, URL, FILLER, st.sampled_from(["1.2", "a@b", "x/y"])),
            max_size=8,
        ),
        st.lists(SEPARATORS, min_size=8, max_size=8),
    )
    def test_word_by_word_agrees(self, items: list[str], separators: list[str]) -> None:
        """Redacting the trigger words one by one equals one pass over the whole text."""
        text = "".join(item + sep for item, sep in zip(items, separators, strict=False))
        whole = _redact._shapes().sub(_redact._replace_shape, " " + text)[1:]
        assert _redact._redact_shapes(text) == whole


class TestCost:
    """Redaction is cheap, and no input makes the patterns backtrack badly."""

    def test_two_kilobytes(self) -> None:
        """A 2 KB message full of paths and names is redacted well under a millisecond."""
        text = (
            "Processing sub-01 in /home/alice/data/bids/sub-01/anat on node17 for alice; "
            "nipype.workflow INFO: node fmriprep_wf.single_subject_01_wf finished. "
        ) * 14
        text = text[:2048]
        runs = []
        for _ in range(50):
            start = time.perf_counter()
            ALICE(text)
            runs.append(time.perf_counter() - start)
        assert statistics.median(runs) < 1e-3

    @pytest.mark.parametrize("unit", ["a", "/", "\\", "@", ".", "1.", "a/", "a@", "~", "=/", " a"])
    def test_pathological(self, unit: str) -> None:
        """100 KB of one repeated unit is redacted in linear time (under half a second)."""
        text = unit * (100_000 // len(unit))
        start = time.perf_counter()
        ALICE(text)
        assert time.perf_counter() - start < 0.5
