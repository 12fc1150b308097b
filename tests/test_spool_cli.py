"""``migas-logging spool list|send|clear``, through the real entry point, against a collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from migas_logging.breadcrumb import Breadcrumb, Context
from migas_logging.cli import main
from migas_logging.collector import LocalCollector, free_port
from migas_logging.spool import Spool

PROJECT = "nipreps/migas-logging"
SESSIONS = [str(uuid.UUID(int=1)), str(uuid.UUID(int=2))]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m migas_logging ARGS`` with no MIGAS_* variable but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MIGAS_", "PYTEST_"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "migas_logging", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert code == result.returncode, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines), result.stderr
    return lines[0]


def fill(directory: Path, project: str = PROJECT) -> None:
    """Two runs of three breadcrumbs; the first run's terminal one has the LOWEST number."""
    spool = Spool(directory)
    for session, (terminal_seq, end) in zip(SESSIONS, [(0, "F"), (2, "C")], strict=True):
        for seq in range(3):
            terminal = seq == terminal_seq
            crumb = Breadcrumb(
                project,
                "1.0",
                "3.11",
                Context(session_id=session),
                status=end if terminal else "R",
                status_desc=f"{session[-1]}:{seq}",
            )
            assert spool.put(crumb.to_payload(), session=session, seq=seq, terminal=terminal)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    fill(path)
    return path


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def spooled(directory: Path) -> int:
    return len(Spool(directory).items())


@pytest.mark.slow
class TestList:
    def test_table(self, directory: Path) -> None:
        """One row per breadcrumb, in the order send uses, and a count."""
        result = cli("spool", "list", "--spool-dir", str(directory))
        assert 0 == result.returncode, result.stderr
        lines = result.stdout.splitlines()
        assert ["session", "seq", "status", "age", "project"] == lines[0].split()
        rows = [line.split() for line in lines[2:-1]]
        assert [
            (SESSIONS[0], "1", "R"),
            (SESSIONS[0], "2", "R"),
            (SESSIONS[0], "0", "F"),
            (SESSIONS[1], "0", "R"),
            (SESSIONS[1], "1", "R"),
            (SESSIONS[1], "2", "C"),
        ] == [(r[0], r[1], r[2]) for r in rows]
        assert "terminal" in lines[4]
        assert all(PROJECT == r[-1] for r in rows)
        assert f"6 breadcrumbs of 2 sessions in {directory}" == lines[-1]

    def test_json(self, directory: Path) -> None:
        """--json gives each breadcrumb's session, seq, status, age, project and body."""
        result = cli("spool", "list", "--json", "--spool-dir", str(directory))
        data = json.loads(result.stdout)
        assert str(directory) == data["directory"]
        first = data["items"][0]
        assert (SESSIONS[0], 1, "R", False, PROJECT) == (
            first["session"],
            first["seq"],
            first["status"],
            first["terminal"],
            first["project"],
        )
        assert 0 <= first["age"] < 600
        assert "1:1" == first["breadcrumb"]["proc"]["status_desc"]
        assert [False, False, True] * 2 == [i["terminal"] for i in data["items"]]

    def test_an_absent_spool_is_empty_and_stays_absent(self, tmp_path: Path) -> None:
        """Listing does not make the directory."""
        result = cli("spool", "list", env={"MIGAS_SPOOL_DIR": str(tmp_path / "none")})
        assert 0 == result.returncode
        assert f"the spool {tmp_path / 'none'} is empty" == result.stdout.strip()
        assert not (tmp_path / "none").exists()


