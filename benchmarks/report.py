"""Turn the results into Markdown tables, goal verdicts and the per-call plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import LOCAL_LIBS, NETWORK_LIBS, STATES, label

_VARIANT_TITLES = {
    "plain": "`logger.error(msg)`",
    "exc_info": "`logger.error(msg, exc_info=True)`",
    "repeated": "same message every call",
    "flood": "`logger.error(msg)` past 1,024 distinct messages in 60 s",
    "after_idle": "one call after 50 ms idle",
}

# --- formatting ---------------------------------------------------------------------------


def fmt_us(us: float | None) -> str:
    """A duration given in µs, in the unit that reads best."""
    if us is None:
        return "–"
    if us < 10:
        return f"{us:.2f} µs"
    if us < 1000:
        return f"{us:.1f} µs"
    if us < 1e6:
        return f"{us / 1e3:.1f} ms"
    return f"{us / 1e6:.2f} s"


def fmt_ms(seconds: float | None, *, sign: bool = False) -> str:
    """Seconds shown in ms (or s past 10 s)."""
    if seconds is None:
        return "–"
    prefix = "+" if sign and seconds >= 0 else ""
    if abs(seconds) >= 10:
        return f"{prefix}{seconds:.1f} s"
    return f"{prefix}{seconds * 1e3:.0f} ms"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio as ``1.9×``."""
    if ratio is None:
        return "–"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.0f}×"
    return f"{ratio:.1f}×"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- per-call -------------------------------------------------------------------------------


def cell(percall: dict[str, Any], lib: str, state: str, variant: str) -> dict[str, Any] | None:
    """One measurement: ``{"blocked", "per_call_us" | "lower_bound_us", ...}`` or None."""
    cells = percall.get("cells", {}).get(lib, {})
    by_state = cells.get("any" if lib in LOCAL_LIBS else state)
    if not by_state or "error" in by_state:
        return None
    value = by_state.get(variant)
    return value if isinstance(value, dict) else None


def cost_us(percall: dict[str, Any], lib: str, state: str, variant: str) -> float | None:
    """Median µs per call (the lower bound when blocked), or None."""
    c = cell(percall, lib, state, variant)
    if c is None:
        return None
    if c.get("blocked"):
        return float(c["lower_bound_us"])
    return float(c["per_call_us"]["median"])


def _cost_text(percall: dict[str, Any], lib: str, state: str, variant: str) -> str:
    c = cell(percall, lib, state, variant)
    if c is None:
        by_state = percall.get("cells", {}).get(lib, {}).get(state, {})
        if lib in percall.get("skipped", {}):
            return "not installed"
        return "error" if by_state and "error" in by_state else "–"
    if c.get("blocked"):
        return f"≥ {fmt_us(c['lower_bound_us'])} (blocked)"
    cost = float(c["per_call_us"]["median"])
    floor = cost_us(percall, "queue", state, variant)
    ratio = None if not floor else cost / floor
    return f"{fmt_us(cost)} ({fmt_ratio(ratio)})"


def percall_tables(percall: dict[str, Any]) -> str:
    """Tables: healthy server by variant; every state; MigasHandler against healthy."""
    variants = percall.get("variants", list(_VARIANT_TITLES))
    libs = [*LOCAL_LIBS, *NETWORK_LIBS]
    out = ["### Cost per call on the application's thread, healthy server", ""]
    out.append(
        "Median per call (× QueueHandler into a SimpleQueue, the floor of a non-blocking handler)."
    )
    out.append("")
    rows = [
        [label(lib)] + [_cost_text(percall, lib, "healthy", v) for v in (*variants, "after_idle")]
        for lib in libs
    ]
    out.append(_table(["library", *(_VARIANT_TITLES[v] for v in (*variants, "after_idle"))], rows))
    out += ["", "### Cost per call by server state", ""]
    out.append(
        "Median per call (× QueueHandler). slow = 200 ms per answer, hang = never answers, "
        "down = closed port."
    )
    out.append("")
    rows = []
    for lib in NETWORK_LIBS:
        for v in variants:
            rows.append(
                [label(lib), _VARIANT_TITLES[v]] + [_cost_text(percall, lib, s, v) for s in STATES]
            )
    out.append(_table(["library", "call", *STATES], rows))
    out += ["", "### MigasHandler: each server state ÷ healthy", ""]
    rows = []
    for v in variants:
        healthy = cost_us(percall, "migas_logging", "healthy", v)
        row = [_VARIANT_TITLES[v]]
        for s in STATES:
            value = cost_us(percall, "migas_logging", s, v)
            row.append(fmt_ratio(None if not healthy or value is None else value / healthy))
        rows.append(row)
    out.append(_table(["call", *STATES], rows))
    notes = percall.get("skipped", {})
    if notes:
        out += ["", *(f"- {text}" for text in sorted(set(notes.values())))]
    return "\n".join(out)


