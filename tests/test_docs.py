"""The documentation's code runs, and says what the code does.

Every fenced ``python`` block of ``docs/*.md`` is run, in a subprocess, in the order of
its page, in a temporary directory shared by the page's blocks, with ``MIGAS_ENDPOINT``
pointing at a local collector that accepts every ``owner/repo`` the page mentions.
HTML comments right before a block steer what happens to it:

- ``<!-- skip: reason -->``: not run (a fragment, or it needs something absent);
- ``<!-- file: NAME -->``: written to ``NAME`` in the page's directory (then run, if
  Python);
- ``<!-- exit: N -->``: the expected exit status (default 0);
- ``<!-- output -->``: stdout must equal the ``text`` block that follows (``...`` in a
  line matches anything);
- ``<!-- breadcrumbs: R F -->``: the statuses the collector stored for this block, in
  order (nothing after the colon: none);
- ``<!-- stored: TEXT -->``: TEXT appears in what the collector stored for this block;
- ``<!-- pytest -->``: the block is a test module, run with pytest (the plugin's
  fixtures work);
- ``<!-- shell -->``: a ``bash`` block that is run, with ``http://127.0.0.1:8080``
  replaced by the collector's URL.

Blocks that only include an example file (``--8<--``) are skipped: tests/test_examples.py
runs the examples. The page structure is checked too: every page is in the ``nav`` of
``mkdocs.yml``, every relative link points at a page, every public module has an API
page, and getting-started.md gives the README's commands and works against a real
``migas-logging serve``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from migas_logging.collector import LocalCollector, free_port, release_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))
LOCAL_URL = "http://127.0.0.1:8080"

_FENCE = re.compile(
    r"^(?P<fence>`{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_COMMENT = re.compile(r"^<!--\s*(?P<name>[a-z]+)\s*(?::\s*(?P<value>.*?))?\s*-->$")
_PROJECT = re.compile(r"(?<![\w./-])([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?![\w/])")


@dataclass
class Block:
    """One fenced code block of a page, with the comments that precede it."""

    page: str
    line: int
    lang: str
    body: str
    directives: dict[str, str] = field(default_factory=dict)
    stored: list[str] = field(default_factory=list)
    expected_output: str | None = None

    @property
    def where(self) -> str:
        """``page.md:LINE``, for messages."""
        return f"{self.page}:{self.line}"


def parse(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with their directives and expected outputs."""
    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        info = match["info"].strip()
        block = Block(page.name, line, info.split()[0] if info else "", match["body"])
        index = line - 2
        while index >= 0 and (not lines[index].strip() or _COMMENT.match(lines[index].strip())):
            comment = _COMMENT.match(lines[index].strip())
            if comment:
                name, value = comment["name"], (comment["value"] or "").strip()
                if name == "stored":
                    block.stored.append(value)
                else:
                    block.directives[name] = value
            index -= 1
        blocks.append(block)
    paired: list[Block] = []
    skip_next = False
    for i, block in enumerate(blocks):
        if skip_next:
            skip_next = False
            continue
        if "output" in block.directives:
            message = f"{block.where}: <!-- output --> needs a ```text block right after it"
            assert i + 1 < len(blocks), message
            assert blocks[i + 1].lang == "text", message
            block.expected_output = blocks[i + 1].body
            skip_next = True
        paired.append(block)
    return paired


def projects_of(page: Path) -> set[str]:
    """Every ``owner/repo``-looking name of a page (registering extra names is harmless)."""
    return {"nipreps/migas-logging", *_PROJECT.findall(page.read_text(encoding="utf-8"))}


