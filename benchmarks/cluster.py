"""A cluster on one machine: N processes that start at once behind one address.

Each process of a herd is a fresh ``python -c SCRIPT``: it imports its library, tells
the parent it is ready and waits on a pipe; when all N are ready the parent closes the
pipe and they all go at once. Each then configures its library, logs three warnings and
ends; one in four raises (an uncaught ``RuntimeError``). Every process has its own
session id, given by the parent, so that the collector's rows can be checked per run.

- MigasHandler: ``track=True`` (a ``Started`` and a terminal breadcrumb), a spool shared
  by the herd (a fresh directory per scenario, the machine budget's file beside it) and
  ``machine_rate`` equal to the server's window;
- the official client (migas-py): ``migas.setup(endpoint=..., session_id=...)``,
  ``migas.track_exit(...)``, a ``Started`` breadcrumb and one ``add_breadcrumb`` per
  warning (the handler of :mod:`benchmarks._libs`); it has no spool and no budget.

Scenarios: the collector's rate limit per address at the real server's windows (1,000 and
100 per 60 s); phase A with the collector up, phase B with a closed port during the run.
After the herd, ONE ``python -m migas_logging spool send`` to the collector (phase A
included: what the spool held when the window was spent).

Measured per scenario: terminal breadcrumbs stored and those that are their session's
latest (after the herd, and after the replay), ``429`` answers the collector gave, and
each process's times: ``total`` from the go to the process being gone, ``exit`` from the
end of its script to being gone. ``added`` is the median (or max) total minus the
median (or max) total of the same script with the library imported and not configured
(the baseline), run as a herd of the same size.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import PROJECT, VERSION, available, child_env, label, summary

FULL: dict[str, Any] = {"sizes": [50, 200], "cap": 120.0}
QUICK: dict[str, Any] = {"sizes": [10], "cap": 60.0}

#: The server's windows: (requests, seconds) per address.
WINDOWS: tuple[tuple[int, float], ...] = ((1000, 60.0), (100, 60.0))
PHASES = ("up", "down")
LIBS = ("migas_logging", "migas")
#: Breadcrumbs one process means to send: Started, three warnings, the terminal one.
CRUMBS_PER_PROCESS = 5
#: The flush deadline of MigasHandler (its default), for the exit goal.
FLUSH_DEADLINE = 2.0

_IMPORTS = {
    "migas_logging": "import migas_logging\n",
    "migas": "import migas\nfrom benchmarks._libs import MigasClientHandler\n",
}

_SETUP = {
    "migas_logging": (
        "logging.getLogger().addHandler(migas_logging.MigasHandler("
        "{project!r}, {version!r}, endpoint=a['url'], track=True, spool=a['spool'], "
        "machine_rate=a['machine_rate'], session_id=a['session']))\n"
    ),
    "migas": (
        "migas.setup(endpoint=a['url'] + '/graphql', session_id=a['session'], "
        "save_config=False)\n"
        "migas.track_exit({project!r}, {version!r})\n"
        "migas.add_breadcrumb({project!r}, {version!r}, status='R', status_desc='Started')\n"
        "logging.getLogger().addHandler(MigasClientHandler(logging.WARNING))\n"
    ),
}

_SCRIPT = """\
import json, logging, os, sys, time
a = json.loads(sys.argv[1])
{imports}logging.lastResort = None
os.write(a['ready'], b'x')
os.close(a['ready'])
os.read(a['go'], 1)
import atexit
atexit.register(lambda: print(json.dumps({{'flushed': time.time()}}), flush=True))
{setup}log = logging.getLogger('app')
log.warning('subject loaded')
log.warning('no fieldmap found')
log.warning('slice timing missing')
print(json.dumps({{'end': time.time()}}), flush=True)
if a['crash']:
    raise RuntimeError('step failed')
"""


def script(lib: str, *, configured: bool) -> str:
    """The child's script: ``lib`` imported, and configured unless for the baseline."""
    fields = {"project": PROJECT, "version": VERSION}
    setup = _SETUP[lib].format(**fields) if configured else ""
    return _SCRIPT.format(imports=_IMPORTS[lib], setup=setup)


