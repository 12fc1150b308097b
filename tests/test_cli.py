"""The migas-logging command, against a real local collector."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from migas_logging.cli import main
from migas_logging.collector import LocalCollector, free_port, release_port

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
        port = release_port(free_port())  # for a subprocess to listen on
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
    port = release_port(free_port())  # for a subprocess to listen on
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


# --- through the real entry point, in a subprocess (issue 15) -----------------------------


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    home: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m migas_logging ARGS`` with a clean environment (no MIGAS_*)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MIGAS_", "PYTEST_"))}
    if home is not None:
        clean.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"))
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "migas_logging", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The failure is ``code`` with exactly one line on stderr and no traceback."""
    assert code == result.returncode, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines), result.stderr
    return lines[0]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def post(url: str, body: dict[str, Any]) -> int:
    answer = requests.post(url + "/api/breadcrumb?wait=true", json=body, timeout=10)
    return int(answer.status_code)


@pytest.mark.slow
class TestOptionPositions:
    """--endpoint, --timeout and --json work before and after the command; after wins."""

    @pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
    def test_endpoint_flag_beats_migas_endpoint(
        self, collector: LocalCollector, before: bool
    ) -> None:
        """The flag is used in either position, even with MIGAS_ENDPOINT set elsewhere."""
        flag = ["--endpoint", collector.url]
        command = ["check", PROJECT, "1.0.0"]
        argv = [*flag, *command] if before else [*command, *flag]
        result = cli(*argv, env={"MIGAS_ENDPOINT": dead_url()})
        assert 0 == result.returncode, result.stderr
        assert "latest   2.0.0" in result.stdout
        assert 1 == len(collector.requests())

    def test_the_option_after_the_command_wins(self, collector: LocalCollector) -> None:
        """Given twice, the value after the command's name is the one used."""
        result = cli("--endpoint", dead_url(), "check", PROJECT, "1", "--endpoint", collector.url)
        assert 0 == result.returncode, result.stderr

    @pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
    def test_json_in_either_position(self, collector: LocalCollector, before: bool) -> None:
        """--json before the command prints JSON too, not a table."""
        command = ["check", PROJECT, "1.0.1", "--endpoint", collector.url]
        result = cli(*(["--json", *command] if before else [*command, "--json"]))
        assert {"success": True, "flagged": True, "latest": "2.0.0", "message": ""} == (
            json.loads(result.stdout)
        )

    @pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
    def test_bad_timeout_is_refused_in_either_position(self, before: bool) -> None:
        """--timeout -5 is a usage error wherever it is, before any request."""
        command = ["check", PROJECT, "1", "--endpoint", dead_url()]
        result = cli(*(["--timeout", "-5", *command] if before else [*command, "--timeout", "-5"]))
        assert "timeout '-5' must be a finite number of seconds" in one_line_error(result)

    @pytest.mark.parametrize(
        "argv",
        [
            ["--endpoint", "http://127.0.0.1:1", "serve"],
            ["serve", "--endpoint", "http://127.0.0.1:1"],
            ["--timeout", "3", "demo"],
            ["demo", "--timeout", "3"],
        ],
    )
    def test_serve_and_demo_refuse_what_they_cannot_use(self, argv: list[str]) -> None:
        """serve and demo run their own server: --endpoint and --timeout are refused."""
        message = one_line_error(cli(*argv))
        assert message.startswith(f"migas-logging {argv[0] if argv[0][0] != '-' else argv[2]}:")
        assert ("--endpoint" in message) or ("--timeout" in message)

    def test_help_lists_only_the_options_a_command_takes(self) -> None:
        """serve and demo do not offer --endpoint/--timeout; --host and --port have help."""
        serve, demo, check = cli("serve", "--help"), cli("demo", "--help"), cli("check", "-h")
        for page in (serve.stdout, demo.stdout):
            assert "--endpoint" not in page
            assert "--timeout" not in page
            assert "--json" in page
        assert "address to listen on" in serve.stdout
        assert "port to listen on" in serve.stdout
        assert "--endpoint" in check.stdout
        assert "before or after the command" in cli("--help").stdout

    def test_extra_argument_names_the_command(self) -> None:
        """`demo extra-arg` is an error of demo, not the top-level usage."""
        message = one_line_error(cli("demo", "extra-arg"))
        assert message.startswith("migas-logging demo: unrecognized arguments: extra-arg")

    def test_missing_extra_is_said_once(self, tmp_path: Path) -> None:
        """Without graphql-core, the hint to install the extra appears once."""
        code = (
            "import runpy, sys; sys.modules['graphql'] = None; "
            "sys.argv = ['migas-logging', 'demo']; "
            "runpy.run_module('migas_logging', run_name='__main__')"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        message = one_line_error(result)
        assert 1 == message.count("pip install 'migas-logging[collector]'")


@pytest.mark.slow
class TestUsageErrors:
    def test_start_after_end_is_an_error(self, collector: LocalCollector) -> None:
        """A period that ends before it starts: exit 2, no request."""
        result = cli(
            "usage", PROJECT, "--start", "2027-01-01", "--end", "2024-01-01",
            "--endpoint", collector.url,
        )  # fmt: skip
        assert "is after end" in one_line_error(result)
        assert [] == collector.requests()

    def test_a_failure_is_said_once(self, collector: LocalCollector) -> None:
        """A failed usage: nothing on stdout, one line on stderr."""
        result = cli("usage", "some/one", "--start", "2024-01-01", "--endpoint", collector.url)
        assert "is not being tracked" in one_line_error(result, 1)
        assert "" == result.stdout

    def test_a_failure_with_json_still_prints_the_result(self, collector: LocalCollector) -> None:
        """With --json the result is printed for scripts, and the reason on stderr."""
        result = cli(
            "--json", "usage", "some/one", "--start", "2024-01-01", "--endpoint", collector.url
        )
        one_line_error(result, 1)
        assert json.loads(result.stdout)["success"] is False


@pytest.mark.slow
class TestServeMistakes:
    """Everyday mistakes: one line on stderr, exit status 2, no traceback."""

    @pytest.mark.parametrize(
        ("args", "says"),
        [
            (["--port", "99999"], "is not a port number"),
            (["--rate-limit", "abc"], "is not N/SECONDS"),
            (["--rate-limit", "0/60"], "N must be at least 1"),
            (["--db", "/nonexistent-migas-dir/crumbs.sqlite"], "does not exist"),
            (["--host", "999.1.1.1"], "cannot listen on 999.1.1.1"),
            (["--register", "fmriprep"], "is not of the form 'owner/repo'"),
            (["--register", "bad name/x y"], "is not of the form 'owner/repo'"),
            (["--latest", "owner/repo"], "is not OWNER/REPO=VERSION"),
        ],
    )
    def test_mistake(self, args: list[str], says: str) -> None:
        """The message names the mistake."""
        assert says in one_line_error(cli("serve", "--port", "0", *args))

    def test_port_in_use(self) -> None:
        """A port another program listens on: one line, exit 2."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = str(sock.getsockname()[1])
            message = one_line_error(cli("serve", "--port", port))
        assert f"cannot listen on 127.0.0.1:{port}" in message


class _Serve:
    """`migas-logging serve` in a subprocess; its banner lines up to the `try:` line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "migas_logging", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.banner: list[str] = []
        while not self.banner or not self.banner[-1].startswith(("  try:", "{")):
            text = self.proc.stdout.readline()
            assert text, self.proc.communicate(timeout=10)[1]
            self.banner.append(text.rstrip("\n"))
        first = self.banner[0]
        self.url = json.loads(first)["url"] if first.startswith("{") else first.split()[-1]

    def stop(self) -> str:
        self.proc.terminate()
        return self.proc.communicate(timeout=10)[1]


@pytest.mark.slow
class TestServe:
    def test_latest_is_in_the_banner_and_does_not_register(self) -> None:
        """--latest answers check_project, says so, and registers nothing."""
        server = _Serve("--latest", "other/proj=0.4.0")
        try:
            assert (
                "  latest release of other/proj: 0.4.0 (not registered: its breadcrumbs are "
                "refused)" in server.banner
            )
            checked = cli("check", "other/proj", "0.3.1", "--json", "--endpoint", server.url)
            assert "0.4.0" == json.loads(checked.stdout)["latest"]
            sent = cli("send", "other/proj", "0.3.1", "--endpoint", server.url)
            assert "not registered" in one_line_error(sent, 1)
        finally:
            assert "Traceback" not in server.stop()

    def test_rate_limit_is_the_real_servers_unless_told(self) -> None:
        """By default 1000/60 (in the --json banner); --rate-limit off is said in the banner."""
        server = _Serve("--json")
        try:
            assert [1000, 60.0] == json.loads(server.banner[0])["rate_limit"]
        finally:
            server.stop()
        server = _Serve("--rate-limit", "off")
        try:
            assert "  rate limit: off" in server.banner
        finally:
            server.stop()


def _row(project: str = PROJECT, status: str = "R", **ctx: str) -> dict[str, Any]:
    return {
        "project": project,
        "project_version": "1.0.0",
        "ctx": ctx,
        "proc": {"status": status, "status_desc": f"{status} step"},
    }


SESSION = "0a1b2c3d-0000-4000-8000-000000000001"


@pytest.mark.slow
class TestStored:
    """`migas-logging stored`: what a collector stored, filtered, as a table or JSON."""

    @pytest.fixture
    def filled(self, collector: LocalCollector) -> LocalCollector:
        collector.register("nipreps/other")
        assert 200 == post(collector.url, _row(session_id=SESSION))
        assert 200 == post(collector.url, _row(status="F", session_id=SESSION))
        assert 200 == post(collector.url, _row(project="nipreps/other", status="C"))
        return collector

    def test_table(self, filled: LocalCollector) -> None:
        """A header, a rule and one line per breadcrumb, oldest first."""
        result = cli("stored", "--endpoint", filled.url)
        assert 0 == result.returncode, result.stderr
        header, rule, *lines = result.stdout.splitlines()
        assert header.split() == [
            "seq", "time", "project", "version", "session", "status", "status_desc",
            "error_type", "error_desc",
        ]  # fmt: skip
        assert set(rule) == {"-", " "}
        assert 3 == len(lines)
        assert lines[0].split()[2:7] == [PROJECT, "1.0.0", SESSION[:8], "R", "R"]

    @pytest.mark.parametrize(
        ("filters", "statuses"),
        [
            (["--project", "nipreps/other"], ["C"]),
            (["--status", "F"], ["F"]),
            (["--session", SESSION[:8]], ["R", "F"]),
            (["--session", SESSION.upper()], ["R", "F"]),
            (["--limit", "2"], ["R", "F"]),
        ],
    )
    def test_filters(
        self, filled: LocalCollector, filters: list[str], statuses: list[str]
    ) -> None:
        """--project, --status, --session (an id or its start) and --limit filter."""
        result = cli("stored", "--json", "--endpoint", filled.url, *filters)
        assert statuses == [row["status"] for row in json.loads(result.stdout)]

    def test_json_rows_are_whole(self, filled: LocalCollector) -> None:
        """--json gives every field of every row, as the collector stored it."""
        rows = json.loads(cli("--json", "stored", "--endpoint", filled.url).stdout)
        assert filled.breadcrumbs() == rows

    def test_nothing_stored_and_why(self, collector: LocalCollector) -> None:
        """No rows: it says so, and notes what was refused and how to register it."""
        post(collector.url, _row(project="some/one"))
        result = cli("stored", "--endpoint", collector.url)
        assert 0 == result.returncode
        assert "stored no breadcrumbs" in result.stdout
        assert "refused 1 breadcrumb(s) of 'some/one': 400 Project is not registered." in (
            result.stderr
        )
        assert "--register some/one" in result.stderr

    def test_the_hosted_server_is_refused(self) -> None:
        """Without --endpoint or MIGAS_ENDPOINT there is no collector to read: exit 2."""
        assert "not the hosted server" in one_line_error(cli("stored"))

    def test_unreachable_and_not_a_collector(self, tmp_path: Path) -> None:
        """A refused connection, or a server without /_collector: exit 1, one line."""
        assert "cannot connect" in one_line_error(cli("stored", "--endpoint", dead_url()), 1)
        with LocalCollector() as c, _static_server(tmp_path) as url:
            assert c.running
            message = one_line_error(cli("stored", "--endpoint", url), 1)
        assert "is not a migas-logging collector" in message

    def test_follow_prints_rows_as_they_arrive(self, collector: LocalCollector) -> None:
        """--follow polls: a row stored after it started is printed; --limit ends it."""
        post(collector.url, _row())
        proc = subprocess.Popen(
            [sys.executable, "-m", "migas_logging", "stored", "--follow", "--json",
             "--limit", "2", "--follow-timeout", "60", "--endpoint", collector.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            post(collector.url, _row(status="C"))
            second = json.loads(proc.stdout.readline())
            assert ("R", "C") == (first["status"], second["status"])
            assert 0 == proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.communicate()

    def test_follow_timeout_without_the_rows_is_a_failure(self, collector: LocalCollector) -> None:
        """--follow-timeout with --limit rows missing: exit 1 saying how many came."""
        result = cli(
            "stored", "--follow", "--follow-timeout", "1", "--limit", "3",
            "--endpoint", collector.url,
        )  # fmt: skip
        assert "0 of 3 breadcrumb(s) arrived in time" in one_line_error(result, 1)

    def test_follow_stops_cleanly_on_ctrl_c(self, collector: LocalCollector) -> None:
        """Ctrl-C (SIGINT) ends --follow with status 0 and no traceback."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "migas_logging", "stored", "--follow",
             "--endpoint", collector.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("seq")  # following now
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            assert 0 == proc.returncode, err
            assert "Traceback" not in err
        finally:
            proc.kill()


@contextlib.contextmanager
def _static_server(root: Path) -> Iterator[str]:
    """A plain HTTP server (404 for every /_collector path)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
class TestDemo:
    def test_demo_keeps_the_real_user_id_file_untouched(self, tmp_path: Path) -> None:
        """The demo's user id goes to a temporary directory, and the output says so."""
        result = cli("demo", home=tmp_path)
        assert 0 == result.returncode, result.stderr
        assert "temporary XDG_CONFIG_HOME" in result.stdout
        assert "the collector stored 4 breadcrumbs" in result.stdout
        assert [] == list(tmp_path.rglob("user_id"))

    def test_demo_under_optout_says_why_nothing_was_stored(self, tmp_path: Path) -> None:
        """MIGAS_OPTOUT: exit 0, and the reason next to 'the collector stored 0'."""
        result = cli("demo", home=tmp_path, env={"MIGAS_OPTOUT": "1"})
        assert 0 == result.returncode, result.stderr
        assert "the collector stored 0 breadcrumbs: MIGAS_OPTOUT is set" in result.stdout
        assert [] == list(tmp_path.rglob("user_id"))