def block_env(endpoint: str, workdir: Path) -> dict[str, str]:
    """A clean environment: our collector, a private home, no inherited MIGAS_* or pytest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGAS_", "PYTEST_"))}
    env.update(
        MIGAS_ENDPOINT=endpoint,
        XDG_CONFIG_HOME=str(workdir / "config"),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def same_output(expected: str, actual: str) -> bool:
    """Line by line, trailing spaces ignored; ``...`` in an expected line matches anything."""
    want = expected.strip("\n").splitlines()
    got = actual.strip("\n").splitlines()
    if len(want) != len(got):
        return False
    for wanted, line in zip(want, got, strict=True):
        w, g = wanted.rstrip(), line.rstrip()
        if "..." in w:
            pattern = ".*".join(re.escape(part) for part in w.split("..."))
            if not re.fullmatch(pattern, g):
                return False
        elif w != g:
            return False
    return True


def command_for(block: Block, workdir: Path, url: str) -> list[str] | None:
    """Write the block where it belongs; return the command that runs it, if any."""
    name = block.directives.get("file")
    if block.lang == "python" and "pytest" in block.directives:
        path = workdir / f"test_block_{block.line}.py"
        path.write_text(block.body, encoding="utf-8")
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name]
    if name:
        (workdir / name).write_text(block.body, encoding="utf-8")
    if block.lang == "python":
        path = workdir / (name or f"block_{block.line}.py")
        path.write_text(block.body, encoding="utf-8")
        return [sys.executable, path.name]
    if block.lang == "bash" and "shell" in block.directives:
        return ["bash", "-e", "-c", block.body.replace(LOCAL_URL, url)]
    return None


def runnable(block: Block) -> bool:
    """Whether the block is run (or written) at all."""
    if "skip" in block.directives:
        return False
    if block.body.lstrip().startswith("--8<--"):
        return False  # an included example: tests/test_examples.py runs it
    return "file" in block.directives or block.lang == "python" or "shell" in block.directives


def run_block(block: Block, collector: LocalCollector, workdir: Path) -> None:
    """Run one block and check everything its directives promise."""
    command = command_for(block, workdir, collector.url)
    if command is None:
        return
    bin_dir = str(Path(sys.executable).parent)  # the migas-logging command of this venv
    env = block_env(collector.url, workdir)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    seen = len(collector.requests())
    last_seq = max((r["seq"] for r in collector.breadcrumbs()), default=0)
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    report = f"{block.where}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    expected_exit = int(block.directives.get("exit", "0") or 0)
    assert expected_exit == result.returncode, report
    if block.expected_output is not None:
        assert same_output(block.expected_output, result.stdout), (
            f"{report}\n--- the page says\n{block.expected_output}"
        )
    if "breadcrumbs" in block.directives or block.stored:
        posts = [
            r for r in collector.requests()[seen:] if r.path.partition("?")[0] == "/api/breadcrumb"
        ]
        new: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # ingestion follows the 202 answer
            new = [r for r in collector.breadcrumbs() if r["seq"] > last_seq]
            if len(new) >= len(posts):
                break
            time.sleep(0.02)
        if "breadcrumbs" in block.directives:
            statuses = block.directives["breadcrumbs"].split()
            assert statuses == [r["status"] for r in new], f"{report}\n--- stored\n{new}"
            assert len(statuses) == len(posts), report
        for text in block.stored:
            assert text in json.dumps(new, ensure_ascii=False).replace('\\"', '"'), (
                f"{block.where}: {text!r} not in what was stored: {new}"
            )
    assert [] == collector.lost(), report


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    """Every runnable block of the page runs and does what the page says."""
    blocks = [b for b in parse(page) if runnable(b)]
    with LocalCollector(register=tuple(sorted(projects_of(page)))) as collector:
        for block in blocks:
            run_block(block, collector, tmp_path)


def test_the_directives_are_understood() -> None:
    """A misspelt directive would silently skip a check: every one must be known."""
    known = {"skip", "file", "exit", "output", "breadcrumbs", "stored", "pytest", "shell"}
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            comment = _COMMENT.match(line.strip())
            if comment:
                assert comment["name"] in known, f"{page.name}:{number}: {line}"


def test_the_runner_checks_what_it_claims(tmp_path: Path) -> None:
    """The runner fails a block whose output or breadcrumbs differ from the page."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- output -->\n<!-- breadcrumbs: F -->\n```python\nprint('a')\n```\n\n"
        "```text\nb\n```\n",
        encoding="utf-8",
    )
    (block,) = parse(page)
    with LocalCollector() as collector:
        with pytest.raises(AssertionError, match="the page says"):
            run_block(block, collector, tmp_path)
        block.expected_output = "a\n"
        with pytest.raises(AssertionError):
            run_block(block, collector, tmp_path)  # no breadcrumb was sent
    assert same_output("C Completed [...]\n", "C Completed [sent 2, folded 0]")
    assert not same_output("C Completed\n", "C Completed [sent 2]")


