"""How long a process that logged one error takes to finish, in each server state.

Each run is a fresh ``python -c SCRIPT``: import the library, configure it as an
application would, log one error with ``exc_info`` (the official client: one
``migas.add_breadcrumb`` call), print ``time.time()`` at the end of the script, and exit.
Measured per run:

- ``total``: from ``Popen`` to the process being gone (wall clock);
- ``exit``: from the end of the script to the process being gone (``atexit`` flushes,
  joining threads...).

``added`` is ``median(total) - median(baseline)``, where the baseline is the same script
with the same imports and no handler configured (its error goes nowhere): the cost the
library adds to the run. The MigasHandler baseline with ``import requests`` added is run
in every round too, so that the cost of that import is known in the same conditions
(the goal for a healthy server is stated relative to it). Runs are interleaved (round
after round over states and libraries) so that machine noise spreads evenly; medians
are reported. A run that does not end by the cap is killed and reported as such
(``HTTPHandler`` has no timeout and never returns from a hanging server).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    NETWORK_LIBS,
    PROJECT,
    STATES,
    VERSION,
    available,
    child_env,
    label,
    median,
    summary,
)

FULL: dict[str, Any] = {"runs": 7, "cap": 8.0}
QUICK: dict[str, Any] = {"runs": 1, "cap": 4.0}

_IMPORTS = {
    "bare": "",
    "http": "import logging.handlers\n",
    "sentry": (
        "import sentry_sdk\nfrom sentry_sdk.integrations.logging import LoggingIntegration\n"
    ),
    "migas": "import migas\n",
    "migas_logging": "import migas_logging\n",
    "requests_ref": "import migas_logging\nimport requests\n",
}

_SETUP = {
    "http": (
        "logging.getLogger().addHandler(logging.handlers.HTTPHandler("
        "{host!r}, '/api/breadcrumb', method='POST'))\n"
    ),
    "sentry": (
        "sentry_sdk.init(dsn={dsn!r}, release='bench@1.0.0', "
        "integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)])\n"
    ),
    "migas": "migas.setup(endpoint={url!r} + '/graphql', save_config=False)\n",
    "migas_logging": (
        "logging.getLogger().addHandler(migas_logging.MigasHandler("
        "{project!r}, {version!r}, endpoint={url!r}))\n"
    ),
}

_BODY = """\
log = logging.getLogger("app")
try:
    raise ValueError("boom")
except ValueError:
    log.error("step failed", exc_info=True)
{extra}print(time.time(), flush=True)
"""

_MIGAS_CALL = (
    "    migas.add_breadcrumb({project!r}, {version!r}, status='F', "
    "status_desc='app: step failed', error_type='ValueError', error_desc='boom')\n"
)


def script(lib: str, *, url: str, dsn: str, configured: bool) -> str:
    """The child's script: ``lib`` configured (or only imported, for the baseline)."""
    fields = {
        "url": url,
        "dsn": dsn,
        "host": url.removeprefix("http://"),
        "project": PROJECT,
        "version": VERSION,
    }
    text = "import time\nimport logging\n" + _IMPORTS[lib]
    extra = ""
    if configured and lib != "bare":
        text += _SETUP[lib].format(**fields)
        if lib == "migas":
            extra = "try:\n    raise ValueError('boom')\nexcept ValueError:\n" + _MIGAS_CALL
            extra = extra.format(**fields)
    return text + _BODY.format(extra=extra)


