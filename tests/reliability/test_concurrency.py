"""Threads and processes: no deadlock, nothing sent twice, every record accounted for.

The library keeps one pipeline per process and one worker thread; many application
threads share one short critical section per record, ``dictConfig`` may replace the
handler while records flow, and forked children (``os.fork``, ``multiprocessing`` with
fork) must ship their own records, once, while the parent's stay the parent's. The
session rules are those of ``migas_logging/config.py``: a forked child keeps its
parent's session (one run), a spawned one starts its own unless the parent exported
``MIGAS_SESSION_ID``.

Deadlocks show as a pytest-timeout failure; every test has its own, short, timeout.
"""

from __future__ import annotations

import logging
import logging.config
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migas_logging import MigasHandler, client
from migas_logging.collector import LocalCollector

from .conftest import PROJECT, AppRun, app_env, assert_exact, make_handler, run_app

REPEATED = re.compile(r" \[repeated (\d+) more times? in [0-9.]+ s\]$")


def folded_in_summaries(rows: list[dict[str, Any]]) -> int:
    """The repeats that the stored summary breadcrumbs carry, added up."""
    total = 0
    for row in rows:
        match = REPEATED.search(row["status_desc"] or "")
        if match:
            total += int(match.group(1))
    return total


def originals(rows: list[dict[str, Any]]) -> list[str]:
    """The status descriptions of the stored rows that are not fold summaries."""
    return [r["status_desc"] for r in rows if not REPEATED.search(r["status_desc"] or "")]


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Start ``count`` threads on ``target(index)`` together and join them."""
    barrier = threading.Barrier(count)

    def body(index: int) -> None:
        barrier.wait()
        target(index)

    threads = [threading.Thread(target=body, args=(i,), name=f"app-{i}") for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)


# --- threads -----------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_sixteen_threads_a_thousand_records_each(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """16 x 1,000 records: exact books, every original once, summaries carry every repeat."""
    handler = make_handler(collector.url, app_log, fold_window=60, queue_size=100_000)

    def log_thousand(t: int) -> None:
        # 59 distinct records per thread (944 in all: under the 1,024 open fold windows,
        # see the next test) and 941 repeats of one template per thread
        for i in range(1000):
            if i % 17 == 0:
                app_log.error(f"thread {t} distinct {i}")
            else:
                app_log.error(f"thread {t} step %d", i)

    workers_before = {t for t in threading.enumerate() if t.name == "migas-logging-worker"}
    run_threads(16, log_thousand)
    assert client.current_client().flush(60)  # type: ignore[union-attr]
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert (16_000, {}) == (stats["emitted"], stats["dropped"])
    assert (944 + 16, 16 * 940) == (stats["sent"], stats["folded"])
    rows = collector.breadcrumbs()
    assert stats["sent"] + stats["summaries"] == len(rows)
    sent_texts = originals(rows)
    assert len(sent_texts) == len(set(sent_texts)) == stats["sent"]  # nothing sent twice
    assert stats["folded"] == folded_in_summaries(rows)  # and no repeat lost
    new_workers = {t for t in threading.enumerate() if t.name == "migas-logging-worker"}
    assert 1 == len(new_workers - workers_before)  # one worker, however many threads log


@pytest.mark.timeout(60)
def test_more_distinct_records_than_fold_windows(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """Past 1,024 open fold windows the oldest closes early: its count still goes out."""
    handler = make_handler(collector.url, app_log, fold_window=60, queue_size=100_000)
    for i in range(1500):
        app_log.error(f"distinct {i}")
        app_log.error("the repeating one %s", i)
    assert client.current_client().flush(60)  # type: ignore[union-attr]
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert (3000, {}) == (stats["emitted"], stats["dropped"])
    rows = collector.breadcrumbs()
    assert stats["sent"] + stats["summaries"] == len(rows)
    assert stats["folded"] == folded_in_summaries(rows)  # every repeat is still counted
    texts = originals(rows)
    assert 1500 == len({t for t in texts if ": distinct " in t})
    assert 1 <= texts.count(f"{app_log.name}: the repeating one %s")


@pytest.mark.timeout(60)
def test_a_thread_crashes_while_others_log(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """One thread dies of an exception mid-flow: reported once, the others unharmed."""
    previous: list[BaseException | None] = []
    threading.excepthook = lambda args: previous.append(args.exc_value)  # restored by conftest
    handler = make_handler(collector.url, app_log, excepthook=True, queue_size=100_000)

    def work(t: int) -> None:
        for i in range(200):
            app_log.error(f"worker {t} record {i}")
            if t == 0 and i == 100:
                raise ZeroDivisionError("the crashing thread")

    run_threads(8, work)
    assert client.current_client().flush(60)  # type: ignore[union-attr]
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert 7 * 200 + 101 + 1 == stats["emitted"]  # the records, and the crash breadcrumb
    assert stats["emitted"] == stats["sent"]
    rows = collector.breadcrumbs()
    crashes = [r for r in rows if r["error_type"] == "ZeroDivisionError"]
    assert 1 == len(crashes)
    assert ("F", "Errored in thread app-0") == (crashes[0]["status"], crashes[0]["status_desc"])
    assert len(rows) == len({r["status_desc"] + (r["error_type"] or "") for r in rows})
    assert ["the crashing thread"] == [str(e) for e in previous]  # the chain still runs


@pytest.mark.timeout(90)
def test_dictconfig_reconfigures_while_records_flow(collector: LocalCollector) -> None:
    """30 reconfigurations under 8 logging threads: no deadlock, exact books, no double."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "migas": {
                "class": "migas_logging.MigasHandler",
                "project": PROJECT,
                "endpoint": collector.url,
                "level": "ERROR",
                "rate_limit": None,
                "fold_window": 0,
                "queue_size": 100_000,
            }
        },
        "loggers": {"flow": {"handlers": ["migas"], "level": "ERROR", "propagate": False}},
    }
    flow = logging.getLogger("flow")
    seen: list[MigasHandler] = []
    logging.config.dictConfig(config)
    seen.append(flow.handlers[0])  # type: ignore[arg-type]
    stop = threading.Event()
    logged = Counter[int]()

    def keep_logging(t: int) -> None:
        i = 0
        while not stop.is_set():
            flow.error(f"flow {t} record {i}")
            i += 1
            time.sleep(0.002)
        logged[t] = i

    threads = [threading.Thread(target=keep_logging, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    try:
        for _ in range(30):
            time.sleep(0.03)
            logging.config.dictConfig(config)
            seen.append(flow.handlers[0])  # type: ignore[arg-type]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    for t in range(8):
        flow.error(f"after the last reconfiguration {t}")
    assert client.current_client().flush(60)  # type: ignore[union-attr]

    assert 31 == len({id(h) for h in seen})
    emitted = sent = closed = 0
    for handler in seen:
        stats = handler.stats.as_dict()
        assert_exact(stats)
        assert set(stats["dropped"]) <= {"closed"}
        emitted += stats["emitted"]
        sent += stats["sent"]
        closed += stats["dropped"].get("closed", 0)
    total = client.current_client().total.as_dict()  # type: ignore[union-attr]
    assert (emitted, sent) == (total["emitted"], total["sent"])
    assert emitted <= sum(logged.values()) + 8  # a record may fall between two configs
    rows = collector.breadcrumbs()
    texts = [r["status_desc"] for r in rows]
    assert sent == len(texts) == len(set(texts))  # nothing sent twice
    assert {f"flow: after the last reconfiguration {t}" for t in range(8)} <= set(texts)
    assert seen[-1].stats.emitted >= 8


# --- processes ---------------------------------------------------------------------


def child_reports(run: AppRun) -> dict[str, dict[str, Any]]:
    """The REPORT of every child, by role."""
    return {r["role"]: r for r in run.tagged("REPORT") if not r["main"]}


def check_children(
    run: AppRun, collector: LocalCollector, tags: list[str], per_child: int
) -> list[dict[str, Any]]:
    """Each child's records arrived, once; each child's books are exact."""
    assert 0 == run.returncode, run.stderr
    rows = collector.breadcrumbs()
    texts = Counter(r["status_desc"] for r in rows)
    for tag in tags:
        for i in range(per_child):
            assert 1 == texts[f"app: {tag} record {i}"], (tag, i, run.stderr[-3000:])
    assert all(n == 1 for n in texts.values()), texts.most_common(3)  # nothing twice
    return rows


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_twenty_os_fork_children_each_ship_their_own(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """os.fork x 20: each child ships its records once, same session; the parent's once."""
    body = f"""
        import os, sys
        h = setup({collector.url!r}, rate_limit=None, fold_window=0)
        log.error("parent before the forks")
        h.flush(5)  # the worker is ready (see test_fork_right_after_the_first_record)
        pids = []
        for k in range(20):
            pid = os.fork()
            if pid == 0:
                role["name"] = f"fork-{{k}}"
                child_records(f"fork-{{k}}", 5)
                sys.exit(0)  # a normal exit: the exit flush runs in the child
            pids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
        extra["codes"] = codes
        log.error("parent after the forks")
    """
    run = run_app(body, app_env(tmp_path), timeout=90)
    tags = [f"fork-{k}" for k in range(20)]
    rows = check_children(run, collector, tags, 5)
    assert [0] * 20 == run.report["extra"]["codes"]
    descs = [r["status_desc"] for r in rows]
    assert 1 == descs.count("app: parent before the forks")
    assert 1 == descs.count("app: parent after the forks")
    assert 1 == len({r["session_id"] for r in rows})  # one run, one session
    for tag, report in child_reports(run).items():
        (stats,) = report["handlers"]
        assert_exact(stats)
        assert (5, 5) == (stats["emitted"], stats["sent"]), tag  # counts from zero
    assert 20 == len(child_reports(run))
    (parent,) = run.report["handlers"]
    assert (2, 2) == (parent["emitted"], parent["sent"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fifteen_multiprocessing_fork_children_that_flush(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """multiprocessing (fork) x 15, children flushing before they return: all arrive once."""
    body = f"""
        import multiprocessing
        h = setup({collector.url!r}, rate_limit=None, fold_window=0)
        log.error("parent")
        h.flush(5)
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=mp_child, args=(f"mpfork-{{k}}", 4, True)) for k in range(15)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        extra["codes"] = [p.exitcode for p in procs]
    """
    run = run_app(body, app_env(tmp_path), timeout=90)
    rows = check_children(run, collector, [f"mpfork-{k}" for k in range(15)], 4)
    assert [0] * 15 == run.report["extra"]["codes"]
    assert 1 == len({r["session_id"] for r in rows})


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_multiprocessing_fork_children_records_arrive_without_a_flush(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """A child that logs and returns (no flush of its own) still ships its records.

    multiprocessing's fork children end with ``os._exit()``, which skips ``atexit``: the
    library must flush through multiprocessing's own finalizers.
    """
    collector.fault("delay", seconds=0.3)  # a server 300 ms away, as a hosted one can be
    body = f"""
        import multiprocessing
        h = setup({collector.url!r}, rate_limit=None, fold_window=0, flush_deadline=3)
        log.error("parent")
        h.flush(5)
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=mp_child, args=(f"mp-{{k}}", 1, False)) for k in range(5)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
    """
    run = run_app(body, app_env(tmp_path), timeout=90)
    check_children(run, collector, [f"mp-{k}" for k in range(5)], 1)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fork_right_after_the_first_record(collector: LocalCollector, tmp_path: Path) -> None:
    """A program that logs once and forks at once (a pool started early): children ship.

    The worker imports lazily right after the first record; a fork in the middle of an
    import would leave the child a half-imported module (and a worker that fails on
    every breadcrumb). The library makes the fork wait for that preparation.
    """
    body = f"""
        import os, sys
        h = setup({collector.url!r}, rate_limit=None, fold_window=0)
        log.error("parent's first record")  # starts the worker, which starts importing
        import time
        pids = []
        for k in range(5):  # forks over the first ~50 ms, while the worker prepares
            pid = os.fork()
            if pid == 0:
                role["name"] = f"early-{{k}}"
                child_records(f"early-{{k}}", 2)
                sys.exit(0)
            pids.append(pid)
            time.sleep(0.01)
        for p in pids:
            os.waitpid(p, 0)
    """
    run = run_app(body, app_env(tmp_path), timeout=90)
    check_children(run, collector, [f"early-{k}" for k in range(5)], 2)
    for report in child_reports(run).values():
        assert {} == report["handlers"][0]["dropped"]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("export", [False, True], ids=["own-sessions", "exported-session"])
def test_spawned_children_ship_their_own(
    collector: LocalCollector, tmp_path: Path, export: bool
) -> None:
    """multiprocessing spawn: each child configures its handler and ships; sessions as doc'd."""
    count = 8 if export else 7
    body = f"""
        import multiprocessing
        from migas_logging import export_session_id
        h = setup({collector.url!r}, rate_limit=None, fold_window=0)
        if {export!r}:
            extra["exported"] = export_session_id()
        log.error("spawning parent")
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=spawn_child, args=({collector.url!r}, f"spawn-{{k}}", 3))
            for k in range({count})
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        extra["codes"] = [p.exitcode for p in procs]
    """
    run = run_app(body, app_env(tmp_path), timeout=100)
    tags = [f"spawn-{k}" for k in range(count)]
    rows = check_children(run, collector, tags, 3)
    assert [0] * count == run.report["extra"]["codes"]
    parent_session = run.report["session"]
    sessions = {r["status_desc"].split(" record")[0]: r["session_id"] for r in rows}
    child_sessions = {sessions[f"app: {tag}"] for tag in tags}
    if export:
        assert {parent_session} == child_sessions  # one pipeline run, one session
    else:
        assert count == len(child_sessions)  # a fresh interpreter is a run of its own
        assert parent_session not in child_sessions
    for report in child_reports(run).values():
        (stats,) = report["handlers"]
        assert_exact(stats)
        assert (3, 3) == (stats["emitted"], stats["sent"])


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_fork_while_the_worker_writes_the_audit_trail(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """With an audit file, a child forked mid-write still delivers its records."""
    body = f"""
        import os, sys
        from migas_logging import client
        h = setup({collector.url!r}, rate_limit=None, fold_window=0,
                  audit_file={str(tmp_path / "audit.jsonl")!r})
        log.error("parent")
        h.flush(5)
        audit = client.current_client().audit
        audit._lock.acquire()  # the moment the worker holds it while writing a line
        pid = os.fork()
        if pid == 0:
            child_records("audited-child", 2)
            flushed = client.current_client().flush(1.5)
            say("CHILD", stats=h.stats.as_dict(), flushed=flushed)
            os._exit(0)  # (a normal exit would block on that lock for good)
        audit._lock.release()
        os.waitpid(pid, 0)
    """
    run = run_app(body, app_env(tmp_path), timeout=40)
    (child,) = run.tagged("CHILD")
    assert child["flushed"], child
    assert (2, 2) == (child["stats"]["emitted"], child["stats"]["sent"])
    check_children(run, collector, ["audited-child"], 2)
