"""The migas-logging command, against a real local collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from migas_logging.cli import main
from migas_logging.collector import LocalCollector, free_port

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(
        register=(PROJECT,), latest={PROJECT: "2.0.0"}, bad_versions={PROJECT: ["1.0.1"]}
    ) as c:
        yield c


class TestCheck:
    def test_table(self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]) -> None:
        """check prints the result as aligned key/value lines and exits 0."""
        assert 0 == main(["check", PROJECT, "1.0.0", "--endpoint", collector.url])
        out = capsys.readouterr().out
        assert "latest   2.0.0" in out
        assert "flagged  False" in out

    def test_json(self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints the official client's shape."""
        assert 0 == main(["check", PROJECT, "1.0.1", "--endpoint", collector.url, "--json"])
        assert {"success": True, "flagged": True, "latest": "2.0.0", "message": ""} == (
            json.loads(capsys.readouterr().out)
        )

    def test_down_server_is_a_one_line_failure(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A refused connection: exit 1 and one line on stderr saying why."""
        code = main(["check", PROJECT, "1", "--endpoint", f"http://127.0.0.1:{free_port()}"])
        err = capsys.readouterr().err
        assert 1 == code
        assert 1 == len(err.strip().splitlines())
        assert err.startswith("migas-logging: cannot connect")

    def test_bad_project_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A project that is not owner/repo: exit 2, message names it."""
        assert 2 == main(["check", "fmriprep", "1", "--endpoint", "http://127.0.0.1:1"])
        assert "'fmriprep'" in capsys.readouterr().err


class TestUsage:
    def test_counts_what_send_sent(
        self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """send stores a breadcrumb that usage then counts."""
        assert 0 == main(
            [
                "send",
                PROJECT,
                "1.0.0",
                "--status",
                "C",
                "--desc",
                "done",
                "--endpoint",
                collector.url,
            ]
        )
        capsys.readouterr()
        assert ("C", "done") == (
            collector.breadcrumbs()[0]["status"],
            collector.breadcrumbs()[0]["status_desc"],
        )
        assert 0 == main(
            ["usage", PROJECT, "--start", "2000-01-01", "--endpoint", collector.url, "--json"]
        )
        assert 1 == json.loads(capsys.readouterr().out)["hits"]

    def test_bad_date(self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad date: exit 2 before any request."""
        assert 2 == main(["usage", PROJECT, "--start", "soon", "--endpoint", collector.url])
        assert "not a date" in capsys.readouterr().err
        assert [] == collector.requests()

    def test_untracked_project_fails(
        self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """success False gives exit 1 with the server's message."""
        assert 1 == main(
            ["usage", "some/one", "--start", "2024-01-01", "--endpoint", collector.url]
        )
        assert "is not being tracked" in capsys.readouterr().err


class TestSend:
    def test_refused_send_fails(
        self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unregistered project: exit 1, the server's reason."""
        assert 1 == main(["send", "some/one", "1", "--endpoint", collector.url])
        assert "not registered" in capsys.readouterr().err

    def test_send_redacts(
        self, collector: LocalCollector, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """send applies the same redaction as the handler."""
        assert 0 == main(
            [
                "send",
                PROJECT,
                "1",
                "--status",
                "F",
                "--desc",
                "failed on /home/alice/x.nii",
                "--endpoint",
                collector.url,
            ]
        )
        assert "failed on <path>" == collector.breadcrumbs()[0]["status_desc"]

    def test_optout(
        self,
        collector: LocalCollector,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Under MIGAS_OPTOUT nothing is sent and the command says so."""
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        assert 1 == main(["send", PROJECT, "1", "--endpoint", collector.url])
        assert "disabled" in capsys.readouterr().err
        assert [] == collector.requests()


@pytest.mark.slow
class TestServeAndDemo:
    def test_serve_in_a_subprocess(self, tmp_path: object) -> None:
        """serve listens, stores to its SQLite file, and stops on SIGTERM."""
        port = free_port()
        db = os.path.join(str(tmp_path), "crumbs.sqlite")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migas_logging",
                "serve",
                "--port",
                str(port),
                "--db",
                db,
                "--register",
                PROJECT,
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            assert f"http://127.0.0.1:{port}" == info["url"]
            assert 0 == main(["send", PROJECT, "1.0", "--endpoint", info["url"]])
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert os.path.getsize(db) > 0

    def test_demo_prints_what_the_collector_stored(self) -> None:
        """The README's first command: the demo shows the stored breadcrumbs."""
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "migas_logging", "demo"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        assert "the collector stored 4 breadcrumbs" in result.stdout
        assert "repeated 3 more times" in result.stdout
        assert time.monotonic() - start < 60

    def test_demo_json(self) -> None:
        """demo --json gives the stored rows and the handler's accounting."""
        result = subprocess.run(
            [sys.executable, "-m", "migas_logging", "demo", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        data = json.loads(result.stdout)
        assert 4 == len(data["breadcrumbs"])
        assert 0 == data["stats"]["pending"]


@pytest.mark.slow
def test_serve_latest_answers_check() -> None:
    """serve --latest makes check_project answer like a server that knows the release."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "migas_logging",
            "serve",
            "--port",
            str(port),
            "--json",
            "--register",
            PROJECT,
            "--latest",
            f"{PROJECT}=3.1.4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "migas_logging",
                "check",
                PROJECT,
                "3.0",
                "--json",
                "--endpoint",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        assert "3.1.4" == json.loads(result.stdout)["latest"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