def run_once(code: str, *, url: str, cap: float) -> dict[str, Any]:
    """Run one script; return ``total`` and ``exit`` seconds, or ``killed``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(url, with_path=False),
    )
    try:
        out, _ = proc.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"killed": True, "total": cap}
    gone_wall, total = time.time(), time.perf_counter() - start
    try:
        end_of_script = float(out.decode().split()[-1])
    except (ValueError, IndexError):
        return {"killed": False, "total": total, "error": f"exit status {proc.returncode}"}
    return {"killed": False, "total": total, "exit": gone_wall - end_of_script}


def run(server: Any, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Run every library in every state, interleaved; see the module docstring."""
    params = QUICK if quick else FULL
    libs = [lib for lib in NETWORK_LIBS if available(lib)]
    skipped = {lib: f"{label(lib)} is not installed" for lib in NETWORK_LIBS if not available(lib)}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        lib: {s: [] for s in (*STATES, "baseline")} for lib in libs
    }
    bare: list[float] = []
    requests_ref: list[float] = []
    healthy = server.set_state("healthy")
    warm = [script("bare", url=healthy.url, dsn="", configured=False)]
    warm += [script("requests_ref", url=healthy.url, dsn="", configured=False)]
    warm += [script(lib, url=healthy.url, dsn=healthy.sentry_dsn, configured=True) for lib in libs]
    for code in warm:  # untimed: fill the bytecode cache
        run_once(code, url=healthy.url, cap=params["cap"])
    for round_no in range(params["runs"]):
        bare.append(
            run_once(
                script("bare", url=healthy.url, dsn="", configured=False),
                url=healthy.url,
                cap=params["cap"],
            )["total"]
        )
        for lib in libs:
            code = script(lib, url=healthy.url, dsn=healthy.sentry_dsn, configured=False)
            raw[lib]["baseline"].append(run_once(code, url=healthy.url, cap=params["cap"]))
        code = script("requests_ref", url=healthy.url, dsn="", configured=False)
        requests_ref.append(run_once(code, url=healthy.url, cap=params["cap"])["total"])
        for state in STATES:
            for lib in libs:
                previous = raw[lib][state]
                if previous and previous[0].get("killed"):
                    continue  # it never exits in this state: once is enough
                endpoints = server.set_state(state)
                code = script(lib, url=endpoints.url, dsn=endpoints.sentry_dsn, configured=True)
                previous.append(run_once(code, url=endpoints.url, cap=params["cap"]))
        server.set_state("healthy")
        server.reset()
        log(f"  exit delay: round {round_no + 1}/{params['runs']} done")
    bare_median = median(bare) or 0.0
    out: dict[str, Any] = {
        "config": params,
        "bare_s": summary(bare),
        "requests_ref_s": summary(requests_ref),
        "libs": {},
        "skipped": skipped,
    }
    for lib in libs:
        base = [r["total"] for r in raw[lib]["baseline"] if "error" not in r]
        base_median = median(base) or 0.0
        entry: dict[str, Any] = {
            "baseline_s": summary(base),
            "imports_s": base_median - bare_median,
            "states": {},
        }
        for state in STATES:
            runs = raw[lib][state]
            killed = sum(1 for r in runs if r.get("killed"))
            totals = [r["total"] for r in runs if not r.get("killed") and "error" not in r]
            exits = [r["exit"] for r in runs if "exit" in r]
            total_median = median(totals)
            entry["states"][state] = {
                "runs": len(runs),
                "killed": killed,
                "total_s": summary(totals),
                "exit_s": summary(exits),
                "added_s": None if total_median is None else total_median - base_median,
                "cap_s": params["cap"],
            }
            if killed:
                log(f"  {label(lib)} [{state}]: never exited, killed at {params['cap']:.0f} s")
            else:
                added = entry["states"][state]["added_s"]
                log(
                    f"  {label(lib)} [{state}]: +{added * 1e3:.0f} ms over baseline, "
                    f"exit {median(exits) or 0:.3f} s"
                )
        out["libs"][lib] = entry
    if "migas_logging" in out["libs"] and requests_ref:
        # what `import requests` adds to the MigasHandler baseline, in the same rounds
        ml_base: float = out["libs"]["migas_logging"]["baseline_s"]["median"] or 0.0
        out["requests_import_s"] = (median(requests_ref) or 0.0) - ml_base
    return out