@pytest.mark.slow
class TestSend:
    def test_down_then_up(self, directory: Path, collector: LocalCollector) -> None:
        """Collector down: everything stays, exit 1. Up: everything sent, in order, exit 0."""
        collector.stop()
        down = cli("spool", "send", "--spool-dir", str(directory), "--endpoint", collector.url)
        assert "sent 0, dropped 0, left 6" == down.stdout.strip()
        message = one_line_error(down, 1)
        assert "6 breadcrumbs are left" in message
        assert "unreachable" in message
        assert 6 == spooled(directory)

        collector.start()
        up = cli("spool", "send", "--spool-dir", str(directory), "--endpoint", collector.url)
        assert 0 == up.returncode, up.stderr
        assert "sent 6, dropped 0, left 0" == up.stdout.strip()
        assert 0 == spooled(directory)
        stored = collector.breadcrumbs()
        for session, end in zip(SESSIONS, ["F", "C"], strict=True):
            rows = [r for r in stored if r["session_id"] == session]
            assert ["R", "R", end] == [r["status"] for r in rows]  # the terminal one last
            # and in a later second of the server's clock, so the dashboard shows it
            assert rows[-1]["timestamp"] > max(r["timestamp"] for r in rows[:-1])
        assert [] == collector.lost()

    def test_a_refused_breadcrumb_is_dropped(
        self, tmp_path: Path, collector: LocalCollector
    ) -> None:
        """A breadcrumb the server refuses for good (unregistered project) goes, counted."""
        directory = tmp_path / "spool"
        fill(directory, project="some/one")
        result = cli("spool", "send", "--spool-dir", str(directory), "--endpoint", collector.url)
        assert 0 == result.returncode, result.stderr
        assert result.stdout.startswith("sent 0, dropped 6, left 0 (last refusal: rejected")
        assert 0 == spooled(directory)

    def test_rate_limited_stops_and_keeps_the_rest(
        self, directory: Path, collector: LocalCollector
    ) -> None:
        """A 429 that outlasts --max-wait ends the replay: the rest stays for later."""
        collector.set_rate_limit((2, 60.0))
        result = cli(
            "spool",
            "send",
            "--json",
            "--max-wait",
            "0",
            "--spool-dir",
            str(directory),
            "--endpoint",
            collector.url,
        )
        data = json.loads(result.stdout)
        assert (2, 0, 4, "retry") == (data["sent"], data["dropped"], data["left"], data["stopped"])
        assert data["reason"].startswith("rate_limited")
        assert "rate_limited" in one_line_error(result, 1)
        assert 4 == spooled(directory)

    def test_rate_is_the_machines_budget(self, directory: Path, collector: LocalCollector) -> None:
        """--rate 3/60: three breadcrumbs, then the budget (shared with the processes that
        use this spool, beside it) is spent; with --max-wait 0 the rest stays, and the
        server never answered 429."""
        result = cli(
            *("spool", "send", "--json", "--max-wait", "0", "--rate", "3/60"),
            *("--spool-dir", str(directory), "--endpoint", collector.url),
        )
        data = json.loads(result.stdout)
        assert (3, 0, 3, "retry") == (data["sent"], data["dropped"], data["left"], data["stopped"])
        assert "budget" in data["reason"]
        assert 3 == len(collector.requests())
        assert (directory.parent / "budget").is_file()
        again = cli(
            *("spool", "send", "--json", "--max-wait", "0", "--rate", "3/60"),
            *("--spool-dir", str(directory), "--endpoint", collector.url),
        )
        assert 0 == json.loads(again.stdout)["sent"]  # the same budget: still spent

    @pytest.mark.parametrize("rate", ["x/60", "0/60", "off", "-1/60"])
    def test_a_bad_rate_is_a_usage_error(self, directory: Path, rate: str) -> None:
        result = cli("spool", "send", "--rate", rate, "--spool-dir", str(directory))
        assert "--rate" in one_line_error(result, 2)
        assert 6 == spooled(directory)

    def test_opt_out_sends_nothing(self, directory: Path, collector: LocalCollector) -> None:
        """Under MIGAS_OPTOUT, spool send refuses and the spool stays."""
        result = cli(
            "spool",
            "send",
            "--spool-dir",
            str(directory),
            "--endpoint",
            collector.url,
            env={"MIGAS_OPTOUT": "1"},
        )
        assert "telemetry is disabled" in one_line_error(result, 1)
        assert [] == collector.requests()
        assert 6 == spooled(directory)

    def test_the_default_directory(self, tmp_path: Path, collector: LocalCollector) -> None:
        """Without --spool-dir: $XDG_CACHE_HOME/migas/spool."""
        fill(tmp_path / "xdg" / "migas" / "spool")
        result = cli(
            "spool",
            "send",
            "--endpoint",
            collector.url,
            env={"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        )
        assert 0 == result.returncode, result.stderr
        assert 6 == len(collector.breadcrumbs())


@pytest.mark.slow
class TestClear:
    def test_clear_asks_nothing(self, directory: Path) -> None:
        """clear removes everything and says how many."""
        result = cli("spool", "clear", "--spool-dir", str(directory))
        assert 0 == result.returncode
        assert f"removed 6 breadcrumbs from {directory}" == result.stdout.strip()
        assert 0 == spooled(directory)
        again = cli("--json", "spool", "clear", "--spool-dir", str(directory))
        assert {"removed": 0, "directory": str(directory)} == json.loads(again.stdout)


@pytest.mark.slow
class TestErrors:
    def test_a_disabled_spool_needs_a_directory(self) -> None:
        """MIGAS_SPOOL_DIR="" turns the spool off: a usage error saying so."""
        result = cli("spool", "list", env={"MIGAS_SPOOL_DIR": ""})
        assert "the spool is disabled" in one_line_error(result, 2)

    def test_an_unsafe_directory_is_refused(self, directory: Path) -> None:
        """A directory others may write to is not read, sent or cleared."""
        directory.chmod(0o777)
        for action in (["list"], ["send", "--endpoint", "http://127.0.0.1:1"], ["clear"]):
            result = cli("spool", *action, "--spool-dir", str(directory))
            assert "is writable by group or others: not used" in one_line_error(result, 2)
        assert 6 == len(os.listdir(directory))

    @pytest.mark.parametrize(
        "argv",
        [
            ["spool", "list", "--endpoint", "http://127.0.0.1:1"],
            ["--timeout", "3", "spool", "clear"],
            ["spool", "--endpoint", "http://127.0.0.1:1", "list"],
        ],
    )
    def test_list_and_clear_refuse_network_options(self, argv: list[str]) -> None:
        """list and clear read only the spool: --endpoint and --timeout are refused."""
        message = one_line_error(cli(*argv), 2)
        assert message.startswith("migas-logging spool ")
        assert ("--endpoint" in message) or ("--timeout" in message)

    def test_an_action_is_required(self) -> None:
        """`spool` alone is a usage error naming the missing action."""
        assert "ACTION" in one_line_error(cli("spool"), 2)


class TestOptionPositions:
    """In-process (fast): --json and --spool-dir in every position; the later one wins."""

    @pytest.mark.parametrize(
        "argv",
        [
            ["--json", "spool", "list"],
            ["spool", "--json", "list"],
            ["spool", "list", "--json"],
        ],
    )
    def test_json_anywhere(
        self, argv: list[str], directory: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json before the command, between its words, or after it."""
        assert 0 == main([*argv, "--spool-dir", str(directory)])
        assert 6 == len(json.loads(capsys.readouterr().out)["items"])

    def test_spool_dir_after_the_action_wins(
        self, directory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--spool-dir after `spool` and after `list`: the later one is used."""
        other = str(tmp_path / "other")
        assert 0 == main(["spool", "--spool-dir", other, "list", "--spool-dir", str(directory)])
        assert "6 breadcrumbs" in capsys.readouterr().out
        assert 0 == main(["spool", "--spool-dir", str(directory), "list", "--spool-dir", other])
        assert "is empty" in capsys.readouterr().out

    def test_spool_dir_beats_migas_spool_dir(
        self,
        directory: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The option wins over the variable."""
        monkeypatch.setenv("MIGAS_SPOOL_DIR", str(tmp_path / "other"))
        assert 0 == main(["spool", "list", "--spool-dir", str(directory)])
        assert "6 breadcrumbs" in capsys.readouterr().out

    def test_send_takes_the_network_options_before_the_command(
        self, directory: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--endpoint and --timeout before `spool` reach `spool send`."""
        url = f"http://127.0.0.1:{free_port()}"
        code = main(
            ["--endpoint", url, "--timeout", "1", "spool", "send", "--spool-dir", str(directory)]
        )
        assert 1 == code
        assert "unreachable" in capsys.readouterr().err

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """spool --help names the actions; list --help offers no --endpoint."""
        assert 0 == main(["spool", "--help"])
        page = capsys.readouterr().out
        assert all(action in page for action in ("list", "send", "clear"))
        assert 0 == main(["spool", "list", "--help"])
        page = capsys.readouterr().out
        assert "--spool-dir" in page
        assert "--endpoint" not in page