# --- the other benchmarks ---------------------------------------------------------------------


def _skipped(section: dict[str, Any]) -> list[str]:
    """Notes for the libraries a benchmark skipped (not installed)."""
    notes = sorted(set(section.get("skipped", {}).values()))
    return ["", *(f"- skipped: {text}" for text in notes)] if notes else []


def exit_table(exit_delay: dict[str, Any]) -> str:
    """Added wall time and exit time of a one-error process, by state."""
    out = ["### Exit: a process that logs one error and exits", ""]
    bare = exit_delay.get("bare_s", {}).get("median")
    out.append(
        f"Bare `python -c 'import logging'`: {fmt_ms(bare)}. Each cell: wall time added over the "
        "same script with the same imports and no handler (the baseline), then, in brackets, "
        "the time from the end of the script to the process being gone."
    )
    out.append("")
    rows = []
    for lib, entry in exit_delay.get("libs", {}).items():
        row = [
            label(lib),
            f"{fmt_ms(entry['baseline_s']['median'])} ({fmt_ms(entry['imports_s'], sign=True)})",
        ]
        for state in STATES:
            st = entry["states"][state]
            if st["killed"]:
                row.append(f"never exits (killed at {st['cap_s']:.0f} s)")
            elif st["added_s"] is None:
                row.append("error")
            else:
                row.append(
                    f"{fmt_ms(st['added_s'], sign=True)} ({fmt_ms(st['exit_s']['median'])})"
                )
        rows.append(row)
    out.append(_table(["library", "baseline (imports)", *STATES], rows))
    out += _skipped(exit_delay)
    return "\n".join(out)


def import_table(imports: dict[str, Any]) -> str:
    """Import cost of each statement."""
    out = ["### Import time", ""]
    rows = []
    for entry in imports.get("imports", {}).values():
        rows.append(
            [
                f"`{entry['statement']}`",
                fmt_ms(entry["in_process_s"]["median"]),
                fmt_ms(entry["wall_over_bare_s"], sign=True),
            ]
        )
    out.append(
        _table(
            ["statement", "in process (median)", "process wall time over `python -c pass`"], rows
        )
    )
    return "\n".join(out)


def throughput_tables(tp: dict[str, Any]) -> str:
    """Delivery rate against the ceiling, and the busy-application test."""
    n = tp.get("records")
    out = [f"### Delivery throughput: a burst of {n} distinct records", ""]
    ceiling = tp.get("ceiling_rate", {}).get("median")
    handler = tp.get("handler_rate", {}).get("median")
    rows = [
        [
            "bare `requests.Session` loop (ceiling)",
            f"{ceiling:.0f}/s" if ceiling else "–",
            ", ".join(map(str, tp.get("ceiling_lost", []))),
            "1.00",
        ],
        [
            "MigasHandler (worker thread)",
            f"{handler:.0f}/s" if handler else "–",
            ", ".join(map(str, tp.get("handler_lost", []))),
            f"{tp['ratio']:.2f}" if tp.get("ratio") else "–",
        ],
    ]
    paired = tp.get("paired_ratio", {})
    out.append(_table(["sender", "breadcrumbs/s (median)", "lost per round", "÷ ceiling"], rows))
    if paired.get("median") is not None:
        q1, q3 = paired["q1"] or paired["median"], paired["q3"] or paired["median"]
        out += [
            "",
            (
                f"Median of the rounds' own ratios: {paired['median']:.2f} "
                f"(quartiles {q1:.2f}–{q3:.2f}, {paired['n']} rounds)."
            ),
        ]
    for start_kind, busy in tp.get("busy", {}).items():
        if not busy:
            continue
        first = next(iter(busy.values()))
        out += [
            "",
            (
                f"### Delivery while the application is busy ({start_kind} start): "
                f"{first['records']} errors, then {first['busy_seconds']:g} s of pure-Python "
                "CPU work"
            ),
            "",
        ]
        rows = [
            [label(lib), str(b["before_spin"]), str(b["by_spin_end"]), str(b["eventually"])]
            for lib, b in busy.items()
        ]
        out.append(
            _table(["library", "arrived before the loop", "by the loop's end", "eventually"], rows)
        )
    out += _skipped(tp)
    return "\n".join(out)


