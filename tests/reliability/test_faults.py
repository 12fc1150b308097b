"""Fault injection: whatever the server does, the application does not notice.

Every fault is played by a real server on 127.0.0.1 (the LocalCollector's faults, or a
tiny TCP server from ``conftest.py`` for what the collector cannot do). For each one:

* in this process, the logging calls return at once, the accounting adds up exactly
  (``emitted == sent + folded + sum(dropped)``), ``sent`` is what the collector stored,
  and when the server recovers, delivery resumes without a restart;
* in a program of its own, the process exits within ``flush_deadline`` + 3 s, with its
  exit status and output unchanged, and the accounting taken after the exit flush adds
  up (one event may still be on the wire when the deadline passes: ``pending <= 1``).

The two long pauses of the library (the circuit breaker's 30 s cooldown and the 60 s
window after a 429 without ``Retry-After``) are capped by ``quick_pipeline`` where a test
needs to see the recovery; every other part is the library's own code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from migas_logging import client
from migas_logging.collector import LocalCollector, free_port

from .conftest import (
    PROJECT,
    App,
    AppRun,
    Blackhole,
    TrickleServer,
    accounted,
    app_env,
    assert_exact,
    make_handler,
    quick_pipeline,
    run_app,
    wait_until,
)

#: Functional bound on one logging call: the network timeout in these tests is at least
#: 2 s (30 s where a hang is involved), so a call that waited on the network would show.
CALL_BOUND = 0.5


def log_timed(logger: logging.Logger, texts: list[str]) -> float:
    """Log each text at ERROR; return the longest call."""
    longest = 0.0
    for text in texts:
        start = time.monotonic()
        logger.error(text)
        longest = max(longest, time.monotonic() - start)
    return longest


# --- in process: the fault, then the recovery ----------------------------------------

# name -> (arm the fault on the collector, pipeline options, expected drops of 5 records)
Arm = Callable[[LocalCollector], None]
RECOVERING: dict[str, tuple[Arm, dict[str, Any], dict[str, int]]] = {
    "hang-then-answer": (lambda c: c.fault("hang", count=2), {"timeout": 0.5}, {}),
    "slow": (lambda c: c.fault("delay", seconds=0.3), {}, {}),
    "400": (lambda c: c.fault("status", status=400, count=1), {}, {"server_refused": 1}),
    "413": (lambda c: c.fault("status", status=413, count=1), {}, {"server_refused": 1}),
    "422": (lambda c: c.fault("status", status=422, count=1), {}, {"server_refused": 1}),
    "500-twice": (lambda c: c.fault("status", status=500, count=2), {}, {}),
    "503-twice": (lambda c: c.fault("status", status=503, count=2), {}, {}),
    "500-for-good": (lambda c: c.fault("status", status=500), {"retries": 1}, {"failed": 5}),
    "garbage-twice": (lambda c: c.fault("garbage", count=2), {}, {}),
    "garbage-for-good": (lambda c: c.fault("garbage"), {"retries": 1}, {"failed": 5}),
    "close-mid-answer": (lambda c: c.fault("close", count=2), {}, {}),
    "reset-mid-answer": (lambda c: c.fault("close", reset=True, count=2), {}, {}),
    "429-retry-after": (
        lambda c: c.fault("status", status=429, count=1, headers={"Retry-After": "1"}),
        {"quick": False},
        {},
    ),
    "429-rate-limited-window": (lambda c: c.set_rate_limit((3, 1.0)), {"pause": 1.5}, {}),
}


@pytest.mark.parametrize("name", list(RECOVERING))
def test_fault_then_recovery(
    collector: LocalCollector, app_log: logging.Logger, name: str
) -> None:
    """Each fault: calls return at once, accounting exact, sent == stored, then recovery."""
    arm, options, expected_drops = RECOVERING[name]
    options = dict(options)
    timeout = options.pop("timeout", 2.0)
    if options.pop("quick", True):
        quick_pipeline(
            collector.url,
            timeout,
            pause=options.pop("pause", 0.5),
            fold_window=0,
            rate_limit=None,
            queue_size=1000,
            retries=options.pop("retries", 3),
        )
    handler = make_handler(collector.url, app_log, timeout=timeout, **options)
    arm(collector)

    longest = log_timed(app_log, [f"during {name} #{i}" for i in range(5)])
    assert longest < CALL_BOUND
    assert handler.flush(20) is None  # flush() returns nothing, never raises
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert expected_drops == stats["dropped"]
    assert 5 - sum(expected_drops.values()) == stats["sent"]

    if collector.stats()["fault"] is not None:  # a fault for good: the server recovers
        collector.clear_fault()
    collector.set_rate_limit(None)
    log_timed(app_log, [f"after {name} #{i}" for i in range(3)])
    handler.flush(20)
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert 8 == stats["emitted"]
    assert 8 - sum(expected_drops.values()) == stats["sent"]
    rows = collector.breadcrumbs()
    assert stats["sent"] == len(rows)  # sent is exactly what the server stored
    descs = [r["status_desc"] for r in rows]
    assert [f"{app_log.name}: after {name} #{i}" for i in range(3)] == descs[-3:]
    assert len(descs) == len(set(descs))  # nothing stored twice
    assert [] == collector.lost()


def test_timed_out_request_may_still_be_stored_documented(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """At-least-once: a request the client gave up on (timeout) can still be stored.

    The protocol has no idempotency key, and the library retries timeouts, so a server
    that answers late stores the breadcrumb twice. docs/reliability.md says so; this test
    keeps the documentation honest.
    """
    collector.fault("hang", count=1)
    quick_pipeline(collector.url, 0.5, fold_window=0, rate_limit=None, retries=3)
    handler = make_handler(collector.url, app_log, timeout=0.5)
    app_log.error("answered late")
    handler.flush(10)
    assert 1 == handler.stats.sent
    collector.clear_fault()  # the held request is answered now, long after the timeout
    assert wait_until(lambda: len(collector.breadcrumbs()) == 2, 5)
    assert_exact(handler.stats.as_dict())


def test_429_retry_after_is_honoured(collector: LocalCollector, app_log: logging.Logger) -> None:
    """After a 429 with Retry-After: 1 the next try comes no sooner than that second."""
    collector.fault("status", status=429, count=1, headers={"Retry-After": "1"})
    handler = make_handler(collector.url, app_log)
    app_log.error("limited once")
    handler.flush(10)
    first, second = collector.requests()
    assert (429, 202) == (first.status, second.status)
    assert second.time - first.time >= 0.9
    assert 1 == handler.stats.sent


def test_429_without_retry_after_sends_nothing_during_the_window(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """The real server sends no Retry-After: no request at all for the rest of the window."""
    collector.set_rate_limit((2, 60.0))
    handler = make_handler(collector.url, app_log, flush_deadline=0.2)
    log_timed(app_log, [f"burst {i}" for i in range(6)])
    collector.wait_for_requests(3, timeout=5)
    time.sleep(1.5)
    assert [202, 202, 429] == [r.status for r in collector.requests()]
    assert 2 == handler.stats.sent
    handler.flush(0.2)
    assert_exact(handler.stats.as_dict(), max_pending=4)


def test_server_down_then_up_resumes_without_restart(app_log: logging.Logger) -> None:
    """Refused connections are dropped as unreachable; a server started later gets the rest."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    quick_pipeline(url, 2.0, pause=0.5, fold_window=0, rate_limit=None, retries=0)
    handler = make_handler(url, app_log, retries=0)
    assert log_timed(app_log, [f"while down {i}" for i in range(5)]) < CALL_BOUND
    handler.flush(10)
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert {"unreachable": 5} == stats["dropped"]
    with LocalCollector(port=port, register=(PROJECT,)) as collector:
        log_timed(app_log, [f"back up {i}" for i in range(3)])
        handler.flush(10)
        stats = handler.stats.as_dict()
        assert_exact(stats)
        assert 3 == stats["sent"]
        assert [f"{app_log.name}: back up {i}" for i in range(3)] == [
            r["status_desc"] for r in collector.breadcrumbs()
        ]


