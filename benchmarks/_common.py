"""Shared helpers: paths, the environment of child processes, statistics, availability."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository root (the parent of the ``benchmarks`` package).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The project every breadcrumb names (registered on the local collector by default).
PROJECT = "nipreps/migas-logging"
VERSION = "1.0.0"

#: The server states every network benchmark is run in.
STATES = ("healthy", "slow", "hang", "down")

#: Libraries: key -> (label, module that must be importable, or None for the stdlib).
LIBRARIES: dict[str, tuple[str, str | None]] = {
    "none": ("no handler", None),
    "null": ("NullHandler", None),
    "queue": ("QueueHandler (SimpleQueue)", None),
    "http": ("HTTPHandler", None),
    "sentry": ("sentry-sdk", "sentry_sdk"),
    "migas": ("migas (official client)", "migas"),
    "migas_logging": ("MigasHandler", "migas_logging"),
}

#: Libraries that talk to a server (measured in every server state).
NETWORK_LIBS = ("http", "sentry", "migas", "migas_logging")
#: Libraries that never do I/O (measured once).
LOCAL_LIBS = ("none", "null", "queue")


def available(lib: str) -> bool:
    """True when the library's module can be imported in this interpreter."""
    module = LIBRARIES[lib][1]
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def label(lib: str) -> str:
    """The library's name as shown in tables."""
    return LIBRARIES[lib][0]


_SCRATCH: Path | None = None


def scratch_dir() -> Path:
    """A private temporary directory for this run (user-id files, child stderr).

    Removed when the process that made it exits.
    """
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="migas-bench-"))
        atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
    return _SCRATCH


#: Where children keep their bytecode caches (outside the repository, kept between runs).
PYCACHE = Path(tempfile.gettempdir()) / "migas-logging-bench-pycache"


def child_env(endpoint: str | None = None, *, with_path: bool = True) -> dict[str, str]:
    """The environment of a child process.

    No ``MIGAS_*`` or ``SENTRY_*`` variable leaks in from the caller; ``MIGAS_ENDPOINT``
    points at ``endpoint`` (always loopback), the user-id file goes to a scratch
    directory, and with ``with_path`` the repository root is put on ``PYTHONPATH`` so
    that ``python -m benchmarks.X`` works from any directory.

    Bytecode is always cached (in :data:`PYCACHE`, never in the repository), even when
    the caller set ``PYTHONDONTWRITEBYTECODE``: an installed package has its ``.pyc``
    files, and compiling from source at every start would add ~20 ms to the import
    and exit measurements of whichever library was edited last.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGAS_", "SENTRY_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["XDG_CONFIG_HOME"] = str(scratch_dir() / "xdg")
    env["MIGAS_ENDPOINT"] = endpoint or "http://127.0.0.1:9"
    env["PYTHONUNBUFFERED"] = "1"
    if with_path:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
    else:
        env.pop("PYTHONPATH", None)
    return env


@dataclass
class ChildResult:
    """What a child process printed (its last line, as JSON) and how it ended."""

    data: dict[str, Any] | None
    returncode: int | None
    error: str | None
    stderr_tail: str


def run_child(
    args: Sequence[str], *, env: dict[str, str], timeout: float, cwd: Path | None = None
) -> ChildResult:
    """Run ``python <args>``; parse the last stdout line as JSON. Never raises."""
    err_path = scratch_dir() / f"stderr-{os.getpid()}-{abs(hash(tuple(args))) % 10**8}.txt"
    try:
        with open(err_path, "w+b") as err:
            proc = subprocess.run(
                [sys.executable, *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                timeout=timeout,
                cwd=cwd or REPO_ROOT,
                check=False,
            )
            err.seek(0, os.SEEK_END)
            size = err.tell()
            err.seek(max(0, size - 1500))
            tail = err.read().decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return ChildResult(None, None, f"timed out after {timeout:.0f} s", "")
    lines = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    data = None
    error = None
    if lines:
        try:
            data = json.loads(lines[-1])
        except ValueError:
            error = f"unparsable output: {lines[-1][:200]!r}"
    else:
        error = f"no output (exit status {proc.returncode})"
    return ChildResult(data, proc.returncode, error, tail)


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def quantiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The 25th and 75th percentiles (None when fewer than two values)."""
    if len(values) < 2:
        return None, None
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles and count of a sample."""
    q1, q3 = quantiles(values)
    return {"median": median(values), "q1": q1, "q3": q3, "n": len(values)}
