"""Redactor: nothing that identifies a person survives, readable placeholders instead.

Hand-written cases pin the behaviour of each kind of item (and what is deliberately left
alone); Hypothesis properties embed generated home directories, user and host names,
secrets, paths (with spaces too), e-mail and IP addresses and URLs in text and check that
none survives. The realistic corpus, by class, is in ``test_privacy_corpus.py``.
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
from migas_logging._redact import (
    PLACEHOLDERS,
    Redactor,
    default_redactor,
    environment_identity,
    looks_secret,
)

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


class TestPathsWithSpaces:
    """A path with spaces goes as a whole: quoted to its closing quote, unquoted by rules."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # issue 12's example, under a home that the redactor knows and one it does not
            ("load /home/alice/Documents/Patient Records/John Doe.nii", "load <path>"),
            ("load /data/Patient Records/John Doe.nii now", "load <path> now"),
            ("load /data/Patient Records/John Doe.nii.", "load <path>."),
            # a later word holds a separator: the path goes on over the spaces
            (r"C:\Users\jane doe\Documents\x.txt was read", "<path> was read"),
            (r"\\srv\share\Patient Records\x y.dcm", "<path>"),
            ("/Volumes/Backup Disk/Jörg/x", "<path>"),
            ("C:\\Documents and Settings\\John Smith\\x", "<path>"),
            ("/srv/Study Data/O'Connor Sean/x.csv", "<path>"),
            ("/data/MRI Exports/Doe, John/series 3.dcm", "<path>"),
            ("/home/alice/Dropbox (Personal)/a b/c.txt", "<path>"),
            # the last segment takes words up to one with an extension, or capitalised ones
            ("/data/x/scan of John Doe.nii failed", "<path> failed"),
            ("/Users/Jane Doe is missing", "<path> is missing"),
            ("/data/患者/山田 太郎", "<path>"),
            # in quotes, to the closing quote
            ("No such file: '/data/Patient Records/John Doe'", "No such file: '<path>'"),
            ('open "C:\\Users\\jane doe\\x" failed', 'open "<path>" failed'),
            ('"/srv/Mary O\'Brien/notes"', '"<path>"'),
            ("'sub 01/My Data/x.nii'", "'<path>'"),
            # brackets and punctuation that the path does not own are given back
            ("skipped (from C:\\Users\\Jane Doe\\x.pdf).", "skipped (from <path>)."),
            ("x (/data/Study (2)/a b/c.nii) y", "x (<path>) y"),
            # after a secret-looking key, the path still goes as a whole
            ("PWD: /home/alice/Patient Records/John Doe.nii", "PWD: <path>"),
            ("password: /data/x y/z.nii", "password: <path>"),
            # JSON text stays valid: an escaped quote is not part of the path
            ('{"m": "open \\"/a b/c.nii\\" now"}', '{"m": "open \\"<path>\\" now"}'),
        ],
    )
    def test_redacted(self, text: str, expected: str) -> None:
        """Every word of the path goes; the words around it stay."""
        assert expected == Redactor(home="/home/alice")(text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("copy /a/b to /c/d now", "copy <path> to <path> now"),
            ("(/a/b, /c)", "(<path>, <path>)"),
            ("~/x and ~bob/y", "<path> and <path>"),
            ("read /data/x.nii in 3.5 s", "read <path> in 3.5 s"),
            ("see /a/b https://x.org/y", "see <path> <url>"),
        ],
    )
    def test_words_around_stay(self, text: str, expected: str) -> None:
        """Only words that a separator, an extension or a capital tie to the path go."""
        assert expected == Redactor()(text)