def test_server_stopped_mid_run_then_restarted(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """A server that goes away (keep-alive connection and all) and comes back on its port."""
    quick_pipeline(collector.url, 2.0, pause=0.5, fold_window=0, rate_limit=None, retries=0)
    handler = make_handler(collector.url, app_log, retries=0)
    app_log.error("before")
    handler.flush(5)
    collector.stop()
    log_timed(app_log, [f"while stopped {i}" for i in range(4)])
    handler.flush(10)
    collector.start()
    log_timed(app_log, [f"after restart {i}" for i in range(3)])
    handler.flush(10)
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert (4, {"unreachable": 4}) == (stats["sent"], stats["dropped"])
    assert 4 == len(collector.breadcrumbs())


def test_silent_host_connect_timeout_then_recovery(app_log: logging.Logger) -> None:
    """A host that never completes the TCP handshake costs the timeout, then a server answers."""
    hole = Blackhole()
    port = int(hole.url.rsplit(":", 1)[1])
    quick_pipeline(hole.url, 0.5, pause=0.5, fold_window=0, rate_limit=None, retries=0)
    handler = make_handler(hole.url, app_log, timeout=0.5, retries=0)
    try:
        assert log_timed(app_log, [f"silent {i}" for i in range(4)]) < CALL_BOUND
        handler.flush(15)
        stats = handler.stats.as_dict()
        assert_exact(stats)
        assert 0 == stats["sent"]
        # a connect timeout sent nothing: the server could not be reached
        assert {"unreachable"} == set(stats["dropped"])
    finally:
        hole.close()
    with LocalCollector(port=port, register=(PROJECT,)) as collector:
        app_log.error("heard again")
        handler.flush(10)
        assert 1 == handler.stats.sent
        assert 1 == len(collector.breadcrumbs())


def test_circuit_breaker_stops_paying_per_record(app_log: logging.Logger) -> None:
    """With the real 30 s cooldown: after 3 failed connections no more tries are made."""
    listener_port = free_port()
    url = f"http://127.0.0.1:{listener_port}"
    handler = make_handler(url, app_log, retries=0)
    log_timed(app_log, [f"down {i}" for i in range(10)])
    time.sleep(1.5)
    stats = handler.stats.as_dict()
    # three tries failed (unreachable), the circuit is open: the rest wait, untried
    assert {"unreachable": 3} == stats["dropped"]
    assert 7 == stats["pending"]
    handler.flush(0.3)  # an ordinary flush waits (at most its deadline), drops nothing
    assert 7 == handler.stats.as_dict()["pending"]
    client.current_client().stop(1.0)  # type: ignore[union-attr]  # the exit's flush
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert {"unreachable": 10} == stats["dropped"]


def test_retry_after_zero_is_not_a_retry_storm(
    collector: LocalCollector, app_log: logging.Logger
) -> None:
    """A 429 with ``Retry-After: 0`` (a proxy's, say) must not make the worker spin."""
    collector.fault("status", status=429, headers={"Retry-After": "0"})
    make_handler(collector.url, app_log, flush_deadline=0.2)
    app_log.error("limited")
    time.sleep(1.5)
    # The library's own rule: rejected requests count against the window, so it must
    # not hammer. A floor of 1 s between tries would give at most 2-3 requests here.
    assert len(collector.requests()) <= 10


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    """A server whose answer never ends: one byte every 0.2 s."""
    server = TrickleServer(interval=0.2)
    yield server
    server.close()


def test_trickling_answer_is_cut_at_a_deadline(
    trickle: TrickleServer, app_log: logging.Logger
) -> None:
    """An answer that never finishes must cost at most a bounded time, then be dropped."""
    handler = make_handler(trickle.url, app_log, timeout=0.5, retries=0, flush_deadline=0.2)
    app_log.error("to a trickling server")
    finished = wait_until(lambda: handler.stats.as_dict()["pending"] == 0, 3.0)
    assert finished, handler.stats.as_dict()
    assert_exact(handler.stats.as_dict())


# --- in its own process: the exit ---------------------------------------------------

APP_BODY = """
    setup(URL, flush_deadline=1.0, timeout=TIMEOUT, rate_limit=None, fold_window=60, retries=3)
    log_mix(20, 10)
    logged()
"""

# name -> (how to make the server misbehave, network timeout, allowed drop reasons).
# At the exit deadline the single worker may still hold one event (being built or on
# the wire, e.g. when 16 programs share two cores): ``pending <= 1`` is the documented
# bound, whatever the fault.
ServerSetup = Callable[[LocalCollector], str]


def _fault(kind: str, **params: Any) -> ServerSetup:
    def arm(c: LocalCollector) -> str:
        c.fault(kind, **params)
        return c.url

    return arm


def _rate_limited(c: LocalCollector) -> str:
    c.set_rate_limit((3, 60.0))
    return c.url


# a try that timed out after the request went out may still be stored: "unconfirmed"
RETRYING = {"failed", "shutdown", "unconfirmed"}
EXIT_FAULTS: dict[str, tuple[ServerSetup, float, set[str]]] = {
    "refused": (lambda c: f"http://127.0.0.1:{free_port()}", 5, {"unreachable", "shutdown"}),
    "hang": (_fault("hang"), 30, RETRYING),
    "slow": (_fault("delay", seconds=0.4), 5, {"shutdown"}),
    "400": (_fault("status", status=400), 5, {"server_refused", "shutdown"}),
    "413": (_fault("status", status=413), 5, {"server_refused", "shutdown"}),
    "422": (_fault("status", status=422), 5, {"server_refused", "shutdown"}),
    "429": (_fault("status", status=429), 5, {"rate_limited", "shutdown"}),
    "429-window": (_rate_limited, 5, {"rate_limited", "shutdown"}),
    "500": (_fault("status", status=500), 5, RETRYING),
    "503": (_fault("status", status=503), 5, RETRYING),
    "garbage": (_fault("garbage"), 5, RETRYING),
    "close": (_fault("close"), 5, RETRYING),
}


TRACKED: list[tuple[str, ServerSetup, float]] = [
    ("hang-track", _fault("hang"), 30),
    ("refused-track", lambda c: f"http://127.0.0.1:{free_port()}", 5),
]


def check_exit(run: AppRun, deadline: float = 1.0) -> dict[str, Any]:
    """The common promises of a program's exit; returns its handler's stats."""
    assert 0 == run.returncode, run.stderr
    assert "Traceback" not in run.stderr
    assert run.exit_seconds < deadline + 3.0
    report = run.report
    assert report["extra"]["max_call"] < CALL_BOUND
    (stats,) = report["handlers"]
    return dict(stats)


@pytest.fixture(scope="module")
def exit_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[AppRun, LocalCollector | None]]]:
    """Every exit program, run at once (each against its own misbehaving server)."""
    collectors: dict[str, LocalCollector] = {}
    others: list[Any] = []
    apps: dict[str, App] = {}
    try:
        for name, (arm, timeout, _) in EXIT_FAULTS.items():
            c = collectors[name] = LocalCollector(register=(PROJECT,)).start()
            url = arm(c)
            body = APP_BODY.replace("URL", repr(url)).replace("TIMEOUT", str(timeout))
            apps[name] = App(body, app_env(tmp_path_factory.mktemp(name)))
        hole, trickle = Blackhole(), TrickleServer(interval=0.2)
        others += [hole, trickle]
        for name, url, timeout in (("silent-host", hole.url, 5), ("trickle", trickle.url, 2)):
            body = APP_BODY.replace("URL", repr(url)).replace("TIMEOUT", str(timeout))
            apps[name] = App(body, app_env(tmp_path_factory.mktemp(name)))
        # with track=True the crash hook also sends the run's terminal breadcrumb at exit
        for name, arm, timeout in TRACKED:
            c = collectors[name] = LocalCollector(register=(PROJECT,)).start()
            body = APP_BODY.replace("URL", repr(arm(c))).replace("TIMEOUT", str(timeout))
            body = body.replace("retries=3)", "retries=3, track=True, excepthook=True)")
            apps[name] = App(body, app_env(tmp_path_factory.mktemp(name)))
        runs = {name: (app.result(60), collectors.get(name)) for name, app in apps.items()}
        time.sleep(0.5)  # let a request still on the wire at an exit land (see below)
        yield runs
    finally:
        for c in collectors.values():
            c.stop()
        for other in others:
            other.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [*EXIT_FAULTS, "silent-host", "trickle", *(t[0] for t in TRACKED)]
)
def test_process_exits_within_the_deadline(
    exit_runs: dict[str, tuple[AppRun, LocalCollector | None]], name: str
) -> None:
    """A program logging through each fault exits on time; its accounting adds up."""
    run, collector = exit_runs[name]
    tracked = name.endswith("-track")
    allowed = {"unreachable", "shutdown", *RETRYING} if tracked else RETRYING
    _, _, allowed = EXIT_FAULTS.get(name, (None, 0, allowed))
    # on a loaded machine any try at the exit can time out after the request went out,
    # whatever the fault: "unconfirmed" is then the honest count, like "shutdown"
    allowed = allowed | {"unconfirmed"}
    stats = check_exit(run)
    # (+ the run's R / Started and its terminal breadcrumb, counted like every other)
    assert (32 if tracked else 30) == stats["emitted"]
    assert 9 == stats["folded"]
    assert_exact(stats, max_pending=1)
    assert set(stats["dropped"]) <= allowed, stats
    if collector is None:
        assert 0 == stats["sent"]
        return
    rows = collector.breadcrumbs(session_id=run.report["session"])
    # an event still on the wire at the deadline may land after the process is gone
    delivered = stats["sent"] + stats["summaries"]
    maybe = stats["pending"] + stats["dropped"].get("unconfirmed", 0)
    assert delivered <= len(rows) <= delivered + maybe + stats["possible_duplicates"]
    assert [] == collector.lost()