def memory_table(mem: dict[str, Any]) -> str:
    """Peak RSS per configuration with the server down."""
    out = [f"### Memory: {mem.get('records', 0):,} distinct errors logged, server down", ""]
    rows = []
    for name, run in mem.get("runs", {}).items():
        if "peak_rss_kib" not in run:
            rows.append([run.get("description", name), "error", "", "", "", "", ""])
            continue
        cps = run["rss_checkpoints_kib"]
        growth = (cps[-1] - cps[min(2, len(cps) - 1)]) / 1024
        stats = run.get("stats") or {}
        outcome = ""
        if stats:
            dropped = ", ".join(f"{k} {v:,}" for k, v in stats.get("dropped", {}).items())
            outcome = (
                f"sent {stats.get('sent', 0):,}; folded {stats.get('folded', 0):,}; {dropped}"
            )
        rows.append(
            [
                run["description"],
                f"{run.get('logged', mem.get('records', 0)):,}",
                f"{run['peak_rss_kib'] / 1024:.1f} MiB",
                f"{(run.get('over_baseline_kib') or 0) / 1024:+.1f} MiB",
                f"{growth:+.1f} MiB",
                f"{run['per_call_us']:.1f} µs",
                outcome,
            ]
        )
    out.append(
        _table(
            [
                "configuration",
                "records logged",
                "peak RSS",
                "over baseline",
                "growth 20 %→100 %",
                "per call",
                "what became of the records",
            ],
            rows,
        )
    )
    return "\n".join(out)


# --- cluster -------------------------------------------------------------------------------------


def cluster_table(cluster: dict[str, Any]) -> str:
    """One row per (library, N, window, server), and the array-job arithmetic."""
    out = ["### Cluster: N processes at once behind one address", ""]
    out.append(
        "Each process: 3 warnings, then ends; one in four crashes. MigasHandler: "
        "`track=True`, a shared spool, `machine_rate` = the server's window. *terminals*: "
        "runs whose terminal breadcrumb was stored / is its session's latest (a later "
        "second than its other rows), after the run, then after ONE `spool send`. *flush "
        "ends*: end of script to the end of the exit handlers (the library's flush "
        "included), median / max. *exit*: end of script to process gone, median / max "
        "(the interpreter's own teardown included, which a herd of N on 2 CPUs slows). "
        "*added*: wall time from the go to the process gone over the same herd with the "
        "library not configured, median / max."
    )
    out.append("")
    rows = []
    for e in cluster.get("scenarios", []):
        n = e["n"]
        direct = e["direct"]
        after = e.get("after_replay")
        send = e.get("spool_send") or {}
        replay = "no spool"
        if after is not None:
            replay = (
                f"{after['terminal']}/{n} stored, {after['latest']}/{n} latest; "
                f"spooled {e['spooled']}, sent {send.get('sent', '?')}, "
                f"left {e['left_in_spool']}"
            )
        stored = after["rows"] if after is not None else direct["rows"]
        limited = f"{e['rate_limited']}"
        if after is not None:
            limited += f" / {e['replay_rate_limited']}"
        window = e["window"]
        flushed = e.get("flushed_s") or {}
        rows.append(
            [
                label(e["lib"]),
                str(n),
                f"{window[0]:,}/{window[1]:g} s",
                "up" if e["phase"] == "up" else "down, then up",
                f"{direct['terminal']}/{n} stored, {direct['latest']}/{n} latest",
                replay,
                f"{stored}/{e['expected_crumbs']}",
                limited,
                f"{fmt_ms(flushed.get('median'))} / {fmt_ms(flushed.get('max'))}",
                f"{fmt_ms(e['exit_s']['median'])} / {fmt_ms(e['exit_s']['max'])}",
                (
                    f"{fmt_ms(e.get('added_median_s'), sign=True)} / "
                    f"{fmt_ms(e.get('added_max_s'), sign=True)}"
                ),
            ]
        )
    out.append(
        _table(
            [
                "library",
                "N",
                "window",
                "server",
                "terminals after the run",
                "after one spool send",
                "breadcrumbs stored",
                "429s (run / replay)",
                "flush ends",
                "exit",
                "added",
            ],
            rows,
        )
    )
    lines = cluster.get("array_job", [])
    if lines:
        out += ["", "A 10,000-task array job behind one address (arithmetic):", ""]
        out += [f"- {line}." for line in lines]
    return "\n".join(out + _skipped(cluster))


