"""track() as a decorator and a context manager; session ids, the enable switch and
ignore_loggers from code and dictConfig; yes/no options from text."""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import migas_logging
from migas_logging import MigasHandler, config
from migas_logging.client import yes_no
from migas_logging.collector import LocalCollector
from migas_logging.exceptions import ConfigurationError

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def run(collector: LocalCollector, body: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MIGAS_ENDPOINT=collector.url)
    env.pop("MIGAS_OPTOUT", None)
    script = "import os, sys, time, logging\nimport migas_logging\n" + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def statuses(collector: LocalCollector, n: int) -> list[tuple[str, str]]:
    return [(r["status"], r["status_desc"]) for r in collector.wait_for(n, timeout=15)]


@pytest.mark.slow
class TestTrack:
    def test_decorator_completed(self, collector: LocalCollector) -> None:
        proc = run(
            collector,
            f"""
            @migas_logging.track({PROJECT!r}, "1.0")
            def main():
                return 0
            main()
            print("after")
            """,
        )
        assert 0 == proc.returncode, proc.stderr
        rows = statuses(collector, 2)
        assert ("R", "Started") == rows[0]
        assert "C" == rows[-1][0]
        assert rows[-1][1].startswith("Completed")

    @pytest.mark.parametrize(
        ("body", "code", "status", "desc"),
        [
            ("sys.exit(2)", 2, "F", "Exited with code 2"),
            ("sys.exit(0)", 0, "C", "Completed"),
            ("raise SystemExit(3)", 3, "F", "Exited with code 3"),
            ("raise ValueError('bad')", 1, "F", "Errored"),
            ("raise KeyboardInterrupt", -signal.SIGINT, "S", "Suspended"),
        ],
    )
    def test_with_block_endings(
        self, collector: LocalCollector, body: str, code: int, status: str, desc: str
    ) -> None:
        """Inside a with-block even ``raise SystemExit(n)`` is seen; exactly one terminal."""
        proc = run(
            collector,
            f"""
            with migas_logging.track({PROJECT!r}, "1.0"):
                {body}
            """,
        )
        assert code == proc.returncode, proc.stderr
        rows = statuses(collector, 2)
        terminal = [r for r in rows if r[0] in "CFS"]
        assert 1 == len(terminal), rows
        assert status == rows[-1][0]
        assert rows[-1][1].startswith(desc), rows

    def test_exit_in_finally_names_the_replaced_exception(self, collector: LocalCollector) -> None:
        proc = run(
            collector,
            f"""
            @migas_logging.track({PROJECT!r}, "1.0")
            def main():
                try:
                    raise OSError(28, "No space left on device")
                finally:
                    sys.exit(1)
            main()
            """,
        )
        assert 1 == proc.returncode
        row = collector.wait_for(2, timeout=15)[-1]
        assert ("F", "NoSpaceLeft") == (row["status"], row["error_type"])  # classified
        assert "errno 28 (ENOSPC) in OSError" in row["error_desc"]

    def test_bad_option_fails_at_decoration(self) -> None:
        with pytest.raises(ConfigurationError):
            migas_logging.track("not-a-project", "1")


class TestSessionId:
    def test_run_id_becomes_a_stable_session(self, collector: LocalCollector) -> None:
        handler = MigasHandler(
            PROJECT, "1", endpoint=collector.url, session_id="20240101-run-7", excepthook=False
        )
        logging.getLogger("sid").addHandler(handler)
        logging.getLogger("sid").error("x")
        handler.flush(5)
        row = collector.wait_for(1)[0]
        expected = config.session_uuid("20240101-run-7")
        assert expected == row["session_id"] == config.get_session_id()
        assert expected == config.session_uuid("20240101-run-7")  # stable
        logging.getLogger("sid").removeHandler(handler)
        handler.close()

    def test_a_uuid_is_kept(self) -> None:
        value = str(uuid.uuid4())
        assert value == config.session_uuid(value.upper())

    def test_empty_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="session_id"):
            config.session_uuid("  ")