class TestAddresses:
    """URLs, e-mail and IPv4 addresses."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("see https://example.org/a?b=1). Then", "see <url>). Then"),
            ("git+ssh://git@host/x", "<url>"),
            ("mail alice.smith@uni.edu now", "mail <email> now"),
            ("bob@node17 and x@10.1.1.1", "<email> and <email>"),
            # domains starting with a digit (issue 12), internationalised ones, punycode
            ("jane@163.com x@126.com a@1und1.de", "<email> <email> <email>"),
            (
                "jörg@bücher.de 用户@例子.广告 jane@xn--bcher-kva.example",
                "<email> <email> <email>",
            ),
            ("राम@मोहन.भारत, ivan@почта.рф", "<email>, <email>"),
            ("jane+mri-study@gmail.com sean.o'connor@example.ie", "<email> <email>"),
            ('"john smith"@example.org', "<email>"),
            ('{"to": "\\"john smith\\"@example.org"}', '{"to": "<email>"}'),
            ("from 10.0.0.12:8080", "from <ip>:8080"),
            ("(192.168.1.1)", "(<ip>)"),
        ],
    )
    def test_redacted(self, text: str, expected: str) -> None:
        """Each address becomes its placeholder."""
        assert Redactor()(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "version 1.2.3",
            "v1.2.3.4",
            "256.1.1.1",
            "1.2.3.4.5",
            "numpy@1.26.4",
            "torch@2.1.0+cu118",
            "@property",
        ],
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


class TestSecretShapes:
    """Provider tokens, long mixed-case words and values after secret-looking keys."""

    @pytest.mark.parametrize(
        "token",
        [
            "ghp_Zq3Lm8Rt5Vx2Nb7Kc4Wd9Hf6Jg1Ps0Ya2Eu",
            "github_pat_11ABCDEFG0aBcDeFgHiJkLm_nOpQrStUvWxYz0123456789",
            "glpat-Xy7aB2cD9eF4gH1iJ6kL",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyB3x-Q8hT2mLp9vWc4Zr7Nk1Yd6Fu0Ea5G",
            "ya29.a0AfH6SMBx7Lq3pZ9vRt2Wm8Kc5Nb1Yd4Hf6Jg0Ps",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.Qm9ndXNTaWduYXR1cmU",
            "sk-proj-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv3Wx5Yz7",
            "sk_live_51HqZx2KdL9mNpQrStUvWxYz",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
            "npm_Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv3Wx5",
            "SG.Ab3Cd5Ef7Gh9Ij1Kl3Mn5O.Pq7Rs9Tu1Vw3Xy5Za7Bc9De1Fg3Hi5Jk7Lm9No1Pq",
            "wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        ],
    )
    def test_tokens(self, token: str) -> None:
        """A token of a common provider is replaced wherever it stands."""
        assert "use <redacted> now" == Redactor()(f"use {token} now")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("password=hunter2 user=x", "password=<redacted> user=x"),
            ("MYSQL_PWD=Tr0ub4dor3 mysql", "MYSQL_PWD=<redacted> mysql"),
            (
                "?access_token=abc123&api_key=zzz&page=2",
                "?access_token=<redacted>&api_key=<redacted>&page=2",
            ),
            ('{"password": "a b c"}', '{"password": "<redacted>"}'),
            ('{\\"secret\\": \\"a b\\"}', '{\\"secret\\": \\"<redacted>\\"}'),
            ("client_secret: 'x1'", "client_secret: '<redacted>'"),
            ("token: 9f8e7d", "token: <redacted>"),
            ("--password hunter2 --out x", "--password <redacted> --out x"),
            ("['mysql', '--password', 'hunter2']", "['mysql', '--password', '<redacted>']"),
            ("Authorization: Bearer abc.def", "Authorization: <redacted>"),
            ("Authorization: Basic amFuZTpo", "Authorization: <redacted>"),
            ("sent Bearer abcdef123456", "sent Bearer <redacted>"),
        ],
    )
    def test_values_after_keys(self, text: str, expected: str) -> None:
        """key=value, quoted values, --key value and Authorization headers."""
        assert expected == Redactor()(text)

    @pytest.mark.parametrize(
        "text",
        [
            "app.auth: failed login",
            "tokens: 512, keys: 3",
            "tokenizer=fast keyword=x",
            "task-0123456789abcdefghijklmn",
            "commit 3f2a9c1e8b7d6f5a4c3b2a1f0e9d8c7b6a5f4e3d",
            "fmriprep_wf.single_subject_01_wf.anat_preproc_wf",
            "sub-01_ses-01_task-rest_acq-mprage_run-1_T1w",
        ],
    )
    def test_look_alikes_kept(self, text: str) -> None:
        """Plain words after a key, plurals, hashes and long identifiers stay readable."""
        assert text == Redactor()(text)


class TestEnvironment:
    """What the environment reveals: secrets by name or by shape, names of people and hosts."""

    def test_secret_names(self) -> None:
        """MYSQL_PWD, SSHPASS and GITHUB_PAT (issue 12) are secret names; PWD is not."""
        found = environment_identity(
            {
                "MYSQL_PWD": "hunter2x",
                "SSHPASS": "correct-horse",
                "GITHUB_PAT": "pat-7f3a9b",
                "GITHUB_PATH": "/tmp/gh-path",
                "PWD": "/home/alice/project",
                "OLDPWD": "/home/alice",
                "SHORT_TOKEN": "abc",
            }
        )
        assert ["hunter2x", "correct-horse", "pat-7f3a9b"] == found.secrets

    def test_secret_shapes_and_url_passwords(self) -> None:
        """Any variable whose value looks secret, and the password of any URL."""
        found = environment_identity(
            {
                "APP_SETTING": "q7Rt2LmX9vBn4KpZ",
                "DATABASE_URL": "postgresql://app:Zx9-Qw8-Er7@db/clinic",
                "TERM": "xterm-256color",
            }
        )
        assert ["q7Rt2LmX9vBn4KpZ", "Zx9-Qw8-Er7"] == found.secrets

    def test_people_and_hosts(self) -> None:
        """Login names, every word of a full name, and machine names."""
        found = environment_identity(
            {
                "USER": "jroe",
                "SLURM_JOB_USER": "mgarcia",
                "GIT_AUTHOR_NAME": "Jane Q. Roe",
                "COMPUTERNAME": "DESKTOP-7Q2K9PL",
                "SLURM_SUBMIT_HOST": "login01.cluster",
            }
        )
        assert ["jroe", "mgarcia", "Jane", "Q", "Roe"] == found.users
        assert ["DESKTOP-7Q2K9PL", "login01.cluster"] == found.hosts

    def test_never_raises(self) -> None:
        """Values that are not str are ignored; a broken mapping gives nothing."""

        class Broken(dict[str, str]):
            def items(self) -> object:  # type: ignore[override]
                raise RuntimeError("boom")

        assert [] == environment_identity({"TOKEN": 1234567}).secrets  # type: ignore[dict-item]
        assert ([], [], []) == tuple(environment_identity(Broken()))

    @pytest.mark.parametrize(
        "value",
        [
            "q7Rt2LmX9vBn4KpZ",
            "0123456789abcdef0123456789abcdef",
            "9b2f3c1e-6d4a-4b8e-9f0a-1c2d3e4f5a6b",
            "AKIAIOSFODNN7EXAMPLE",
        ],
    )
    def test_looks_secret(self, value: str) -> None:
        """Random-looking values are secrets wherever they appear."""
        assert looks_secret(value)

    @pytest.mark.parametrize(
        "value",
        [
            "xterm-256color",
            "x86_64-pc-linux-gnu",
            "en_US.UTF-8",
            "/usr/local/bin:/usr/bin",
            "Europe/Amsterdam",
            "nipreps/fmriprep",
            "https://example.org/a1b2c3d4e5f6",
            "not a secret at all 123",
        ],
    )
    def test_looks_ordinary(self, value: str) -> None:
        """Words, versions, platforms, paths and URLs are not (their shapes are redacted)."""
        assert not looks_secret(value)


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
        monkeypatch.setenv("SSHPASS", "correct-horse")
        monkeypatch.setattr(getpass, "getuser", lambda: "zelda")
        monkeypatch.setattr(socket, "gethostname", lambda: "hyrule.lab.example")
        redact = default_redactor()
        assert redact is default_redactor()
        text = (
            "zelda on hyrule.lab.example (hyrule) used tok-1234567890 and abc in /home/zelda "
            "via sshpass -p correct-horse"
        )
        assert redact(text) == (
            "<user> on <host> (<host>) used <redacted> and abc in <path> via sshpass -p <redacted>"
        )

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


# Words of a file or folder name with spaces: letters only, never a placeholder's word.
NAME_WORD = _word(LOWER + LOWER.upper(), LOWER, 2, 8).filter(
    lambda w: (
        not any(w.lower() in p for p in PLACEHOLDERS.values())
        and w.lower() not in {"cannot", "read"}
    )
)


@st.composite
def spaced_path(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A path whose folder and file names hold spaces, and the words it is made of."""
    root, sep = draw(
        st.sampled_from(
            [("/data", "/"), ("/Users", "/"), ("C:\\Users", "\\"), ("\\\\srv\\share", "\\")]
        )
    )
    folders = draw(st.lists(st.lists(NAME_WORD, min_size=1, max_size=4), min_size=1, max_size=3))
    stem = draw(st.lists(NAME_WORD, min_size=1, max_size=3))
    extension = draw(st.sampled_from(["nii", "nii.gz", "csv", "pdf", "dcm"]))
    names = [" ".join(f) for f in folders] + [" ".join(stem) + "." + extension]
    words = [w for f in folders for w in f] + stem
    return root + sep + sep.join(names), [w for w in words if len(w) >= 3]


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
    @given(spaced_path(), st.booleans(), FILLER)
    def test_paths_with_spaces(
        self, path: tuple[str, list[str]], quoted: bool, after: str
    ) -> None:
        """No word of a path with spaces survives, quoted or followed by other words."""
        text, words = path
        shown = repr(text) if quoted else text
        result = Redactor()(f"cannot read {shown} {after.lower()}")
        for word in words:
            assert not _has_word(word, result), (word, result)


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

    @pytest.mark.parametrize(
        "unit",
        [
            *("a", "/", "\\", "@", ".", "1.", "a/", "a@", "~", "=/", " a"),
            *("'/a ", "/a b", "C:\\a b ", "/x/Y ", '"x"@', "a@1.", " O'", "/a, b", "/a (b"),
            *("-----BEGIN RSA PRIVATE KEY-----", "token: ", "--password ", "Bearer ", "ghp_"),
        ],
    )
    def test_pathological(self, unit: str) -> None:
        """100 KB of one repeated unit is redacted in linear time (under half a second)."""
        text = unit * (100_000 // len(unit))
        start = time.perf_counter()
        ALICE(text)
        assert time.perf_counter() - start < 0.5