def test_every_page_is_in_the_nav() -> None:
    """mkdocs.yml lists every page of docs/, and only pages that exist."""

    class Loader(yaml.SafeLoader):
        """mkdocs.yml's tags (``!relative``) read as plain values."""

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)

    def entries(nav: Any) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [e for item in nav for e in entries(item)]
        if isinstance(nav, dict):
            return [e for value in nav.values() for e in entries(value)]
        return []

    listed = entries(config["nav"])
    pages = sorted(
        str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_griffe" not in p.parts
    )
    assert sorted(listed) == pages


def test_relative_links_point_at_pages() -> None:
    """Every relative Markdown link of docs/ names an existing page (mkdocs checks anchors)."""
    link = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
    for page in DOCS.rglob("*.md"):
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        for match in link.finditer(text):
            target = match["target"]
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).is_file(), f"{page.relative_to(DOCS)}: {target}"


def test_every_public_module_has_an_api_page() -> None:
    """The API reference renders each public module with mkdocstrings."""
    rendered = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
    for module in (
        "migas_logging",
        "migas_logging.handler",
        "migas_logging.excepthook",
        "migas_logging.processors",
        "migas_logging.query",
        "migas_logging.config",
        "migas_logging.exceptions",
        "migas_logging._audit",
        "migas_logging.collector",
        "migas_logging.pytest_plugin",
        "migas_logging.cli",
        "migas_logging.worker",
        "migas_logging.client",
        "migas_logging.classify",
        "migas_logging.spool",
        "migas_logging.budget",
    ):
        assert re.search(rf"^::: {re.escape(module)}$", rendered, re.MULTILINE), module


def test_getting_started_gives_the_readme_commands() -> None:
    """The two commands of the README are the first ones of getting-started.md."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = next(b for b in parse(DOCS / "getting-started.md") if b.lang == "bash")
    commands = [ln for ln in first.body.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(commands) == 2
    for command in commands:
        assert command in readme, command


def test_getting_started_against_migas_logging_serve(tmp_path: Path) -> None:
    """A reader's path: `migas-logging serve --register`, mytool.py, then the check."""
    blocks = parse(DOCS / "getting-started.md")
    serve = next(b for b in blocks if b.body.startswith("migas-logging serve"))
    argv = serve.body.split("#")[0].split()
    assert argv[:2] == ["migas-logging", "serve"]
    executable = shutil.which("migas-logging", path=str(Path(sys.executable).parent))
    assert executable is not None
    port = release_port(free_port())  # for a subprocess to listen on
    process = subprocess.Popen(
        [executable, *argv[1:], "--port", str(port)],
        env=block_env("", tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = "".join(process.stdout.readline() for _ in range(4))
        if not banner:
            pytest.fail(f"migas-logging serve did not start: {process.communicate()[1]}")
        expected_banner = blocks[blocks.index(serve) + 1]
        url = f"http://127.0.0.1:{port}"
        assert same_output(expected_banner.body.replace(LOCAL_URL, url), banner), banner
        # The page's own blocks, against that server (not an in-process collector).
        for block in (b for b in blocks if b.lang == "python" and runnable(b)):
            command = command_for(block, tmp_path, url)
            assert command is not None
            result = subprocess.run(
                command,
                cwd=tmp_path,
                env=block_env(url, tmp_path),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert 0 == result.returncode, result.stderr
            if block.expected_output is not None:
                assert same_output(block.expected_output, result.stdout), result.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_the_griffe_extension_turns_sphinx_markup_into_markdown() -> None:
    """The API pages' docstrings lose their Sphinx roles and directives (docs extra only)."""
    pytest.importorskip("griffe")
    sys.path.insert(0, str(DOCS / "_griffe"))
    try:
        import sphinx_roles
    finally:
        sys.path.remove(str(DOCS / "_griffe"))
    text = sphinx_roles.convert(
        "See :class:`~migas_logging.worker.Stats` and :func:`logging.getLogger`::\n\n"
        "    code\n\n.. versionadded:: 0.1.0"
    )
    assert (
        '<autoref identifier="migas_logging.worker.Stats" optional><code>Stats</code></autoref>'
        in text
    )
    assert "`logging.getLogger()`:\n" in text
    assert "*Added in version 0.1.0.*" in text
    assert ":class:" not in text
