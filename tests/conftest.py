"""Shared fixtures: every test starts from a clean process state and leaves one.

The library keeps process-wide state by design (one pipeline, one session id, the crash
hooks); these autouse fixtures reset it so that tests never leak into each other, and
point the user-id file at a temporary directory so no test writes to the real home.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from migas_logging import client, config, excepthook, handler, process


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in (
        "MIGAS_OPTOUT",
        "MIGAS_ENDPOINT",
        "MIGAS_TIMEOUT",
        "MIGAS_LOG_LEVEL",
        "MIGAS_SESSION_ID",
        "MIGAS_AUDIT_FILE",
        "MIGAS_SPOOL_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # a spool, if any
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sys_hook, thread_hook = sys.excepthook, threading.excepthook
    config._reset_identity_for_tests()
    process.forget_exit_deadline()
    handler.clear_shipped()
    manager = logging.Logger.manager
    disabled = {
        name: lg.disabled
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    yield
    for name, lg in list(manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            lg.disabled = disabled.get(name, False)
    for hook in list(excepthook._hooks.values()):
        hook._refs = 1
        hook.uninstall()
    sys.excepthook, threading.excepthook = sys_hook, thread_hook
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    client.reset()
    process.forget_exit_deadline()
    process.unwatch_exit()
    process._die_at_end.clear()
    config._reset_identity_for_tests()


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    """The XDG_CONFIG_HOME every test gets (the user-id file lives below it)."""
    return tmp_path / "xdg"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Captured output holds the hostile tests' lone surrogates: make it encodable, so a
    report can cross to pytest-xdist's controller (it is sent as UTF-8)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [
        (name, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for name, text in report.sections
    ]
