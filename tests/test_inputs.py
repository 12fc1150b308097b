"""What developers and end users type: unknown options, structlog's level names, and
MIGAS_LOG_LEVEL showing a short run's delivery outcomes once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from migas_logging import MigasHandler
from migas_logging.collector import free_port
from migas_logging.exceptions import ConfigurationError

PROJECT = "nipreps/migas-logging"


class TestUnknownOptions:
    def test_handler_names_the_closest_option(self) -> None:
        with pytest.raises(ConfigurationError, match=r"'tiemout' \(did you mean 'timeout'\?\)"):
            MigasHandler(PROJECT, "1", tiemout=3)

    def test_processor_error_names_the_processor(self) -> None:
        pytest.importorskip("structlog")
        from migas_logging.processors import MigasProcessor

        with pytest.raises(ConfigurationError, match=r"^MigasProcessor got unknown option"):
            MigasProcessor(PROJECT, "1", flush_dedline=2)

    def test_dictconfig_typo_fails_at_configuration(self) -> None:
        import logging.config

        with pytest.raises(ValueError, match="Unable to configure handler 'm'") as info:
            logging.config.dictConfig(
                {
                    "version": 1,
                    "handlers": {
                        "m": {
                            "class": "migas_logging.MigasHandler",
                            "project": PROJECT,
                            "rate_limt": "10/min",
                        }
                    },
                }
            )
        assert "did you mean 'rate_limit'" in str(info.value.__cause__)


class TestStructlogLevels:
    @pytest.mark.parametrize("level", ["warning", "WARNING", "Warning", 30])
    def test_lowercase_level_names(self, level: object) -> None:
        pytest.importorskip("structlog")
        from migas_logging.processors import MigasProcessor

        processor = MigasProcessor(PROJECT, "1", level=level, excepthook=False)
        assert 30 == processor.handler.level

    def test_unknown_level_fails(self) -> None:
        pytest.importorskip("structlog")
        from migas_logging.processors import MigasProcessor

        with pytest.raises(ConfigurationError, match="level"):
            MigasProcessor(PROJECT, "1", level="loud")


def _closed_port() -> int:
    return free_port()


@pytest.mark.slow
def test_debug_level_shows_a_short_runs_outcome_once() -> None:
    """With the server down, a two-line script at MIGAS_LOG_LEVEL=DEBUG says what became
    of its breadcrumb, and the package's warning is printed once, not once per handler."""
    script = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(level=logging.INFO)  # the application's own console handler
        from migas_logging import MigasHandler
        logging.getLogger().addHandler(MigasHandler({PROJECT!r}, "1", excepthook=False,
                                                    retries=0, flush_deadline=1))
        logging.getLogger("app").error("it failed")
        """
    )
    env = dict(os.environ, MIGAS_LOG_LEVEL="DEBUG")
    env["MIGAS_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    env.pop("MIGAS_OPTOUT", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    err = proc.stderr
    assert "not delivered: unreachable" in err, err
    lines = [ln for ln in err.splitlines() if "breadcrumb not delivered after" in ln]
    assert 1 == len(lines), err  # once, though the root logger has a console handler too
