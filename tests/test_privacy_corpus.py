"""The privacy corpus: realistic identifying strings never survive redaction.

``tests/data/privacy_corpus.json`` holds made-up but realistic identifying strings, by
class: international e-mail addresses, paths under a home directory with spaces, POSIX,
Windows and macOS paths with spaces, paths in other scripts, provider tokens, secrets
written in text, and values of environment variables. Each is embedded in realistic log
and exception messages (quoted by ``repr``, inside JSON, at the end of a sentence, in a
command line...) and none of its identifying parts may survive: every one of the
combinations is checked, Hypothesis mixes several in one text, and the same strings go
through a real handler and a local server in every ``message`` mode.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migas_logging import MigasHandler
from migas_logging._redact import (
    PLACEHOLDERS,
    Redactor,
    default_redactor,
    environment_identity,
)
from migas_logging.collector import LocalCollector

PROJECT = "nipreps/migas-logging"
CORPUS_FILE = Path(__file__).parent / "data" / "privacy_corpus.json"


@dataclass(frozen=True)
class Entry:
    """One identifying string of the corpus."""

    kind: str
    text: str  # ``{home}`` stands for the home directory
    parts: tuple[str, ...] = ()  # empty: every run of letters or digits of the text
    env: Mapping[str, str] = field(default_factory=dict)

    def resolved(self, home: str) -> str:
        """The text with the home directory put in."""
        return self.text.replace("{home}", home)

    def identifying(self, home: str) -> list[str]:
        """What must not survive: the given parts, or every run of 3+ letters or digits
        (2+ outside ASCII, where names are often two characters long)."""
        if self.parts:
            return list(self.parts)
        runs = re.findall(r"[^\W_]{2,}", self.resolved(home))
        return [r for r in runs if len(r) >= 3 or not r.isascii()]


def load_corpus() -> list[Entry]:
    """Every entry of the corpus file, in file order."""
    raw = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    entries = []
    for kind, items in raw["classes"].items():
        for item in items:
            if isinstance(item, str):
                entries.append(Entry(kind, item))
            else:
                entries.append(
                    Entry(kind, item["text"], tuple(item.get("parts", ())), item.get("env", {}))
                )
    return entries


def load_known_gaps() -> list[Entry]:
    """The strings that still leak (see the corpus file), as entries of kind 'gap'."""
    raw = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    return [Entry("gap", item["text"], tuple(item["parts"])) for item in raw["known_gaps"]]


CORPUS = load_corpus()
KNOWN_GAPS = load_known_gaps()
KINDS = sorted({e.kind for e in CORPUS})
CORPUS_ENV = {k: v for e in CORPUS for k, v in e.env.items()}

# Who runs the program: the variables a default redactor would read, on three systems.
IDENTITIES: dict[str, dict[str, str]] = {
    "linux": {"HOME": "/home/jroe", "USER": "jroe", "HOSTNAME": "node17.cluster.example.edu"},
    "macos": {"HOME": "/Users/Jane Doe", "USER": "janedoe", "HOST": "Janes-MacBook-Pro.local"},
    "windows": {"HOME": "C:\\Users\\Jane Doe", "USERNAME": "Jane Doe", "USERDOMAIN": "CLINIC"},
}


def redactor_for(identity: Mapping[str, str]) -> Redactor:
    """The redactor that :func:`default_redactor` builds in that environment (plus the
    corpus's variables), without touching this process's environment."""
    found = environment_identity({**identity, **CORPUS_ENV})
    return Redactor(
        home=identity["HOME"], user=found.users, host=found.hosts, secrets=found.secrets
    )


REDACTORS = {name: redactor_for(identity) for name, identity in IDENTITIES.items()}

# Realistic places for an identifying string in a log or exception message.
TEMPLATES: dict[str, Callable[[str], str]] = {
    "plain": lambda x: f"could not load {x}",
    "comma": lambda x: f"could not load {x}, retrying in 5 s",
    "sentence": lambda x: f"could not load {x}.",
    "errno": lambda x: f"[Errno 2] No such file or directory: {x!r}",
    "command": lambda x: (
        f"Command '['convert', {x!r}, '--out', 'out.nii']' returned non-zero exit status 1."
    ),
    "alone": lambda x: x,
    "assignment": lambda x: f"input={x} mode=fast",
    "parenthesised": lambda x: f"skipped (from {x})",
    "json": lambda x: json.dumps({"file": x, "ok": False}, ensure_ascii=False),
    "colon": lambda x: f"step 3 of 7: {x}: done",
    "traceback": lambda x: (
        f'Traceback (most recent call last):\n  File "{x}", line 3, in <module>'
    ),
    "tab": lambda x: f"{x}\tsize=3",
    "double quoted": lambda x: f'open "{x}" failed',
    "twice": lambda x: f"copying {x} to {x} again",
}


def _without_placeholders(text: str) -> str:
    for placeholder in PLACEHOLDERS.values():
        text = text.replace(placeholder, " ")
    return text


def survivors(result: str, entry: Entry, home: str, context: str) -> list[str]:
    """The identifying parts of ``entry`` still in ``result`` (case-insensitive).

    Parts that the surrounding ``context`` (template and filler) holds anyway are not
    looked for: they would be found whatever the redactor did.
    """
    found = _without_placeholders(result).casefold()
    context = context.casefold()
    return [
        part
        for part in entry.identifying(home)
        if part.casefold() in found and part.casefold() not in context
    ]


def _context(template: Callable[[str], str]) -> str:
    """The template's own words (what it writes around the item)."""
    return template("\x00")


class TestCorpus:
    """Every corpus string, in every template, for every identity: nothing survives."""

    def test_corpus_is_broad(self) -> None:
        """Each class the issue asks for is there, with several realistic strings."""
        counts = {kind: sum(e.kind == kind for e in CORPUS) for kind in KINDS}
        assert {
            "email_international",
            "environment_values",
            "paths_home_with_spaces",
            "paths_macos",
            "paths_posix_with_spaces",
            "paths_unicode",
            "paths_windows",
            "provider_tokens",
            "secrets_in_text",
        } == set(counts)
        assert all(count >= 6 for count in counts.values()), counts

    @pytest.mark.parametrize("kind", KINDS)
    def test_nothing_survives(self, kind: str) -> None:
        """All combinations of one class: identity x string x template."""
        failures = []
        for identity_name, identity in IDENTITIES.items():
            redact, home = REDACTORS[identity_name], identity["HOME"]
            for entry in (e for e in CORPUS if e.kind == kind):
                for template_name, template in TEMPLATES.items():
                    text = template(entry.resolved(home))
                    result = redact(text)
                    left = survivors(result, entry, home, _context(template))
                    if left:
                        failures.append((identity_name, template_name, text, result, left))
        assert [] == failures

    @pytest.mark.parametrize("gap", KNOWN_GAPS, ids=[g.text for g in KNOWN_GAPS])
    @pytest.mark.xfail(strict=True, reason="a documented gap of redaction")
    def test_known_gaps_still_leak(self, gap: Entry) -> None:
        """The documented gaps: when one is fixed, this fails and it joins the corpus."""
        home = IDENTITIES["linux"]["HOME"]
        text = TEMPLATES["plain"](gap.resolved(home))
        assert [] == survivors(REDACTORS["linux"](text), gap, home, "")

    @pytest.mark.parametrize("identity", sorted(IDENTITIES))
    def test_json_stays_valid(self, identity: str) -> None:
        """JSON text (``message="json"``) holding corpus strings is still valid JSON."""
        home = IDENTITIES[identity]["HOME"]
        for entry in CORPUS:
            value = entry.resolved(home)
            for end in ("", " and more", "\\"):
                text = json.dumps({"message": f"load {value}{end}", "where": value})
                assert isinstance(json.loads(REDACTORS[identity](text)), dict), text

    def test_check_catches_a_leak(self) -> None:
        """Self-test: without redaction, or without the environment, strings survive."""
        entry = next(e for e in CORPUS if e.text.startswith("{home}/Documents/Patient"))
        home = IDENTITIES["linux"]["HOME"]
        text = TEMPLATES["plain"](entry.resolved(home))
        assert {"Patient", "Records", "John", "Doe"} <= set(survivors(text, entry, home, ""))
        env_entry = next(e for e in CORPUS if "SSHPASS" in e.env)
        blind = Redactor(home=home)  # knows nothing of the environment
        assert ["correct-horse-battery"] == survivors(blind(env_entry.text), env_entry, home, "")


# --- mixed texts ----------------------------------------------------------------------

FILLER = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
    max_size=12,
)
JOINERS = st.sampled_from([" ", "; ", ". ", "\n", " | ", ": ", " -> ", "\t"])


