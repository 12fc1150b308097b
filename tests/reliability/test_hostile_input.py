"""Hostile input: whatever the application logs, nothing raises and nothing is lost.

The application's data reaches the handler in every shape Python allows: objects whose
``__str__`` raises, format strings that do not match their arguments, megabytes, bytes,
NUL and control characters, lone surrogates, right-to-left marks, exceptions whose
``__str__`` raises, cycles of causes, a deep ``RecursionError``. For each, three promises:

1. the logging call returns and raises nothing into the application;
2. every record is accounted for (``emitted == sent + folded + sum(dropped)``) and, with
   no cap and no folding, every one is sent;
3. every breadcrumb sent is one the server stores whole: the collector lost nothing
   (``lost()`` is empty), no request body exceeds 2,500 bytes, no answer is a 4xx, and
   each stored row carries exactly the texts and version the request carried.

A hand-written corpus holds the known-nasty cases; hypothesis generates thousands more.
Records are sent in bulk to one collector per test and checked together, for speed.
Configuration is the other side: a bad project or option must fail at once with a
``ConfigurationError`` (a ``ValueError``), never another exception, never later.
"""

from __future__ import annotations

import json
import logging
import logging.config
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migas_logging import MigasHandler, check_project, client, get_usage, install_excepthook
from migas_logging.breadcrumb import MAX_BODY_BYTES
from migas_logging.collector import LocalCollector
from migas_logging.exceptions import ConfigurationError
from migas_logging.processors import MigasProcessor

from .conftest import PROJECT, assert_exact

# Hypothesis compares the global random state around each draw; the collector's and the
# worker's threads run meanwhile, and its own comment (hypothesis/control.py) admits the
# check races with other threads: a false alarm here, never an error.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

BULK = {"excepthook": False, "rate_limit": None, "fold_window": 0, "queue_size": 100_000}
HYPOTHESIS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- what the server must have stored ------------------------------------------------


def _sent_payload(record: Any) -> dict[str, Any] | None:
    """The breadcrumb a request carried (REST body, or the mutation's variables)."""
    data = record.json()
    if record.path.startswith("/graphql"):
        variables = data.get("variables") or {}
        return {**variables, "proc": variables.get("proc", {})}
    return dict(data)


def check_server_stored_everything_whole(collector: LocalCollector, expected: int) -> None:
    """The server's view: ``expected`` crumbs stored whole, nothing lost, refused, or big."""
    assert [] == collector.lost()
    requests = collector.requests()
    assert all(len(r.body) <= MAX_BODY_BYTES for r in requests)
    crumbs = [r for r in requests if r.path.startswith(("/api/breadcrumb", "/graphql"))]
    probes = [r for r in crumbs if r.status == 404 and r.path.startswith("/api/breadcrumb")]
    assert len(probes) <= 1  # an older server's REST endpoint is asked once, then GraphQL
    delivered = [r for r in crumbs if r not in probes]
    assert all(r.status in (200, 202) for r in delivered), {r.status for r in delivered}
    rows = collector.breadcrumbs()
    assert expected == len(rows) == len(delivered)
    for request, row in zip(delivered, rows, strict=True):
        sent = _sent_payload(request)
        assert sent is not None
        proc = sent["proc"]
        assert (
            sent["project_version"],
            proc.get("status_desc"),
            proc.get("error_type"),
            proc.get("error_desc"),
        ) == (row["project_version"], row["status_desc"], row["error_type"], row["error_desc"])


def check_all_sent(handlers: list[MigasHandler], count: int) -> int:
    """After a flush: every record of the handlers was sent; returns how many."""
    pipe = client.current_client()
    assert pipe is not None
    assert pipe.flush(60)
    emitted = sent = 0
    for h in handlers:
        stats = h.stats.as_dict()
        assert_exact(stats)
        assert {} == stats["dropped"], stats
        emitted += stats["emitted"]
        sent += stats["sent"]
    assert count == emitted == sent
    return sent


# --- the hand-written corpus ---------------------------------------------------------