# --- goals -----------------------------------------------------------------------------------


def _margin_ms(seconds: float) -> str:
    """A margin in ms, signed, with a decimal when it is small."""
    ms = seconds * 1e3
    return f"{ms:+.1f} ms" if abs(ms) < 10 else f"{ms:+.0f} ms"


def _goal(goal: str, measured: str, limit: str, met: bool | None, margin: str) -> dict[str, Any]:
    return {"goal": goal, "measured": measured, "limit": limit, "met": met, "margin": margin}


def _exit_goals(
    ml: dict[str, Any], imports: dict[str, Any], requests_s: float | None
) -> list[dict[str, Any]]:
    out = []
    hang = ml["states"]["hang"]
    value = hang["exit_s"]["median"]
    if value is not None:
        out.append(
            _goal(
                "server hanging: exit within the flush deadline (2 s) + 0.2 s",
                f"exit {fmt_ms(value)} after the script's end "
                f"({fmt_ms(hang['added_s'], sign=True)} wall over the baseline)",
                "2200 ms",
                value <= 2.2,
                _margin_ms(2.2 - value),
            )
        )
    if requests_s is None:
        requests_s = imports.get("requests", {}).get("in_process_s", {}).get("median")
    added = ml["states"]["healthy"]["added_s"]
    if requests_s is not None and added is not None:
        limit = requests_s + 0.030
        out.append(
            _goal(
                "server healthy: at most `import requests` + 30 ms over the same process "
                "without the handler",
                fmt_ms(added, sign=True),
                f"{fmt_ms(limit)} ({fmt_ms(requests_s)} + 30 ms)",
                added <= limit,
                _margin_ms(limit - added),
            )
        )
    down = ml["states"]["down"]
    value = down["exit_s"]["median"]
    if value is not None:
        out.append(
            _goal(
                "server down: exit costs next to nothing (docs/delivery.md: "
                '"a dead one nothing"; taken here as ≤ 200 ms)',
                f"exit {fmt_ms(value)} ({fmt_ms(down['added_s'], sign=True)} wall over "
                "the baseline)",
                "200 ms",
                value <= 0.2,
                _margin_ms(0.2 - value),
            )
        )
    return out