@pytest.mark.slow
def test_server_refusing_does_not_change_a_crash(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """A crash while the server refuses everything: same traceback, same status, on time."""
    collector.fault("status", status=503)
    body = f"""
        setup({collector.url!r}, flush_deadline=1.0, excepthook=True)
        log_mix(5, 0)
        logged()
        raise ValueError("the application's own failure")
    """
    run = run_app(body, app_env(tmp_path))
    assert 1 == run.returncode
    assert "ValueError: the application's own failure" in run.stderr
    assert run.exit_seconds < 1.0 + 3.0
    stats = run.report["handlers"][0]
    # the main thread's crash breadcrumb takes the one path: it is counted too
    assert 6 == stats["emitted"]
    assert 0 == stats["sent"]
    assert_exact(stats, max_pending=1)


TRACKED_BODY = """
    setup(URL, track=True, excepthook=True, rate_limit=None, fold_window=60OPTIONS)
    log_mix(20, 10)
    logged()
"""


def tracked_run(collector: LocalCollector, tmp_path: Path, options: str = "") -> AppRun:
    """A track=True program that logs 30 records and ends normally."""
    body = TRACKED_BODY.replace("URL", repr(collector.url)).replace("OPTIONS", options)
    return run_app(body, app_env(tmp_path))


def terminal_of(run: AppRun, collector: LocalCollector) -> dict[str, Any]:
    """The session's last stored breadcrumb, which must be the run's terminal one."""
    rows = collector.breadcrumbs(session_id=run.report["session"])
    assert rows, run.stderr
    assert ("C", "Completed") == (rows[-1]["status"], rows[-1]["status_desc"][:9]), rows[-3:]
    return rows[-1]


@pytest.mark.slow
def test_tracked_run_ends_with_its_terminal_breadcrumb(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """track=True, healthy server, default deadline: one C / Completed, the session's last."""
    run = tracked_run(collector, tmp_path)
    assert 0 == run.returncode
    last = terminal_of(run, collector)
    assert "Completed [sent 22, folded 9, dropped 0]" == last["status_desc"]
    assert run.exit_seconds < 2.0 + 3.0


@pytest.mark.slow
def test_tracked_run_with_a_one_second_deadline_still_ends_with_its_terminal(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """flush_deadline=1 is a valid setting: the terminal breadcrumb must still go out."""
    run = tracked_run(collector, tmp_path, ", flush_deadline=1.0")
    assert 0 == run.returncode
    terminal_of(run, collector)


@pytest.mark.slow
def test_tracked_run_with_a_slow_server_keeps_the_deadline_and_the_terminal(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """A 300 ms server and 30 records: exit within flush_deadline, terminal breadcrumb sent."""
    collector.fault("delay", seconds=0.3)
    run = tracked_run(collector, tmp_path)
    assert 0 == run.returncode
    assert run.exit_seconds < 2.0 + 0.7  # the documented 2 s, and interpreter shutdown
    terminal_of(run, collector)


@pytest.mark.slow
def test_no_output_of_its_own_when_logging_is_not_configured(tmp_path: Path) -> None:
    """A tool that set up only a MigasHandler: the server down changes nothing on stderr."""
    url = f"http://127.0.0.1:{free_port()}"
    body = f"""
        import logging, time
        import migas_logging
        h = migas_logging.MigasHandler("nipreps/migas-logging", "1", endpoint={url!r},
                                       flush_deadline=1.0, retries=0, track=True)
        logging.getLogger("tool").addHandler(h)  # root keeps no handler
        for i in range(5):
            logging.getLogger("tool").error(f"record {{i}}")
        time.sleep(1.0)  # three refusals open the circuit, which is reported
        logged()
    """
    run = run_app(body, app_env(tmp_path))
    assert 0 == run.returncode
    assert "" == run.stderr


@pytest.mark.slow
def test_huge_answer_is_not_read_whole(tmp_path: Path) -> None:
    """A 64 MB answer (a misconfigured proxy) must not be loaded into memory."""
    server = TrickleServer(
        interval=0.0, length=64 * 1024 * 1024, chunk=1024 * 1024, normal_first=1
    )
    try:
        body = f"""
            import time
            def hwm():
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
            h = setup({server.url!r}, timeout=5, retries=0, rate_limit=None, fold_window=0)
            log.error("warm up")  # imports, the user id, the connection
            time.sleep(1.0)
            before = hwm()
            log.error("the answer is huge")
            for _ in range(200):
                if h.stats.as_dict()["pending"] == 0:
                    break
                time.sleep(0.05)
            extra["hwm_growth_kb"] = hwm() - before
            logged()
        """
        run = run_app(body, app_env(tmp_path))
    finally:
        server.close()
    assert 0 == run.returncode, run.stderr
    assert run.report["extra"]["hwm_growth_kb"] < 32 * 1024


def test_accounting_helper_can_fail() -> None:
    """The exactness check rejects a record lost from the books (self-test of the suite)."""
    with pytest.raises(AssertionError):
        assert_exact({"emitted": 3, "sent": 1, "folded": 0, "dropped": {}, "pending": 2})
    assert 1 == accounted({"sent": 1, "folded": 0, "dropped": {}})