@st.composite
def mixed_texts(draw: st.DrawFn) -> tuple[str, str, list[tuple[Entry, str]]]:
    """An identity, and a text mixing 1 to 3 corpus strings in templates and filler."""
    identity = draw(st.sampled_from(sorted(IDENTITIES)))
    home = IDENTITIES[identity]["HOME"]
    chosen = draw(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=3))
    pieces: list[str] = []
    context = []
    for entry in chosen:
        template = TEMPLATES[draw(st.sampled_from(sorted(TEMPLATES)))]
        filler = draw(FILLER)
        pieces += [filler, draw(JOINERS), template(entry.resolved(home)), draw(JOINERS)]
        context += [filler, _context(template)]
    last = draw(FILLER)
    pieces.append(last)
    context.append(last)
    return identity, "".join(pieces), [(e, " ".join(context)) for e in chosen]


class TestMixed:
    """Several corpus strings in one text, with filler around them."""

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(mixed_texts())
    def test_nothing_survives(self, case: tuple[str, str, list[tuple[Entry, str]]]) -> None:
        """Whatever surrounds them, no identifying part of any string survives."""
        identity, text, entries = case
        home = IDENTITIES[identity]["HOME"]
        result = REDACTORS[identity](text)
        for entry, context in entries:
            # a word that is identifying in one string may be plain, kept text in another
            # of the same case ('clinic' as a user name, and as a database name): only
            # what no other string holds as ordinary text must be gone
            others = " ".join(e.text for e, _ in entries if e is not entry)
            left = [part for part in survivors(result, entry, home, context) if part not in others]
            assert [] == left, (text, result)


