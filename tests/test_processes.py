"""Processes and integrations: fork during warm-up, multiprocessing exits, the fixture.

Each test here holds a fix for a bug that running the documentation's examples found.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from migas_logging import MigasHandler
from migas_logging.collector import LocalCollector

PROJECT = "nipreps/migas-logging"

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def run_script(body: str, url: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(body).replace("URL", repr(url)).replace("PROJECT", repr(PROJECT))
    env = {k: v for k, v in os.environ.items() if k != "MIGAS_OPTOUT"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
class TestFork:
    def test_fork_right_after_configuration(self, collector: LocalCollector) -> None:
        """Configure, then fork a pool at once: the children's records still arrive.

        The worker imports requests in the background at configuration; a fork in the
        middle of that import left children a half-imported module, and every record
        they logged was dropped. (close() and join() let the workers exit and flush;
        the pool's context manager would terminate them with SIGTERM.)
        """
        result = run_script(
            """
            import logging, multiprocessing
            from migas_logging import MigasHandler
            h = MigasHandler(PROJECT, "1", endpoint=URL, rate_limit=None, fold_window=0)
            logging.getLogger().addHandler(h)
            def work(i):
                logging.getLogger("child").error(f"child {i}")
                return i
            if __name__ == "__main__":
                ctx = multiprocessing.get_context("fork")
                pool = ctx.Pool(2)
                print(sum(pool.map(work, range(6))))
                pool.close(); pool.join()
        """,
            collector.url,
        )
        assert "15" in result.stdout, result.stderr
        descs = sorted(r["status_desc"] for r in collector.breadcrumbs())
        assert [f"child: child {i}" for i in range(6)] == descs

    def test_forked_process_flushes_before_os_exit(self, collector: LocalCollector) -> None:
        """multiprocessing's forked children end with os._exit: they still flush."""
        result = run_script(
            """
            import logging, multiprocessing
            from migas_logging import MigasHandler
            h = MigasHandler(PROJECT, "1", endpoint=URL, excepthook=False)
            logging.getLogger().addHandler(h)
            def work():
                logging.getLogger("child").error("from a forked child")
            if __name__ == "__main__":
                p = multiprocessing.get_context("fork").Process(target=work)
                p.start(); p.join()
                print("exit", p.exitcode)
        """,
            collector.url,
        )
        assert "exit 0" in result.stdout, result.stderr
        assert ["child: from a forked child"] == [
            r["status_desc"] for r in collector.breadcrumbs()
        ]

    def test_terminated_pool_workers_print_no_traceback(self, collector: LocalCollector) -> None:
        """With track=True, SIGTERM to forked workers acts as the default: no traceback."""
        result = run_script(
            """
            import logging, multiprocessing, time
            from migas_logging import MigasHandler
            h = MigasHandler(PROJECT, "1", endpoint=URL, track=True)
            logging.getLogger().addHandler(h)
            def work(i):
                return i
            if __name__ == "__main__":
                with multiprocessing.get_context("fork").Pool(2) as pool:
                    print(sum(pool.map(work, range(4))))
        """,
            collector.url,
        )
        assert 0 == result.returncode, result.stderr
        assert "Traceback" not in result.stderr
        statuses = [r["status"] for r in collector.breadcrumbs()]
        assert ["R", "C"] == statuses


class TestStructlogEventDictMessage:
    def test_bound_values_never_leave(self, collector: LocalCollector) -> None:
        """A record whose message is a structlog event dict sends only its event text."""
        h = MigasHandler(PROJECT, "1", endpoint=collector.url, excepthook=False, extras=["step"])
        record = logging.makeLogRecord(
            {
                "name": "svc",
                "levelno": 40,
                "msg": {
                    "event": "disk full",
                    "subject": "sub-PRIVATE",
                    "step": "bold",
                    "path": "/home/alice/x",
                },
            }
        )
        h.handle(record)
        h.flush(5)
        (row,) = collector.breadcrumbs()
        assert "svc: disk full [step=bold]" == row["status_desc"]
        h.close()


class TestPytestFixture:
    def test_two_tests_in_one_process_each_get_their_breadcrumbs(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The fixture resets the process's pipeline: the second test is not starved."""
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        pytester.makepyfile("""
            import logging
            from migas_logging import MigasHandler

            def _send(collector, text):
                h = MigasHandler("nipreps/migas-logging", "1", excepthook=False)
                h.handle(logging.makeLogRecord({"name": "t", "levelno": 40, "msg": text}))
                h.flush(5)
                return [r["status_desc"] for r in collector.wait_for(1, timeout=5)]

            def test_first(migas_collector):
                assert ["t: first"] == _send(migas_collector, "first")

            def test_second(migas_collector):
                assert ["t: second"] == _send(migas_collector, "second")
        """)
        result = pytester.runpytest_subprocess("-p", "migas_logging.pytest_plugin", "-q")
        result.assert_outcomes(passed=2)


def test_multiprocessing_default_context_is_known() -> None:
    """(guard) the fork tests above use an explicit fork context, whatever the default."""
    assert "fork" in multiprocessing.get_all_start_methods()