class _Shown:
    """How hypothesis prints a generated hostile object in a failure report (only there)."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<{type(self).__name__}>")


class RaisesInStr(_Shown):
    """``str()`` and ``repr()`` both raise."""

    def __str__(self) -> str:
        raise ValueError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class StrIsNotAStr(_Shown):
    """``__str__`` returns an int (``str()`` raises TypeError)."""

    def __str__(self) -> Any:
        return 42  # noqa: PLE0307 - the point of this class


class EndlessStr(_Shown):
    """``__str__`` recurses until RecursionError."""

    def __str__(self) -> str:
        return str(self)


class UnprintableError(_Shown, Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("cannot print this exception")


class TracebackRaises(Exception):
    """An exception whose ``__traceback__`` attribute raises when read."""

    @property  # type: ignore[override]
    def __traceback__(self) -> Any:
        raise RuntimeError("no traceback")


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def _cycle_of_causes() -> BaseException:
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a
    return _raised(a)


def _self_context() -> BaseException:
    a = _raised(RuntimeError("its own context"))
    a.__context__ = a
    return a


def _long_chain() -> BaseException:
    exc: BaseException = ValueError("root")
    for i in range(200):
        nxt = RuntimeError(f"level {i}")
        nxt.__cause__ = exc
        exc = nxt
    return _raised(exc)


def _deep_recursion_error() -> BaseException:
    def down(n: int) -> int:
        return down(n + 1) + 1

    try:
        down(0)
    except RecursionError as exc:
        return exc
    raise AssertionError("no RecursionError")


def _exception_group() -> BaseException:
    group = getattr(__builtins__, "ExceptionGroup", None) or globals().get("ExceptionGroup")
    if group is None:  # Python 3.10
        return _raised(ValueError("no exception groups here"))
    inner = group("inner", [ValueError("x"), KeyError("/home/alice/y")])
    return _raised(group("outer", [inner, TypeError("z" * 5000)]))


# (a class name cannot hold NUL or a lone surrogate: type() refuses them)
WEIRD_CLASS = type("Bad\u202eName\x7f\x1b" + "N" * 5000, (Exception,), {})

TEXTS = [
    "",
    "\x00",
    "nul \x00 inside",
    "".join(map(chr, range(32))) + "\x7f\x80\x85\x9f",
    "lone \ud800 high and \udfff low surrogates, reversed pair \udc00\ud800",
    "right-to-left \u200f\u202e override \u202d\u2066isolate\u2069 \u061c",
    "\ufeffBOM and zero width \u200b\u200c\u200d joiners",
    "Z\u0336\u0337\u0338" * 500 + "algo",
    "emoji \U0001f4a5\U0001f9ea and astral \U00010000\U0010ffff",
    'quotes " and backslashes \\ ' * 400,
    "\r\n\r\n windows \r line \r\n endings",
    "\t" * 3000,
    "%s %d %(name)s %% {0} {} ${jndi:ldap://127.0.0.1/a}",
    "x" * 1_000_000,
    "\u00e9" * 600_000,
    "\x00" * 400_000,
    "\n" * 100_000,
    '"' * 300_000,
    " ".join(f"/home/alice/data/sub-{i:03d}/anat.nii.gz" for i in range(3000)),
    "\U0001f600" * 300_000,
]

OBJECTS = [
    None,
    0,
    -1,
    3.14,
    math.nan,
    math.inf,
    True,
    10**400,
    1j,
    b"bytes \xff\xfe\x00 not utf-8",
    bytearray(b"\x80" * 5000),
    memoryview(b"view"),
    {"a": [1, 2, {"b": None}]},
    [RaisesInStr()],
    ("tuple", 1),
    {1, 2},
    object(),
    object,
    print,
    Ellipsis,
    RaisesInStr(),
    StrIsNotAStr(),
    EndlessStr(),
    UnprintableError(),
    ValueError("an exception as the message"),
]

FORMAT_MISMATCHES: list[tuple[str, tuple[Any, ...]]] = [
    ("%s %s", (1,)),
    ("%d", ("not a number",)),
    ("%(a)s", ({"b": 1},)),
    ("%s", ()),
    ("no placeholders", (1, 2, 3)),
    ("%", ()),
    ("%q", (1,)),
    ("%*d", (1,)),
    ("%s", (RaisesInStr(),)),
    ("%r", (RaisesInStr(),)),
    ("%s and %s", (EndlessStr(), StrIsNotAStr())),
    ("%(a)s %s", ({"a": 1}, 2)),
    ("%.99999999999999s", ("x",)),
    ("%c", (0x110000,)),
    ("%s" * 2000, tuple(range(2000))),
]

EXCEPTIONS: list[Callable[[], BaseException]] = [
    lambda: _raised(ValueError(RaisesInStr())),
    lambda: _raised(UnprintableError()),
    lambda: _raised(TracebackRaises("traceback unreadable")),
    _cycle_of_causes,
    _self_context,
    _long_chain,
    _deep_recursion_error,
    _exception_group,
    lambda: _raised(KeyError("/home/alice/secret.txt")),
    lambda: _raised(OSError(2, "No such file", "/home/alice/\x00\ud800.txt")),
    lambda: _raised(ValueError("m" * 2_000_000)),
    lambda: _raised(ValueError(b"\xff\xfe", {"k": [1]}, None)),
    lambda: _raised(WEIRD_CLASS("weird class name")),
    lambda: _raised(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")),
    lambda: _raised(SystemExit(3)),
    lambda: _raised(KeyboardInterrupt()),
]

LOGGER_NAMES = [
    "app",
    "app.\u202e\u0644\u0639\u0631\u0628\u064a\u0629",
    "/home/alice/project/module",
    "n" * 10_000,
    "nul\x00name",
    "surrogate\ud800name",
]


def log_corpus(logger: logging.Logger) -> int:
    """Log the whole corpus through ``logger``; return how many records were logged."""
    count = 0

    def emit(*args: Any, **kwargs: Any) -> None:
        nonlocal count
        logger.error(*args, **kwargs)  # raises nothing, or the test fails here
        count += 1

    for text in TEXTS:
        emit(text)
    for obj in OBJECTS:
        emit(obj)
    for template, args in FORMAT_MISMATCHES:
        emit(template, *args)
    for make in EXCEPTIONS:
        exc = make()  # as a tuple: the stdlib itself reads __traceback__ of an instance
        emit("with an exception", exc_info=(type(exc), exc, None))
    emit("exc_info that is not a tuple", exc_info=5)  # type: ignore[arg-type]
    emit("with extras", extra={"step": RaisesInStr(), "size": math.nan, "path": "/root/x"})
    for level in (1, 5, 25, 99, 1000, logging.CRITICAL):
        logger.log(level, "custom level %d", level)
        count += 1
    for name in LOGGER_NAMES:
        record = logging.makeLogRecord(
            {"name": name, "levelno": 40, "levelname": "ERROR", "msg": "odd logger name"}
        )
        for h in logger.handlers:
            h.handle(record)
        count += 1
    return count


@pytest.fixture
def loggers(request: pytest.FixtureRequest) -> Iterator[Callable[[str], logging.Logger]]:
    """Fresh private loggers, cleaned up after the test."""
    made: list[logging.Logger] = []

    def make(suffix: str) -> logging.Logger:
        logger = logging.getLogger(f"hostile.{request.node.name}.{suffix}")
        logger.setLevel(1)
        logger.propagate = False
        made.append(logger)
        return logger

    yield make
    for logger in made:
        for h in logger.handlers[:]:
            logger.removeHandler(h)
            h.close()


@pytest.mark.parametrize("message", ["template", "formatted", "json", "none"])
def test_corpus_through_the_handler(
    collector: LocalCollector, loggers: Callable[[str], logging.Logger], message: str
) -> None:
    """The whole corpus, in each message mode: nothing raises, all sent, all stored whole."""
    logger = loggers(message)
    handler = MigasHandler(
        PROJECT,
        "1.0",
        level=1,
        endpoint=collector.url,
        message=message,
        extras="step,size,path",
        **BULK,
    )
    logger.addHandler(handler)
    count = log_corpus(logger)
    sent = check_all_sent([handler], count)
    check_server_stored_everything_whole(collector, sent)


def test_corpus_over_graphql_to_an_older_server(loggers: Callable[[str], logging.Logger]) -> None:
    """Through the GraphQL mutation (no REST endpoint): the same promises, same limit."""
    with LocalCollector(register=(PROJECT,), rest=False) as collector:
        logger = loggers("graphql")
        handler = MigasHandler(PROJECT, "1.0", level=1, endpoint=collector.url, **BULK)
        logger.addHandler(handler)
        count = log_corpus(logger)
        sent = check_all_sent([handler], count)
        check_server_stored_everything_whole(collector, sent)
        assert all(r["via"] == "graphql" for r in collector.breadcrumbs())


def _printable(obj: object) -> bool:
    """True when ``str(obj)`` works (see the structlog bug below for the others)."""
    try:
        str(obj)
    except Exception:
        return False
    return True


def structlog_logger(processor: MigasProcessor) -> Any:
    """A structlog logger whose pipeline ends at our processor (output discarded)."""
    return structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.add_log_level, processor, lambda _l, _m, _e: ""],
    )


# Consecutive structlog events alternate between two levels in these tests, so that the
# processor's duplicate check (see test_structlog_consecutive_events_are_not_duplicates)
# cannot drop one: hostile input is what is tested here, not that bug.
EVEN_METHODS, ODD_METHODS = ("error", "exception"), ("warning", "critical")


def test_corpus_through_the_structlog_processor(collector: LocalCollector) -> None:
    """The corpus as structlog events (event, key-values, exc_info): all sent, stored whole."""
    processor = MigasProcessor(PROJECT, "1.0", endpoint=collector.url, extras=["step"], **BULK)
    log = structlog_logger(processor)
    calls: list[tuple[Any, dict[str, Any]]] = []
    for event in [*TEXTS, *(o for o in OBJECTS if _printable(o))]:
        calls.append((event, {"step": RaisesInStr(), "other": EndlessStr()}))
    for make in EXCEPTIONS:
        exc = make()
        calls.append(("with exc_info", {"exc_info": (type(exc), exc, None)}))
    for name in LOGGER_NAMES:
        calls.append(("odd logger", {"logger": name}))
    for i, (event, values) in enumerate(calls):
        getattr(log, (EVEN_METHODS, ODD_METHODS)[i % 2][i // 2 % 2])(event, **values)
    count = len(calls)
    sent = check_all_sent([processor.handler], count)
    check_server_stored_everything_whole(collector, sent)


def test_structlog_unprintable_event_is_sent_and_counted(collector: LocalCollector) -> None:
    """An event object whose ``__str__`` raises is sent (as a placeholder) and counted."""
    processor = MigasProcessor(PROJECT, "1.0", endpoint=collector.url, **BULK)
    log = structlog_logger(processor)
    log.error(RaisesInStr())
    log.error("fine event", logger=RaisesInStr())
    check_all_sent([processor.handler], 2)


def test_structlog_consecutive_events_are_not_duplicates(collector: LocalCollector) -> None:
    """Pure structlog: "disk full" then "disk full on sda" are two events, both sent."""
    processor = MigasProcessor(PROJECT, "1.0", endpoint=collector.url, **BULK)
    log = structlog_logger(processor)
    log.error("disk full")
    log.error("disk full on sda")
    log.error("")
    log.error("anything after an empty event")
    check_all_sent([processor.handler], 4)


class HostileStr(str):
    """A ``str`` subclass whose ``__str__`` and ``__format__`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("hostile str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("hostile format")


class UnhashableStr(str):
    """A ``str`` subclass whose ``__hash__`` raises."""

    def __hash__(self) -> int:
        raise RuntimeError("no hash")


def test_str_subclass_message_is_sent(
    collector: LocalCollector, loggers: Callable[[str], logging.Logger]
) -> None:
    """A ``str`` subclass with hostile methods is sent as its characters."""
    logger = loggers("strsub")
    handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url, **BULK)
    logger.addHandler(handler)
    logger.error(HostileStr("a str subclass"))
    check_all_sent([handler], 1)


def test_unhashable_message_is_counted_once(
    collector: LocalCollector, loggers: Callable[[str], logging.Logger]
) -> None:
    """A message whose ``__hash__`` raises is counted exactly once (and, ideally, sent)."""
    logger = loggers("hash")
    handler = MigasHandler(
        PROJECT, "1.0", endpoint=collector.url, excepthook=False, rate_limit=None
    )
    logger.addHandler(handler)
    logger.error(UnhashableStr("unhashable %s"))
    handler.flush(5)
    stats = handler.stats.as_dict()
    assert 1 == stats["emitted"]
    assert_exact(stats)


def test_huge_int_extra_is_sent(
    collector: LocalCollector, loggers: Callable[[str], logging.Logger]
) -> None:
    """A named extra holding a huge int does not cost the record."""
    logger = loggers("bigint")
    handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url, extras=["n"], **BULK)
    logger.addHandler(handler)
    logger.error("big number", extra={"n": 10**5000})
    check_all_sent([handler], 1)


def test_logging_near_the_recursion_limit_keeps_exact_books(
    collector: LocalCollector, loggers: Callable[[str], logging.Logger]
) -> None:
    """Logging at every depth near the limit: nothing new raises, every record counted once."""
    logger = loggers("deep")
    handler = MigasHandler(PROJECT, "1.0", endpoint=collector.url, excepthook=False)
    logger.addHandler(handler)
    limit = sys.getrecursionlimit()

    def depth() -> int:
        frame, n = sys._getframe(), 0
        while frame is not None:
            frame, n = frame.f_back, n + 1
        return n

    def dive(target: int) -> None:
        if depth() < target:
            dive(target)
            return
        try:
            logger.error("deep %s", target)
        except RecursionError:
            pass  # logging itself (the stdlib) has no stack left: not ours to promise

    for headroom in range(1, 80):
        try:
            dive(limit - headroom)
        except RecursionError:
            pass
    handler.flush(5)
    assert_exact(handler.stats.as_dict())


# --- generated input (hypothesis) ----------------------------------------------------

ANY_CHAR = st.characters(codec=None, exclude_categories=())
hostile_text = st.one_of(
    st.text(alphabet=ANY_CHAR, max_size=300),
    st.text(
        alphabet=st.sampled_from(
            '\x00\x01\x1b\x7f\x85\u200f\u202e\ufeff\ud800\udfff"\\\n\r\t%/~@é'
        ),
        max_size=300,
    ),
    st.builds(
        lambda s, n: s * n,
        st.text(alphabet=ANY_CHAR, min_size=1, max_size=4),
        st.integers(500, 3000),
    ),
)
simple_objects = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=300),
    hostile_text,
    st.sampled_from([RaisesInStr, StrIsNotAStr, EndlessStr, UnprintableError]).map(lambda c: c()),
)
hostile_objects = st.recursive(
    simple_objects,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
        st.tuples(children, children),
    ),
    max_leaves=8,
)
templates = st.one_of(
    hostile_text,
    st.lists(
        st.sampled_from(["%s", "%d", "%r", "%(a)s", "%%", "%", "%x", "word ", "{}"]), max_size=6
    ).map("".join),
)


@st.composite
def exceptions(draw: st.DrawFn) -> BaseException:
    """An exception with a hostile message, and maybe a cause, a context or a cycle."""
    cls = draw(st.sampled_from([ValueError, KeyError, OSError, RuntimeError, UnprintableError]))
    args = draw(st.lists(hostile_objects, max_size=3))
    exc = _raised(cls(*args))
    shape = draw(st.sampled_from(["plain", "cause", "context", "cycle", "self"]))
    other = _raised(RuntimeError(draw(hostile_text)))
    if shape == "cause":
        exc.__cause__ = other
    elif shape == "context":
        exc.__context__ = other
    elif shape == "cycle":
        exc.__cause__, other.__cause__ = other, exc
    elif shape == "self":
        exc.__context__ = exc
    return exc


records = st.fixed_dictionaries(
    {
        "msg": st.one_of(templates, hostile_objects),
        "args": st.lists(hostile_objects, max_size=4),
        "exc": st.one_of(st.none(), exceptions()),
        "level": st.sampled_from([1, 10, 20, 30, 40, 50, 99]),
        "extra": st.dictionaries(
            st.sampled_from(["step", "size", "who"]), hostile_objects, max_size=3
        ),
    }
)


def test_generated_records_through_the_handler(
    collector: LocalCollector,
    loggers: Callable[[str], logging.Logger],
    record_property: Callable[[str, object], None],
) -> None:
    """Thousands of generated records, in every message mode: no raise, all sent, stored whole."""
    modes = ["template", "formatted", "json", "none"]
    handlers: dict[str, tuple[logging.Logger, MigasHandler]] = {}
    for mode in modes:
        logger = loggers(mode)
        handler = MigasHandler(
            PROJECT,
            "1.0",
            level=1,
            endpoint=collector.url,
            message=mode,
            extras=["step", "who"],
            **BULK,
        )
        logger.addHandler(handler)
        handlers[mode] = (logger, handler)
    count = 0

    @HYPOTHESIS
    @given(batch=st.lists(records, min_size=3, max_size=16), mode=st.sampled_from(modes))
    def log_batch(batch: list[dict[str, Any]], mode: str) -> None:
        nonlocal count
        logger, handler = handlers[mode]
        before = handler.stats.emitted
        for r in batch:
            logger.log(r["level"], r["msg"], *r["args"], exc_info=r["exc"], extra=r["extra"])
        assert before + len(batch) == handler.stats.emitted  # each counted once, at once
        count += len(batch)

    log_batch()
    record_property("generated_records", count)
    assert count >= 300
    sent = check_all_sent([h for _, h in handlers.values()], count)
    check_server_stored_everything_whole(collector, sent)


def test_generated_events_through_the_structlog_processor(
    collector: LocalCollector, record_property: Callable[[str, object], None]
) -> None:
    """Generated structlog events with hostile key-values and exc_info: all sent, whole."""
    processor = MigasProcessor(
        PROJECT, "1.0", level=1, endpoint=collector.url, extras=["step"], **BULK
    )
    log = structlog_logger(processor)
    count = 0
    printable_events = st.one_of(hostile_text, st.integers(), st.binary(max_size=100), st.none())

    @HYPOTHESIS
    @given(
        batch=st.lists(
            st.tuples(
                printable_events,
                st.dictionaries(st.sampled_from(["step", "k", "v"]), hostile_objects, max_size=3),
                st.one_of(st.none(), exceptions()),
                st.integers(0, 1),
            ),
            min_size=3,
            max_size=16,
        )
    )
    def log_batch(batch: list[tuple[Any, dict[str, Any], Any, int]]) -> None:
        nonlocal count
        for event, values, exc, pick in batch:
            methods = (EVEN_METHODS, ODD_METHODS)[count % 2]
            getattr(log, methods[pick])(event, exc_info=exc, **values)
            count += 1

    log_batch()
    record_property("generated_records", count)
    assert count >= 300
    sent = check_all_sent([processor.handler], count)
    check_server_stored_everything_whole(collector, sent)


def test_generated_records_over_graphql(
    loggers: Callable[[str], logging.Logger], record_property: Callable[[str, object], None]
) -> None:
    """Generated records to an older server (GraphQL mutation): the limit still holds."""
    with LocalCollector(register=(PROJECT,), rest=False) as collector:
        logger = loggers("graphql")
        handler = MigasHandler(
            PROJECT, "1.0", level=1, endpoint=collector.url, message="formatted", **BULK
        )
        logger.addHandler(handler)
        count = 0

        @settings(HYPOTHESIS, max_examples=60)
        @given(batch=st.lists(records, min_size=3, max_size=12))
        def log_batch(batch: list[dict[str, Any]]) -> None:
            nonlocal count
            for r in batch:
                logger.log(r["level"], r["msg"], *r["args"], exc_info=r["exc"], extra=r["extra"])
            count += len(batch)

        log_batch()
        record_property("generated_records", count)
        sent = check_all_sent([handler], count)
        check_server_stored_everything_whole(collector, sent)


versions = st.one_of(
    hostile_text,
    st.text(alphabet="0123456789.+-_abcXYZ ()/\u00e9\u00df", max_size=60),
    st.integers(),
    st.floats(),
    st.tuples(st.integers(0, 99), st.integers(0, 99), st.text(max_size=5)),
    st.lists(hostile_objects, max_size=4),
    st.none(),
    st.binary(max_size=40),
    st.sampled_from([RaisesInStr, StrIsNotAStr, EndlessStr]).map(lambda c: c()),
)


def test_generated_versions_are_stored_as_sent(
    collector: LocalCollector, record_property: Callable[[str, object], None]
) -> None:
    """Any version object is accepted at configuration and stored exactly as sent."""
    logger = logging.getLogger("hostile.versions")
    logger.propagate = False
    made: list[MigasHandler] = []
    count = 0

    @settings(HYPOTHESIS, max_examples=200)
    @given(version=versions)
    def one(version: object) -> None:
        nonlocal count
        handler = MigasHandler(PROJECT, version, endpoint=collector.url, **BULK)
        made.append(handler)
        handler.handle(logging.makeLogRecord({"name": "v", "levelno": 40, "msg": "version"}))
        count += 1

    try:
        one()
        record_property("generated_records", count)
        sent = check_all_sent(made, count)
        check_server_stored_everything_whole(collector, sent)
        for request in collector.requests():
            version = json.loads(request.body)["project_version"]
            assert 1 <= len(version) <= 24
    finally:
        for h in made:
            h.close()


project_names = st.one_of(
    hostile_text,
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", fullmatch=True),
    st.text(alphabet="ab-_./\\ 0\u00e9", max_size=50),
    st.integers(),
    st.none(),
    st.binary(max_size=20),
    st.sampled_from([RaisesInStr, StrIsNotAStr]).map(lambda c: c()),
)


def test_generated_project_names_fail_loudly_or_deliver(
    collector: LocalCollector, record_property: Callable[[str, object], None]
) -> None:
    """Any project: a ConfigurationError at once, or a handler whose crumbs are stored."""
    made: list[MigasHandler] = []
    accepted = refused = 0

    @settings(HYPOTHESIS, max_examples=200)
    @given(project=project_names)
    def one(project: object) -> None:
        nonlocal accepted, refused
        try:
            handler = MigasHandler(project, "1", endpoint=collector.url, **BULK)  # type: ignore[arg-type]
        except ConfigurationError:
            refused += 1
            return
        assert isinstance(project, str)
        collector.register(project)
        made.append(handler)
        handler.handle(logging.makeLogRecord({"name": "p", "levelno": 40, "msg": "project"}))
        accepted += 1

    try:
        one()
        record_property("generated_records", accepted + refused)
        assert accepted > 20
        assert refused > 20
        sent = check_all_sent(made, accepted)
        check_server_stored_everything_whole(collector, sent)
    finally:
        for h in made:
            h.close()


# --- configuration: loud, at once, and always a ConfigurationError ------------------


def _handler(**options: Any) -> Any:
    options.setdefault("project", PROJECT)
    options.setdefault("endpoint", "http://127.0.0.1:9")
    options.setdefault("excepthook", False)
    return MigasHandler(**options)


def _processor(**options: Any) -> Any:
    options.setdefault("endpoint", "http://127.0.0.1:9")
    options.setdefault("excepthook", False)
    return MigasProcessor(options.pop("project", PROJECT), "1", **options)


def _hook(**options: Any) -> Any:
    options.setdefault("endpoint", "http://127.0.0.1:9")
    return install_excepthook(PROJECT, "1", **options).uninstall()


def _query(**options: Any) -> Any:
    options.setdefault("endpoint", "http://127.0.0.1:9")
    options.setdefault("project", PROJECT)
    start = options.pop("start", "2024-01-01")
    return get_usage(options.pop("project"), start, **options)


def _check(**options: Any) -> Any:
    options.setdefault("endpoint", "http://127.0.0.1:9")
    return check_project(options.pop("project", PROJECT), "1", **options)


BAD_CONFIGURATION = [
    pytest.param(_handler, {"project": None}, id="handler-project-None"),
    pytest.param(_handler, {"project": ""}, id="handler-project-empty"),
    pytest.param(_handler, {"project": "a/b/c"}, id="handler-project-3-parts"),
    pytest.param(_handler, {"project": "-a/b"}, id="handler-project-leading-dash"),
    pytest.param(_handler, {"project": "a/.."}, id="handler-project-dotdot"),
    pytest.param(_handler, {"project": "o" * 40 + "/r"}, id="handler-project-long-owner"),
    pytest.param(_handler, {"project": b"a/b"}, id="handler-project-bytes"),
    pytest.param(_handler, {"project": RaisesInStr()}, id="handler-project-unprintable"),
    pytest.param(_handler, {"project": "\u00e9/b"}, id="handler-project-accent"),
    pytest.param(_handler, {"endpoint": 5}, id="handler-endpoint-int"),
    pytest.param(_handler, {"endpoint": "ftp://127.0.0.1"}, id="handler-endpoint-ftp"),
    pytest.param(_handler, {"endpoint": "http://"}, id="handler-endpoint-no-host"),
    pytest.param(_handler, {"endpoint": "   "}, id="handler-endpoint-blank"),
    pytest.param(
        _handler,
        {"endpoint": "http://127.0.0.1:99999"},
        id="handler-endpoint-port-out-of-range",
    ),
    pytest.param(
        _handler,
        {"endpoint": "http://127.0.0.1:abc"},
        id="handler-endpoint-port-not-a-number",
    ),
    pytest.param(_handler, {"timeout": "soon"}, id="handler-timeout-text"),
    pytest.param(_handler, {"timeout": math.nan}, id="handler-timeout-nan"),
    pytest.param(_handler, {"timeout": math.inf}, id="handler-timeout-inf"),
    pytest.param(_handler, {"timeout": 0}, id="handler-timeout-zero"),
    pytest.param(_handler, {"timeout": True}, id="handler-timeout-bool"),
    pytest.param(_handler, {"timeout": []}, id="handler-timeout-list"),
    pytest.param(_handler, {"level": "LOUD"}, id="handler-level-name"),
    pytest.param(_handler, {"level": None}, id="handler-level-None"),
    pytest.param(_handler, {"level": 1.5}, id="handler-level-float"),
    pytest.param(_handler, {"message": "all"}, id="handler-message"),
    pytest.param(_handler, {"statuses": {}}, id="handler-statuses-empty"),
    pytest.param(_handler, {"statuses": {"ERROR": "f"}}, id="handler-statuses-lowercase"),
    pytest.param(_handler, {"statuses": {None: "F"}}, id="handler-statuses-None-level"),
    pytest.param(_handler, {"queue_size": 0}, id="handler-queue-zero"),
    pytest.param(_handler, {"queue_size": 1.5}, id="handler-queue-float"),
    pytest.param(_handler, {"queue_size": True}, id="handler-queue-bool"),
    pytest.param(_handler, {"rate_limit": "0/60"}, id="handler-rate-zero"),
    pytest.param(_handler, {"rate_limit": "1/0"}, id="handler-rate-zero-period"),
    pytest.param(_handler, {"rate_limit": "1/nan"}, id="handler-rate-nan"),
    pytest.param(_handler, {"rate_limit": 5}, id="handler-rate-int"),
    pytest.param(_handler, {"rate_limit": (1,)}, id="handler-rate-1-tuple"),
    pytest.param(_handler, {"rate_limit": "lots"}, id="handler-rate-text"),
    pytest.param(_handler, {"fold_window": -1}, id="handler-fold-negative"),
    pytest.param(_handler, {"fold_window": math.nan}, id="handler-fold-nan"),
    pytest.param(_handler, {"fold_window": "x"}, id="handler-fold-text"),
    pytest.param(_handler, {"retries": -1}, id="handler-retries-negative"),
    pytest.param(_handler, {"retries": 2.5}, id="handler-retries-float"),
    pytest.param(_handler, {"flush_deadline": -1}, id="handler-deadline-negative"),
    pytest.param(_handler, {"flush_deadline": math.inf}, id="handler-deadline-inf"),
    pytest.param(
        _handler,
        {"extras": None},
        id="handler-extras-None",
    ),
    pytest.param(
        _handler,
        {"audit_file": 5},
        id="handler-audit-file-int",
    ),
    pytest.param(_processor, {"project": None}, id="processor-project-None"),
    pytest.param(_processor, {"rate_limit": "x"}, id="processor-rate-text"),
    pytest.param(_hook, {"timeout": "x"}, id="hook-timeout-text"),
    pytest.param(_hook, {"endpoint": 5}, id="hook-endpoint-int"),
    pytest.param(
        _hook,
        {"flush_deadline": "abc"},
        id="hook-deadline-text",
    ),
    pytest.param(
        _hook,
        {"flush_deadline": -1},
        id="hook-deadline-negative",
    ),
    pytest.param(
        _hook,
        {"flush_deadline": float("inf")},
        id="hook-deadline-infinite",
    ),
    pytest.param(
        _hook,
        {"ignore": 5},
        id="hook-ignore-int",
    ),
    pytest.param(_query, {"project": "nope"}, id="usage-project"),
    pytest.param(_query, {"start": "2024-13-45"}, id="usage-bad-date"),
    pytest.param(_query, {"start": None}, id="usage-date-None"),
    pytest.param(_query, {"start": 20240101}, id="usage-date-int"),
    pytest.param(_query, {"timeout": "soon"}, id="usage-timeout"),
    pytest.param(_check, {"project": 5}, id="check-project-int"),
    pytest.param(_check, {"endpoint": "gopher://x"}, id="check-endpoint"),
]


@pytest.mark.parametrize(("entry", "options"), BAD_CONFIGURATION)
def test_bad_configuration_is_a_configuration_error(
    entry: Callable[..., Any], options: dict[str, Any]
) -> None:
    """A bad value fails at once with ConfigurationError (a ValueError), before any I/O."""
    with pytest.raises(ConfigurationError) as info:
        entry(**options)
    assert isinstance(info.value, ValueError)
    assert str(info.value)  # a message that names the value and the fix


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIGAS_TIMEOUT", "nan"),
        ("MIGAS_TIMEOUT", "-3"),
        ("MIGAS_TIMEOUT", "five"),
        ("MIGAS_ENDPOINT", "file:///etc/passwd"),
        ("MIGAS_ENDPOINT", "http://"),
    ],
)
def test_bad_environment_never_stops_the_application(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    collector: LocalCollector,
    variable: str,
    value: str,
) -> None:
    """A bad MIGAS_* variable (the end user's typo) is one warning naming it, never an
    exception; a bad endpoint sends nothing anywhere, not to the hosted server either."""
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="migas_logging"):
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"m": {"class": "migas_logging.MigasHandler", "project": PROJECT}},
                "root": {"handlers": ["m"], "level": "INFO"},
            }
        )
        logging.getLogger("typo").error("still running")
        handler = logging.getLogger().handlers[-1]
        handler.flush()
    assert 1 == len([r for r in caplog.records if variable in r.getMessage()])
    if variable == "MIGAS_ENDPOINT":
        assert {"optout": 1} == handler.stats.as_dict()["dropped"]  # type: ignore[attr-defined]
    logging.getLogger().removeHandler(handler)
    handler.close()