def herd(
    code: str, n: int, *, url: str, spool: Path, machine_rate: str, cap: float
) -> dict[str, Any]:
    """Start ``n`` processes, release them at once, wait for all; return their times."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    spool.parent.mkdir(parents=True, exist_ok=True)
    sessions = [str(uuid.uuid4()) for _ in range(n)]
    crashes = [i % 4 == 0 for i in range(n)]  # a quarter of them
    gone: dict[int, float] = {}
    procs: list[subprocess.Popen[bytes]] = []
    outs: list[Path] = []
    env = child_env(url)
    for i in range(n):
        args = {
            "url": url,
            "spool": str(spool),
            "machine_rate": machine_rate,
            "session": sessions[i],
            "crash": crashes[i],
            "ready": ready_w,
            "go": go_r,
        }
        out = spool.parent / f"out-{i}.txt"
        outs.append(out)
        with open(out, "wb") as fh:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, json.dumps(args)],
                    stdout=fh,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    pass_fds=(ready_w, go_r),
                )
            )
    os.close(ready_w)
    os.close(go_r)

    def watch(i: int, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(cap)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return
        gone[i] = time.time()

    ready = 0
    deadline = time.monotonic() + cap
    while ready < n and time.monotonic() < deadline:
        readable, _, _ = select.select([ready_r], [], [], 1.0)
        if readable:
            chunk = os.read(ready_r, n)
            if not chunk:
                break  # every child died
            ready += len(chunk)
    os.close(ready_r)
    threads = [threading.Thread(target=watch, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    go_time = time.time()
    os.close(go_w)  # every child's read returns: they all go
    for t in threads:
        t.join()
    totals, exits, flushes = [], [], []
    for i, out in enumerate(outs):
        if i not in gone:
            continue
        totals.append(gone[i] - go_time)
        try:
            said: dict[str, float] = {}
            for line in out.read_text().splitlines():
                said.update(json.loads(line))
            end = float(said["end"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        exits.append(gone[i] - end)
        if "flushed" in said:
            flushes.append(float(said["flushed"]) - end)
    return {
        "ready": ready,
        "killed": n - len(gone),
        "sessions": sessions,
        "crashes": sum(crashes),
        "total_s": summary(totals) | {"max": max(totals, default=None)},
        "exit_s": summary(exits) | {"max": max(exits, default=None)},
        "flushed_s": summary(flushes) | {"max": max(flushes, default=None)},
    }


#: ``spool send --max-wait``: long enough for one replay to get through the window.
SEND_MAX_WAIT = 900.0


def _spool_send(spool: Path, url: str, machine_rate: str) -> dict[str, Any]:
    """One ``migas-logging spool send`` at the herd's machine rate; its JSON summary."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "migas_logging",
            "spool",
            "send",
            "--spool-dir",
            str(spool),
            "--endpoint",
            url,
            "--rate",
            machine_rate,
            "--max-wait",
            f"{SEND_MAX_WAIT:g}",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=child_env(url),
        timeout=SEND_MAX_WAIT + 300,
        check=False,
    )
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        return {"error": (proc.stderr or proc.stdout)[-300:], "returncode": proc.returncode}
    data["returncode"] = proc.returncode
    return data


def _spooled(spool: Path) -> int:
    """How many breadcrumbs the spool holds."""
    if not spool.exists():
        return 0
    from migas_logging.spool import Spool

    return len(Spool(spool).items())


def _tally(summaries: dict[str, dict[str, Any]]) -> dict[str, int]:
    values = list(summaries.values())
    return {
        "terminal": sum(1 for s in values if s["terminal"]),
        "latest": sum(1 for s in values if s["latest"]),
        "rows": sum(s["rows"] for s in values),
    }


def scenario(
    server: Any,
    lib: str,
    n: int,
    window: tuple[int, float],
    phase: str,
    *,
    workdir: Path,
    cap: float,
) -> dict[str, Any]:
    """One herd of ``lib`` with the collector at ``window``, up or down; then one replay."""
    server.set_rate_limit(window)
    server.reset()
    up = server.set_state("healthy")
    url = server.set_state("down").url if phase == "down" else up.url
    server.set_state("healthy")
    spool = workdir / f"{lib}-{n}-{window[0]}-{phase}" / "spool"
    machine_rate = f"{window[0]}/{window[1]:g}"
    run = herd(
        script(lib, configured=True), n, url=url, spool=spool, machine_rate=machine_rate, cap=cap
    )
    sessions = run.pop("sessions")
    after_run = server.sessions(sessions)
    entry: dict[str, Any] = {
        "lib": lib,
        "n": n,
        "window": list(window),
        "phase": phase,
        **run,
        "expected_terminals": n,
        "expected_crumbs": n * CRUMBS_PER_PROCESS,
        "direct": _tally(after_run["sessions"]),
        "rate_limited": after_run["rate_limited"],
        "requests": after_run["requests"],
    }
    if lib == "migas_logging":
        entry["spooled"] = _spooled(spool)
        entry["spool_send"] = _spool_send(spool, up.url, machine_rate)
        after = server.sessions(sessions)
        entry["after_replay"] = _tally(after["sessions"])
        entry["replay_rate_limited"] = after["rate_limited"] - after_run["rate_limited"]
        entry["left_in_spool"] = _spooled(spool)
    shutil.rmtree(spool.parent, ignore_errors=True)
    return entry


