"""Every script of ``examples/`` runs, in a subprocess, against a local collector.

The tests check what the collector stored (statuses, descriptions, exception types,
sessions), not only the exit status: an example whose telemetry silently stopped
working fails here. ``test_every_example_is_tested`` keeps the list complete.
"""

from __future__ import annotations

import getpass
import json
import multiprocessing
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from migas_logging.collector import LocalCollector

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROJECT = "nipreps/migas-logging"

#: The scripts each test below runs; every script of examples/ must be here.
TESTED = {
    "cli_tool.py",
    "service.py",
    "pipeline.py",
    "structlog_app.py",
    "structlog_stdlib.py",
    "config_dict.py",
    "config_yaml.py",
    "config_ini.py",
    "config_code.py",
    "json_audit.py",
    "nipype_tool.py",
}

_REPEATED = re.compile(r" \[repeated (\d+) more times? in [^\]]+\]$")
#: The terminal breadcrumb of a run that ended normally, with the run's accounting.
_COMPLETED = re.compile(r"^Completed \[sent \d+, folded \d+, dropped \d+( \([^)]*\))?\]$")


@pytest.fixture
def collector() -> Any:
    """A local collector that accepts the examples' project."""
    with LocalCollector(register=(PROJECT,)) as running:
        yield running


def example_env(collector: LocalCollector | None, home: Path) -> dict[str, str]:
    """The environment of an example: no MIGAS_* of ours, a private home for the user id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGAS_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["PYTHONUNBUFFERED"] = "1"
    if collector is not None:
        env["MIGAS_ENDPOINT"] = collector.url
    return env


def run(
    name: str, *args: str, collector: LocalCollector | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` to completion."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=example_env(collector, cwd),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored(collector: LocalCollector, expected: int) -> list[dict[str, Any]]:
    """The breadcrumbs of a finished run: exactly ``expected`` were sent, none was lost."""
    posts = [r for r in collector.requests() if r.path.partition("?")[0] == "/api/breadcrumb"]
    assert expected == len(posts), [p.body for p in posts]
    rows = collector.wait_for(expected)
    assert [] == collector.lost()
    return rows


def summary(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(status, status_desc, error_type) of each row."""
    return [(r["status"], r["status_desc"], r["error_type"]) for r in rows]


def test_every_example_is_tested() -> None:
    """Each script in examples/ is run by a test below, and its data files exist."""
    assert TESTED == {p.name for p in EXAMPLES.glob("*.py")}
    assert (EXAMPLES / "logging.yaml").is_file()
    assert (EXAMPLES / "logging.ini").is_file()


@pytest.mark.parametrize("name", sorted(TESTED))
def test_refuses_to_run_without_an_endpoint(name: str, tmp_path: Path) -> None:
    """Without MIGAS_ENDPOINT an example stops at once, sending nothing anywhere."""
    result = run(name, collector=None, cwd=tmp_path)
    assert 0 != result.returncode
    assert "set MIGAS_ENDPOINT to a local collector" in result.stderr
    assert not (tmp_path / "config").exists()  # no user id was even made


class TestCliTool:
    """examples/cli_tool.py: argparse, track=True."""

    def test_a_normal_run(self, collector: LocalCollector, tmp_path: Path) -> None:
        """Started, one R per skipped subject, then Completed, in one session."""
        result = run(
            "cli_tool.py", "sub-01", "missing-02", "sub-03", collector=collector, cwd=tmp_path
        )
        assert 0 == result.returncode, result.stderr
        assert "2 of 3 subjects processed" in result.stdout
        rows = stored(collector, 3)
        assert [("R", "Started"), ("R", "cli_tool: no data for %s; skipped")] == [
            (r["status"], r["status_desc"]) for r in rows[:2]
        ]
        assert "C" == rows[2]["status"]
        assert _COMPLETED.match(rows[2]["status_desc"]), rows[2]["status_desc"]
        assert 1 == len({r["session_id"] for r in rows})
        assert "missing-02" not in json.dumps(rows)

    def test_a_crash(self, collector: LocalCollector, tmp_path: Path) -> None:
        """An uncaught exception: the traceback prints, exit 1, and F is the last crumb."""
        result = run("cli_tool.py", "--crash", "sub-01", collector=collector, cwd=tmp_path)
        assert 1 == result.returncode
        assert "RuntimeError: the tool crashed on purpose" in result.stderr
        rows = stored(collector, 2)
        assert ("R", "Started", None) == summary(rows)[0]
        assert ("F", "Errored", "RuntimeError") == summary(rows)[1]
        assert "crashed on purpose (--crash) | at __main__:main:" in rows[1]["error_desc"]