def _cluster_goals(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's goals, from the MigasHandler scenarios of the cluster benchmark."""
    ours = [e for e in cluster.get("scenarios", []) if e["lib"] == "migas_logging"]
    if not ours:
        return []
    out = []
    short = [e for e in ours if (e.get("after_replay") or {}).get("latest", 0) < e["n"]]
    worst = min(ours, key=lambda e: e["after_replay"]["latest"] / e["n"])
    out.append(
        _goal(
            "cluster: 100 % of terminal breadcrumbs delivered after one replay, each its "
            "session's latest, in every scenario",
            f"worst {worst['after_replay']['latest']}/{worst['n']} (N={worst['n']}, "
            f"{worst['window'][0]}/{worst['window'][1]:g} s, server {worst['phase']}); "
            f"{len(ours) - len(short)} of {len(ours)} scenarios at 100 %",
            "100 % in every scenario",
            not short,
            f"{len(short)} scenario(s) short",
        )
    )
    limited = sum(e["rate_limited"] for e in ours if e["phase"] == "up")
    out.append(
        _goal(
            "cluster: zero 429 answers with the shared budget at the server's window",
            f"{limited} during the runs (server up)",
            "0",
            limited == 0,
            f"{-limited:+d}",
        )
    )
    flushes = [
        e["flushed_s"]["max"] for e in ours if (e.get("flushed_s") or {}).get("max") is not None
    ]
    if flushes:
        worst_flush = max(flushes)
        out.append(
            _goal(
                "cluster: every process's exit handlers (the library's flush) end within "
                "its flush deadline (2 s) + 0.3 s",
                f"max {fmt_ms(worst_flush)} from the end of its script",
                "2300 ms",
                worst_flush <= 2.3,
                _margin_ms(2.3 - worst_flush),
            )
        )
    exits = [e["exit_s"]["max"] for e in ours if e["exit_s"]["max"] is not None]
    killed = sum(e["killed"] for e in ours)
    if exits:
        worst_exit = max(exits)
        limit = 2.0 + 0.3
        out.append(
            _goal(
                "cluster: every process exits within its flush deadline (2 s) + 0.3 s",
                f"max {fmt_ms(worst_exit)} from the end of its script"
                + (f"; {killed} killed" if killed else "")
                + _baseline_exits(cluster),
                "2300 ms",
                worst_exit <= limit and not killed,
                _margin_ms(limit - worst_exit),
            )
        )
    return out


def _baseline_exits(cluster: dict[str, Any]) -> str:
    """The same herds' exits with the library imported and not configured."""
    parts = [
        f"N={key.split('/')[1]}: {fmt_ms(base['exit_s']['max'])}"
        for key, base in cluster.get("baseline", {}).items()
        if key.startswith("migas_logging/") and base["exit_s"].get("max") is not None
    ]
    return f" (not configured, max: {', '.join(parts)})" if parts else ""


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its measured figure, limit and verdict (None: not measured)."""
    out: list[dict[str, Any]] = []
    imports = results.get("import_time", {}).get("imports", {})
    ml = results.get("exit_delay", {}).get("libs", {}).get("migas_logging")
    if ml:
        out += _exit_goals(ml, imports, results["exit_delay"].get("requests_import_s"))
    ml_import = imports.get("migas_logging", {}).get("in_process_s", {}).get("median")
    if ml_import is not None:
        out.append(
            _goal(
                "`import migas_logging` adds at most 20 ms",
                fmt_ms(ml_import),
                "20 ms",
                ml_import <= 0.020,
                f"{(0.020 - ml_import) * 1e3:+.1f} ms",
            )
        )
    tp = results.get("throughput", {})
    if tp.get("ratio") is not None:
        lost = sum(tp.get("handler_lost", []))
        paired = tp.get("paired_ratio", {}).get("median") or tp["ratio"]
        out.append(
            _goal(
                "delivery throughput ≥ 90 % of a bare requests.Session loop, nothing lost",
                f"{paired * 100:.0f} % (median of the rounds' ratios; medians "
                f"{tp['handler_rate']['median']:.0f}/s vs {tp['ceiling_rate']['median']:.0f}/s), "
                f"lost {lost}",
                "90 %, 0 lost",
                paired >= 0.9 and lost == 0,
                f"{(paired - 0.9) * 100:+.0f} points",
            )
        )
    for start_kind, by_lib in tp.get("busy", {}).items():
        busy = by_lib.get("migas_logging")
        if not busy or busy.get("by_spin_end") is None:
            continue
        sentry = by_lib.get("sentry", {}).get("by_spin_end")
        out.append(
            _goal(
                "the worker makes progress while the application's thread is busy in pure "
                f"Python ({start_kind} start)",
                f"{busy['by_spin_end']} of {busy['records']} arrived before the "
                f"{busy['busy_seconds']:g} s loop ended"
                + ("" if sentry is None else f" (sentry-sdk: {sentry})"),
                "> 0 (all, ideally)",
                busy["by_spin_end"] > 0,
                f"{busy['by_spin_end'] / busy['records'] * 100:.0f} % delivered",
            )
        )
    out += _cluster_goals(results.get("cluster", {}))
    for run in results.get("memory", {}).get("runs", {}).values():
        if "rss_checkpoints_kib" not in run or not run.get("stats"):
            continue
        cps = run["rss_checkpoints_kib"]
        growth = (cps[-1] - cps[min(2, len(cps) - 1)]) / 1024
        over = (run.get("over_baseline_kib") or 0) / 1024
        out.append(
            _goal(
                f"memory bounded with the server down ({run['description']})",
                f"peak {run['peak_rss_kib'] / 1024:.1f} MiB ({over:+.1f} MiB over the "
                f"baseline); {growth:+.1f} MiB from 20 % to 100 % of the records",
                "no growth (≤ 2 MiB) after 20 % of the records",
                growth <= 2.0,
                f"{2.0 - growth:+.1f} MiB",
            )
        )
    return out


def goals_table(items: list[dict[str, Any]]) -> str:
    """The goals as a table."""
    rows = []
    for g in items:
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[g["met"]]
        rows.append([g["goal"], g["measured"], g["limit"], verdict, g.get("margin") or ""])
    return "### Goals\n\n" + _table(["goal", "measured", "limit", "verdict", "margin"], rows)


def markdown(results: dict[str, Any]) -> str:
    """Every table of the results that were run."""
    meta = results.get("meta", {})
    parts = [
        "## migas-logging benchmarks",
        "",
        (
            f"{meta.get('mode', '')} run, {meta.get('date', '')}, {meta.get('machine', '')}, "
            f"Python {meta.get('python', '')}; load average {meta.get('load_before', '')} "
            f"before, {meta.get('load_after', '')} after; {meta.get('duration_s', 0):.0f} s."
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
    ]
    if "percall" in results:
        parts += ["", percall_tables(results["percall"])]
    if "exit_delay" in results:
        parts += ["", exit_table(results["exit_delay"])]
    if "import_time" in results:
        parts += ["", import_table(results["import_time"])]
    if "throughput" in results:
        parts += ["", throughput_tables(results["throughput"])]
    if "memory" in results:
        parts += ["", memory_table(results["memory"])]
    if "cluster" in results:
        parts += ["", cluster_table(results["cluster"])]
    if results.get("goals"):
        parts += ["", goals_table(results["goals"])]
    return "\n".join(parts) + "\n"


# --- the plot ----------------------------------------------------------------------------------


def plot(percall: dict[str, Any], path: Path) -> bool:
    """Per-call cost by library and server state, log scale; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return False
    variants = [v for v in ("plain", "exc_info", "flood") if v in percall.get("variants", [])]
    libs = [*LOCAL_LIBS, *NETWORK_LIBS]
    colors = {"healthy": "#2b8a3e", "slow": "#e67700", "hang": "#c92a2a", "down": "#5f3dc4"}
    local_color = "#868e96"
    fig, axes = plt.subplots(1, len(variants), figsize=(6.2 * len(variants), 6.8), sharey=True)
    if len(variants) == 1:
        axes = [axes]
    height = 0.19
    for ax, variant in zip(axes, variants, strict=True):
        yticks, ylabels = [], []
        for y, lib in enumerate(reversed(libs)):
            yticks.append(y)
            ylabels.append(label(lib))
            if lib in LOCAL_LIBS:
                value = cost_us(percall, lib, "any", variant)
                if value is not None:
                    ax.barh(y, value, height=height * 2, color=local_color)
                    ax.text(value * 1.08, y, fmt_us(value), va="center", fontsize=7)
                continue
            for k, state in enumerate(STATES):
                offset = (1.5 - k) * height
                c = cell(percall, lib, state, variant)
                if c is None:
                    continue
                value = cost_us(percall, lib, state, variant) or 0.0
                blocked = bool(c.get("blocked"))
                ax.barh(
                    y + offset,
                    value,
                    height=height,
                    color=colors[state],
                    hatch="///" if blocked else None,
                    edgecolor="white" if blocked else None,
                )
                text = ("≥ " if blocked else "") + fmt_us(value)
                ax.text(value * 1.08, y + offset, text, va="center", fontsize=6.5)
        floor = cost_us(percall, "queue", "any", variant)
        if floor:
            ax.axvline(floor, color="#343a40", linestyle="--", linewidth=0.8)
            ax.text(floor * 1.1, -0.55, "QueueHandler", fontsize=7, color="#343a40")
        ax.set_xscale("log")
        ax.set_xlim(1, 5e7)
        ax.set_ylim(-0.7, len(libs) - 0.5)
        ax.set_yticks(yticks, ylabels)
        ax.set_xlabel("µs per call on the application's thread (median, log scale)")
        ax.set_title(_VARIANT_TITLES[variant].replace("`", ""), fontsize=10)
        ax.grid(axis="x", which="major", linewidth=0.3)
    handles = [Patch(color=colors[s], label=f"server {s}") for s in STATES]
    handles.append(Patch(color=local_color, label="no I/O (any server state)"))
    handles.append(
        Patch(facecolor="#c92a2a", edgecolor="white", hatch="///", label="blocked (lower bound)")
    )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle("Cost of one logger.error() call, by library and server state (lower is better)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return True


def plot_cluster(cluster: dict[str, Any], path: Path) -> bool:
    """Terminal breadcrumbs that are their session's latest (after the run, after one
    replay) and exit times, per scenario and library; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = cluster.get("scenarios", [])
    if not scenarios:
        return False

    def name_of(e: dict[str, Any]) -> str:
        return f"N={e['n']} {e['window'][0]}/{e['window'][1]:g}s {e['phase']}"

    names = list(dict.fromkeys(name_of(e) for e in scenarios))
    libs = [lib for lib in ("migas_logging", "migas") if any(e["lib"] == lib for e in scenarios)]
    colors = {"migas_logging": "#1c7ed6", "migas": "#868e96"}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8.2), sharex=True)
    width = 0.8 / len(libs)
    for k, lib in enumerate(libs):
        xs, live, replayed, flush, gone = [], [], [], [], []
        for e in scenarios:
            if e["lib"] != lib:
                continue
            n = e["n"]
            x = names.index(name_of(e))
            xs.append(x + (k - (len(libs) - 1) / 2) * width)
            live.append(100 * e["direct"]["latest"] / n)
            replayed.append(100 * (e.get("after_replay") or e["direct"])["latest"] / n)
            flush.append((e.get("flushed_s") or {}).get("max") or 0.0)
            gone.append(e["exit_s"].get("max") or 0.0)
        top.bar(xs, replayed, width=width * 0.95, color=colors[lib], alpha=0.35)
        top.bar(xs, live, width=width * 0.95, color=colors[lib], label=label(lib))
        bottom.bar(xs, gone, width=width * 0.95, color=colors[lib], alpha=0.35)
        bottom.bar(xs, flush, width=width * 0.95, color=colors[lib], label=label(lib))
    top.set_ylabel("% of runs whose outcome is\nits session's latest breadcrumb")
    top.set_title(
        "Outcomes: live (solid), after one `spool send` (light; the official client has no spool)",
        fontsize=10,
    )
    top.set_ylim(0, 105)
    top.legend(loc="lower right", fontsize=8)
    bottom.axhline(2.3, color="#c92a2a", linestyle="--", linewidth=0.8)
    bottom.text(-0.45, 2.35, "flush deadline + 0.3 s", fontsize=7, color="#c92a2a")
    bottom.set_ylabel("seconds after the end of the script\n(max over the herd)")
    bottom.set_title(
        "Exit: the exit handlers end (solid), the process is gone (light)", fontsize=10
    )
    bottom.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(axis="y", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