def run(
    server: Any, *, quick: bool, log: Callable[[str], None], sizes: list[int] | None = None
) -> dict[str, Any]:
    """Every size (or ``sizes``), window, phase and library; see the module docstring."""
    params = dict(QUICK if quick else FULL)
    if sizes:
        params["sizes"] = sizes
    libs = [lib for lib in LIBS if available(lib)]
    skipped = {lib: f"{label(lib)} is not installed" for lib in LIBS if not available(lib)}
    out: dict[str, Any] = {
        "config": params | {"windows": [list(w) for w in WINDOWS]},
        "baseline": {},
        "scenarios": [],
        "skipped": skipped,
    }
    workdir = Path(tempfile.mkdtemp(prefix="migas-cluster-"))
    try:
        for n in params["sizes"]:
            for lib in libs:
                server.set_rate_limit(None)
                server.reset()
                url = server.set_state("healthy").url
                base = herd(
                    script(lib, configured=False),
                    n,
                    url=url,
                    spool=workdir / f"base-{lib}-{n}" / "spool",
                    machine_rate="100/60",
                    cap=params["cap"],
                )
                base.pop("sessions")
                out["baseline"][f"{lib}/{n}"] = base
                log(f"  baseline {label(lib)} N={n}: median {base['total_s']['median']:.2f} s")
            for window in WINDOWS:
                for phase in PHASES:
                    for lib in libs:
                        entry = scenario(
                            server, lib, n, window, phase, workdir=workdir, cap=params["cap"]
                        )
                        base_total = out["baseline"][f"{lib}/{n}"]["total_s"]
                        total = entry["total_s"]
                        if total["median"] is not None and base_total["median"] is not None:
                            entry["added_median_s"] = total["median"] - base_total["median"]
                            entry["added_max_s"] = total["max"] - base_total["max"]
                        out["scenarios"].append(entry)
                        after = entry.get("after_replay", entry["direct"])
                        log(
                            f"  {label(lib)} N={n} {window[0]}/{window[1]:g}s {phase}: "
                            f"terminals {entry['direct']['terminal']}/{n} direct, "
                            f"{after['latest']}/{n} latest after replay, "
                            f"429s {entry['rate_limited']}, "
                            f"exit max {entry['exit_s']['max'] or 0:.2f} s"
                        )
    finally:
        server.set_rate_limit(None)
        server.reset()
        shutil.rmtree(workdir, ignore_errors=True)
    out["array_job"] = array_job()
    return out


def array_job(tasks: int = 10_000, spool_cap: int = 1000) -> list[str]:
    """What a ``tasks``-task array job behind one address would see: arithmetic only.

    Each task sends what a process of the herd sends (``CRUMBS_PER_PROCESS``: Started,
    three records, its terminal one). Worst case: all tasks end within one window.
    """
    lines = []
    for count, period in WINDOWS:
        total = tasks * CRUMBS_PER_PROCESS
        lost = total - count
        windows = total / count
        lines.append(
            f"window {count:,}/{period:g} s: {tasks:,} tasks × {CRUMBS_PER_PROCESS} "
            f"breadcrumbs = {total:,} requests. If they all end within one window, the "
            f"server takes {count:,}; without a shared budget the other {lost:,} "
            f"({lost / total:.1%}) are answered 429 and lost (the official client; this "
            f"library without a spool drops them too, counted). With the budget at the "
            f"window, none is answered 429: {count:,} go out live, and the spool keeps "
            f"{spool_cap:,} more per spool directory, runs' outcomes first (one shared "
            f"home directory: {min(tasks, spool_cap):,} of the {tasks:,} outcomes; a "
            f"spool per node keeps {spool_cap:,} per node); replaying {spool_cap:,} "
            f"takes {spool_cap / count * period / 60:,.0f} min. Delivering all "
            f"{total:,} live needs the array spread over at least "
            f"{windows * period / 60:,.0f} min (for example with Slurm's "
            f"`--array=1-{tasks}%N` throttle)"
        )
    return lines