# --- through a real handler and a local server -----------------------------------------

# The log call's own template: its arguments are the corpus string.
LOG_FORMATS = ["loading %s failed", "%s", "step 2: %r: done", "could not open %s."]


@pytest.fixture
def linux_identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """This process runs as the made-up Linux user, with the corpus's variables set."""
    identity = IDENTITIES["linux"]
    for name in ("LOGNAME", "USERNAME", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**identity, **CORPUS_ENV}.items():
        monkeypatch.setenv(name, value)
    default_redactor.cache_clear()
    yield identity
    default_redactor.cache_clear()


@pytest.mark.parametrize("mode", ["template", "formatted", "json", "none"])
def test_nothing_leaves_over_http(mode: str, linux_identity: dict[str, str]) -> None:
    """Corpus strings as log arguments, named extras and exception messages: in every
    ``message`` mode, no stored breadcrumb and no request body holds any of them."""
    home = linux_identity["HOME"]
    templates = list(TEMPLATES.values())
    log = logging.getLogger(f"corpus.{mode}")
    log.propagate = False
    with LocalCollector(register=(PROJECT,)) as collector:
        handler = MigasHandler(
            PROJECT,
            "1.0.0",
            endpoint=collector.url,
            excepthook=False,
            message=mode,  # type: ignore[arg-type]
            extras=["where"],
            fold_window=0,
            rate_limit=None,
        )
        log.addHandler(handler)
        try:
            for i, entry in enumerate(CORPUS):
                text = entry.resolved(home)
                try:
                    raise ValueError(templates[i % len(templates)](text))
                except ValueError:
                    log.exception(LOG_FORMATS[i % len(LOG_FORMATS)], text, extra={"where": text})
            handler.flush(60)
            rows = collector.wait_for(len(CORPUS), timeout=60)
            bodies = [r.json() for r in collector.requests() if r.path == "/api/breadcrumb"]
        finally:
            log.removeHandler(handler)
            handler.close()
    assert len(CORPUS) == len(rows)
    # what the log calls themselves write: formats, exception type, frame names
    context = " ".join(
        [*LOG_FORMATS, log.name, "ValueError", __name__, "test_nothing_leaves_over_http"]
    )
    context += " " + " ".join(_context(t) for t in templates)
    failures = []
    for entry, row in zip(CORPUS, rows, strict=True):
        stored = " ".join(str(row[f]) for f in ("status_desc", "error_type", "error_desc"))
        left = survivors(stored, entry, home, context)
        if left:
            failures.append((entry.text, stored, left))
    assert [] == failures
    # the bytes sent, request by request (one per record: no retry on a healthy server)
    assert len(CORPUS) == len(bodies)
    for entry, body in zip(CORPUS, bodies, strict=True):
        sent = json.dumps(body["proc"], ensure_ascii=False)
        assert [] == survivors(sent, entry, home, context + " status desc"), sent