class TestService:
    """examples/service.py: a loop, stopped by its iteration count or by a signal."""

    def test_iterations_then_completed(self, collector: LocalCollector, tmp_path: Path) -> None:
        """Nine iterations: three warnings folded into one plus a count, then Completed."""
        args = ("--iterations", "9", "--interval", "0.01")
        result = run("service.py", *args, collector=collector, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
        rows = stored(collector, 4)
        assert [
            ("R", "Started"),
            ("R", "service: queue backlog above %d items"),
        ] == [(r["status"], r["status_desc"]) for r in rows[:2]]
        # the suffix says how long the repeats really took (9 iterations of 0.01 s)
        assert re.fullmatch(
            r"service: queue backlog above %d items \[repeated 2 more times in [01] s\]",
            rows[2]["status_desc"],
        ), rows[2]["status_desc"]
        assert "C" == rows[3]["status"]
        assert _COMPLETED.match(rows[3]["status_desc"]), rows[3]["status_desc"]

    @pytest.mark.parametrize(
        ("signum", "terminal"),
        [(signal.SIGTERM, "Terminated (SIGTERM)"), (signal.SIGINT, "Suspended")],
    )
    def test_a_signal_stops_it_gracefully(
        self, collector: LocalCollector, tmp_path: Path, signum: int, terminal: str
    ) -> None:
        """The service's own handler stops the loop; the run ends with S and the reason."""
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "service.py")],
            cwd=tmp_path,
            env=example_env(collector, tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert "ready" == process.stdout.readline().strip()
            collector.wait_for(1)  # Started is in: the handlers are installed
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
        assert 0 == process.returncode, stderr
        assert "service stopping after" in stderr
        rows = collector.wait_for(2)
        assert ("R", "Started") == (rows[0]["status"], rows[0]["status_desc"])
        assert "S" == rows[-1]["status"]
        assert rows[-1]["status_desc"].startswith(terminal)
        assert 1 == sum(r["status"] in "CFS" for r in rows)  # one terminal breadcrumb
        assert [] == collector.lost()


def test_pipeline_workers_report_into_one_session(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """Fork and spawn workers: every record arrives, all in the parent's session."""
    result = run("pipeline.py", "sub-01", "sub-02", "bad-03", collector=collector, cwd=tmp_path)
    assert 0 == result.returncode, result.stderr
    session = re.search(r"^session (\S+)$", result.stdout, re.MULTILINE)
    assert session is not None, result.stdout
    methods = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
    expected = {
        ("R", "pipeline: pipeline started with %d subjects"): 1,
        ("R", "pipeline: subject %s processed without a fieldmap"): 2 * len(methods),
        ("F", "pipeline: subject %s failed quality control"): len(methods),
    }
    deadline = time.monotonic() + 10
    while True:  # repeats in one worker fold into a count: add the counts up
        rows = collector.breadcrumbs()
        events: dict[tuple[str, str], int] = {}
        for row in rows:
            desc, repeated = row["status_desc"], 0
            match = _REPEATED.search(desc)
            if match:
                desc, repeated = desc[: match.start()], int(match.group(1))
            key = (row["status"], desc)
            events[key] = events.get(key, 0) + (repeated or 1)
        if events == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert expected == events
    assert {session.group(1)} == {r["session_id"] for r in rows}
    assert [] == collector.lost()


class TestStructlog:
    """examples/structlog_app.py and structlog_stdlib.py."""

    def test_pure_structlog(self, collector: LocalCollector, tmp_path: Path) -> None:
        """WARNING and above are sent with named extras only; the output is unchanged."""
        result = run("structlog_app.py", collector=collector, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
        rows = stored(collector, 2)
        assert [
            ("R", "structlog_app: step slow [step=registration]", None),
            ("F", "structlog_app: step failed [step=motion]", "StatisticsError"),
        ] == summary(rows)
        assert "mean requires at least one data point" in rows[1]["error_desc"]
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert ["run started", "step slow", "step failed"] == [e["event"] for e in lines]
        assert "sub-01" == lines[1]["subject"]  # rendered as without the processor
        assert "exception" in lines[2]  # format_exc_info still ran after the processor
        assert "sub-0" not in json.dumps(rows)

    def test_structlog_over_stdlib_sends_each_event_once(
        self, collector: LocalCollector, tmp_path: Path
    ) -> None:
        """The processor sends structlog's events, the handler the library's record."""
        result = run("structlog_stdlib.py", collector=collector, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
        rows = stored(collector, 3)
        assert [
            ("R", "app: cache miss", None),
            ("F", "app: lookup failed", "KeyError"),
            ("F", "somelib.io: read failed after %d tries", None),
        ] == summary(rows)
        assert "'duplicate': 2" in result.stderr  # the handler skipped structlog's two
        assert "sub-0" not in json.dumps([r["status_desc"] for r in rows])
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert ["cache miss", "lookup failed", "read failed after 3 tries"] == [
            e["event"] for e in lines
        ]


@pytest.mark.parametrize(
    ("name", "warning"),
    [
        ("config_dict.py", "myapp.pipeline: subject %s has no fieldmap"),
        ("config_yaml.py", "myapp.pipeline: subject %s has no fieldmap [step=fieldmap]"),
        ("config_ini.py", "myapp.pipeline: subject %s has no fieldmap"),
        ("config_code.py", "myapp.pipeline: subject %s has no fieldmap"),
    ],
)
def test_configuration_examples(
    name: str, warning: str, collector: LocalCollector, tmp_path: Path
) -> None:
    """Each way of configuring gives the same breadcrumbs and keeps the console output."""
    result = run(name, collector=collector, cwd=tmp_path)
    assert 0 == result.returncode, result.stderr
    rows = stored(collector, 2)
    assert [
        ("R", warning, None),
        ("F", "myapp.pipeline: could not process %s", "KeyError"),
    ] == summary(rows)
    assert "WARNING myapp.pipeline: subject sub-01 has no fieldmap" in result.stderr
    assert "KeyError: 'sub-02'" in result.stderr  # the console handler's traceback


def test_json_logging_and_the_audit_trail(collector: LocalCollector, tmp_path: Path) -> None:
    """JSON status_desc, JSON console lines, and an audit file that matches the server."""
    audit = tmp_path / "audit.jsonl"
    result = run("json_audit.py", str(audit), collector=collector, cwd=tmp_path)
    assert 0 == result.returncode, result.stderr
    rows = stored(collector, 2)
    assert [
        {"logger": "myapp.pipeline", "message": "step %s slow", "step": "bet"},
        {"logger": "myapp.pipeline", "message": "step %s failed", "step": "recon"},
    ] == [json.loads(r["status_desc"]) for r in rows]
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert ["sent", "sent"] == [e["event"] for e in entries]
    assert [r["status_desc"] for r in rows] == [
        e["breadcrumb"]["proc"]["status_desc"] for e in entries
    ]
    assert {r["session_id"] for r in rows} == {
        e["breadcrumb"]["ctx"]["session_id"] for e in entries
    }
    assert 0o600 == stat.S_IMODE(audit.stat().st_mode)
    console = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert ["INFO", "WARNING", "ERROR"] == [c["levelname"] for c in console]
    assert "sub-01" == console[1]["subject"]  # the local log keeps every extra
    assert 2 == result.stdout.count("audit: sent:")


class TestNipypeTool:
    """examples/nipype_tool.py: a nipype-like tool ending as fMRIPrep does."""

    SESSION = "5e4f0b0e-8f9a-4c57-9a0e-0c7f1b9b2a11"

    def args(self, tmp_path: Path, *extra: str) -> tuple[str, ...]:
        """The tool's arguments: a dataset under a personal-looking path."""
        data = tmp_path / "jdoe" / "ds003"
        return (str(data), str(tmp_path / "jdoe" / "out"), "--session-id", self.SESSION, *extra)

    def test_a_failed_node_ends_the_run_as_failed(
        self, collector: LocalCollector, tmp_path: Path
    ) -> None:
        """R Started, the R workflow start, then F Exited with code 1 naming the node,
        path-free, the session's latest; nipype's own records about the node are not sent."""
        result = run("nipype_tool.py", *self.args(tmp_path), collector=collector, cwd=tmp_path)
        assert 1 == result.returncode, result.stderr
        assert "nipype_tool failed: Exception raised while executing Node convert_t1w" in (
            result.stderr
        )  # the console still says it, with the paths
        rows = stored(collector, 3)
        assert [
            ("R", "Started", None),
            ("R", "nipype_tool: workflow start", None),
        ] == summary(rows[:2])
        terminal = rows[2]
        assert "F" == terminal["status"]
        assert re.fullmatch(r"Exited with code 1 \[sent 2, [^\]]*\]", terminal["status_desc"])
        assert "NodeExecutionError" == terminal["error_type"]
        assert (
            "Node convert_t1w (command mri_convert) failed: RuntimeError: subprocess exited "
            "with code 1.; stderr: ERROR: cannot determine file type for <path>"
        ) == terminal["error_desc"]
        assert {self.SESSION} == {r["session_id"] for r in rows}
        texts = json.dumps([[r["status_desc"], r["error_type"], r["error_desc"]] for r in rows])
        assert str(tmp_path) not in texts
        assert "jdoe" not in texts
        assert "sub-01" not in texts
        for name in (socket.gethostname(), getpass.getuser()):
            assert not re.search(rf"\b{re.escape(name)}\b", texts), name

    def test_a_clean_run_completes(self, collector: LocalCollector, tmp_path: Path) -> None:
        """Without the failing node: the milestones, then C Completed, exit 0."""
        args = self.args(tmp_path, "--skip-convert")
        result = run("nipype_tool.py", *args, collector=collector, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
        rows = stored(collector, 4)
        assert [
            ("R", "Started"),
            ("R", "nipype_tool: workflow start"),
            ("R", "nipype_tool: nipype_tool finished successfully!"),
        ] == [(r["status"], r["status_desc"]) for r in rows[:3]]
        assert "C" == rows[3]["status"]
        assert _COMPLETED.match(rows[3]["status_desc"]), rows[3]["status_desc"]

    @pytest.mark.parametrize("flag", ["--notrack", "--debug"])
    def test_notrack_and_debug_send_nothing(
        self, flag: str, collector: LocalCollector, tmp_path: Path
    ) -> None:
        """Either flag turns telemetry off: no request, no user id file; the run is the same."""
        args = self.args(tmp_path, flag)
        result = run("nipype_tool.py", *args, collector=collector, cwd=tmp_path)
        assert 1 == result.returncode, result.stderr
        assert "nipype_tool failed" in result.stderr
        assert [] == collector.requests()  # the process has exited: nothing comes later
        assert not (tmp_path / "config").exists()