class TestEnabledAndIgnore:
    def test_dictconfig_enabled_false_sends_nothing_writes_nothing(
        self, collector: LocalCollector, xdg: Path
    ) -> None:
        """``--notrack`` mapped to one flag: no traffic, no files, as MIGAS_OPTOUT."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "m": {
                        "class": "migas_logging.MigasHandler",
                        "project": PROJECT,
                        "endpoint": collector.url,
                        "enabled": "false",
                        "track": "no",
                    }
                },
                "root": {"handlers": ["m"], "level": "INFO"},
            }
        )
        logging.getLogger("off").error("never")
        logging.getLogger().handlers[0].flush()
        assert [] == collector.breadcrumbs()
        assert not (xdg / "migas").exists()

    def test_ignore_loggers_drops_a_logger_and_its_children(
        self, collector: LocalCollector
    ) -> None:
        handler = MigasHandler(
            PROJECT,
            "1",
            endpoint=collector.url,
            excepthook=False,
            ignore_loggers="nipype.workflow, nipype.interface",
        )
        for name in ("nipype.workflow", "nipype.workflow.node", "nipype.utils", "app"):
            logger = logging.getLogger(name)
            logger.propagate = False
            logger.handlers[:] = [handler]
            logger.error("from %s", name)
        handler.flush(5)
        stored = sorted(r["status_desc"] for r in collector.wait_for(2))
        assert ["app: from %s", "nipype.utils: from %s"] == stored
        assert 2 == handler.stats.emitted


class TestYesNo:
    @pytest.mark.parametrize("text", ["yes", "True", "on", "1", " y ", 1, True])
    def test_yes(self, text: object) -> None:
        assert yes_no(text, "track") is True

    @pytest.mark.parametrize("text", ["no", "False", "off", "0", "", 0, False])
    def test_no(self, text: object) -> None:
        assert yes_no(text, "track") is False

    @pytest.mark.parametrize("text", ["maybe", 2, None, [], "flase"])
    def test_anything_else_fails_loudly(self, text: object) -> None:
        with pytest.raises(ConfigurationError, match="track"):
            yes_no(text, "track")


class TestClassification:
    def test_app_classes_then_preset_then_builtin(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """error_classes first (a dict answer, as migas-py's error_funcs give), then the
        built-in classes; classify=False keeps the raw class."""
        import threading

        monkeypatch.setattr(threading, "excepthook", lambda a: None)

        class StepError(Exception):
            pass

        def parse(exc: BaseException) -> dict[str, str]:
            return {"error_type": "StepFailed", "error_desc": "step 3 of 7"}

        handler = MigasHandler(
            PROJECT,
            "1",
            endpoint=collector.url,
            rate_limit=None,
            error_classes={"StepError": parse},
        )
        for exc in (StepError("x"), OSError(28, "No space left on device"), KeyError("k")):

            def boom(exc: BaseException = exc) -> None:
                raise exc

            t = threading.Thread(target=boom)
            t.start()
            t.join()
        handler.flush(5)
        got = [(r["error_type"], r["error_desc"]) for r in collector.wait_for(3)]
        assert ("StepFailed", "step 3 of 7") == got[0]
        assert "NoSpaceLeft" == got[1][0]
        assert "KeyError" == got[2][0]
        handler.close()

    def test_classified_descriptions_are_redacted(
        self, collector: LocalCollector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A classified crash keeps where it happened, never the path it names (the
        classification path once skipped redaction)."""
        import threading

        monkeypatch.setattr(threading, "excepthook", lambda a: None)
        handler = MigasHandler(PROJECT, "1", endpoint=collector.url)

        def boom() -> None:
            raise FileNotFoundError(2, "No such file", "/home/jdoe/study/sub-07_T1w.nii.gz")

        t = threading.Thread(target=boom)
        t.start()
        t.join()
        handler.flush(5)
        (row,) = collector.wait_for(1)
        assert "MissingFile" == row["error_type"]
        assert "jdoe" not in row["error_desc"]
        assert "sub-07" not in row["error_desc"]
        handler.close()

    def test_bad_preset_fails_at_configuration(self) -> None:
        with pytest.raises(ConfigurationError, match="preset"):
            MigasHandler(PROJECT, "1", preset="fmriprep")


class TestTrackOptions:
    def test_track_takes_session_id_and_enabled(self, collector: LocalCollector) -> None:
        """track() reaches the process-wide switches too (no configure() first needed)."""
        proc = run(
            collector,
            f"""
            with migas_logging.track({PROJECT!r}, "1.0", session_id="run-42"):
                pass
            """,
        )
        assert 0 == proc.returncode, proc.stderr
        rows = collector.wait_for(2, timeout=15)
        assert {config.session_uuid("run-42")} == {r["session_id"] for r in rows}
        collector.reset()
        proc = run(
            collector,
            f"""
            with migas_logging.track({PROJECT!r}, "1.0", enabled=False):
                pass
            """,
        )
        assert 0 == proc.returncode, proc.stderr
        assert [] == collector.breadcrumbs()
