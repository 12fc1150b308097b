"""The ``migas-logging`` command.

::

    migas-logging check OWNER/REPO VERSION
    migas-logging usage OWNER/REPO --start DATE [--end DATE] [--unique]
    migas-logging send OWNER/REPO VERSION [--status R|C|F|S] [--desc TEXT]
    migas-logging stored [--project OWNER/REPO] [--session ID] [--status S] [--follow]
    migas-logging serve [--port N] [--db FILE] [--register OWNER/REPO ...]
    migas-logging demo
    migas-logging spool list|send|clear [--spool-dir DIR]

``check``, ``usage``, ``send``, ``stored`` and ``spool send`` take ``--endpoint URL``
(default ``MIGAS_ENDPOINT``, then the hosted server), ``--timeout SECONDS`` and ``--json``
(machine-readable output instead of a table), before or after the command's name (after
it, they win). ``serve`` and ``demo`` run their own server, and ``spool list`` and
``spool clear`` read only the spool: they take ``--json`` only, and refuse the other
two. ``spool`` commands take ``--spool-dir DIR`` after ``spool`` or after their own name
(default ``MIGAS_SPOOL_DIR``, then ``~/.cache/migas/spool``). A failure prints one line
saying why on stderr and exits non-zero: 1 when the server said no or could not be
reached (or, for ``spool send``, when breadcrumbs are left), 2 for bad arguments or
configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from migas_logging._version import __version__
from migas_logging.exceptions import ConfigurationError, MigasError

if TYPE_CHECKING:
    from migas_logging.admission import RateCap
    from migas_logging.spool import Spool

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_EXTRA_HINT = "pip install 'migas-logging[collector]'"
_DEFAULT_PROJECT = "nipreps/migas-logging"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: what is wrong, and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see: {self.prog} --help)\n")


def _emit(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"migas-logging: {message}", file=sys.stderr)
    return code


# --- argument types: a bad value is a one-line usage error ---------------------------


def _seconds(text: str) -> float:
    from migas_logging.config import resolve_timeout

    try:
        return resolve_timeout(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return value


def _project(text: str) -> str:
    from migas_logging.config import checked_project

    try:
        return checked_project(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _latest(text: str) -> tuple[str, str]:
    project, sep, version = text.partition("=")
    if not sep or not version.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not OWNER/REPO=VERSION")
    return _project(project), version.strip()


def _rate_limit(text: str) -> tuple[int, float] | None:
    if text.strip().lower() in ("off", "none"):
        return None
    count, sep, window = text.partition("/")
    message = f"{text!r} is not N/SECONDS (for example 1000/60) or 'off'"
    try:
        requests, seconds = int(count), float(window) if sep else 60.0
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if requests < 1 or not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{message}: N must be at least 1, SECONDS above 0")
    return requests, seconds


# --- commands ---------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    from migas_logging._table import pairs
    from migas_logging.query import check_project

    result = check_project(
        args.project,
        args.version,
        endpoint=args.endpoint,
        timeout=args.timeout,
        raise_on_error=True,
    )
    if not result["success"]:
        if args.json:
            _emit(args, result, "")
        return _fail(result["message"] or "the server could not tell the latest version")
    _emit(args, result, pairs(result))
    return EXIT_OK


def _cmd_usage(args: argparse.Namespace) -> int:
    from migas_logging._table import pairs
    from migas_logging.query import get_usage

    result = get_usage(
        args.project,
        args.start,
        args.end,
        unique=args.unique,
        endpoint=args.endpoint,
        timeout=args.timeout,
        raise_on_error=True,
    )
    if not result["success"]:
        if args.json:
            _emit(args, result, "")
        return _fail(result["message"] or "no usage data")
    _emit(args, result, pairs(result))
    return EXIT_OK


def _cmd_send(args: argparse.Namespace) -> int:
    from migas_logging import breadcrumb as bc
    from migas_logging import config
    from migas_logging._table import pairs
    from migas_logging.transport import Transport

    settings = config.Settings.resolve(args.endpoint, args.timeout)
    if settings.optout:
        return _fail("telemetry is disabled (MIGAS_OPTOUT is set); nothing was sent")
    project = config.checked_project(args.project)
    crumb = bc.build(
        project=project,
        version=args.version,
        language_version=config.language_version(),
        ctx=config.detect_context(),
        status=args.status,
        status_desc=args.desc,
        error_type=args.error_type,
        error_desc=args.error_desc,
        redactor=bc.default_redactor(),
    )
    transport = Transport(settings.endpoint, settings.timeout)
    try:
        outcome = transport.send(crumb, wait=True)
    finally:
        transport.close()
    result = {
        "success": outcome.ok,
        "outcome": outcome.kind.value,
        "status": outcome.status,
        "via": outcome.via,
        "message": outcome.detail,
        "breadcrumb": crumb.to_payload(),
    }
    if not outcome.ok:
        if args.json:
            _emit(args, result, "")
        return _fail(f"not delivered ({outcome.kind.value}): {outcome.detail}")
    _emit(args, result, pairs({k: v for k, v in result.items() if k != "breadcrumb"}))
    return EXIT_OK


def _cmd_stored(args: argparse.Namespace) -> int:
    from migas_logging import config
    from migas_logging._stored import StoredError, run_stored

    endpoint = config.resolve_endpoint(args.endpoint)
    if endpoint == config.DEFAULT_ENDPOINT:
        raise ConfigurationError(
            "stored reads a local collector (migas-logging serve), not the hosted server: "
            "give --endpoint http://127.0.0.1:PORT or set MIGAS_ENDPOINT"
        )
    if args.follow_timeout is not None and not args.follow:
        raise ConfigurationError("--follow-timeout goes with --follow")
    try:
        return run_stored(
            endpoint=endpoint,
            timeout=config.resolve_timeout(args.timeout),
            project=args.project,
            session=args.session,
            status=args.status,
            limit=args.limit,
            follow=args.follow,
            follow_timeout=args.follow_timeout,
            as_json=args.json,
        )
    except StoredError as exc:
        return _fail(str(exc))


def _cmd_serve(args: argparse.Namespace) -> int:
    from migas_logging.collector import serve_forever

    register: list[str] = args.register or [_DEFAULT_PROJECT]
    latest = dict(args.latest or [])
    if args.db != ":memory:":
        folder = os.path.dirname(os.path.abspath(args.db))
        if not os.path.isdir(folder):
            raise ConfigurationError(f"--db {args.db}: the directory {folder} does not exist")

    def ready(collector: Any) -> None:
        if args.json:
            info = {
                "url": collector.url,
                "db": args.db,
                "registered": register,
                "latest": latest,
                "rate_limit": None if args.rate_limit is None else list(args.rate_limit),
            }
            print(json.dumps(info), flush=True)
            return
        lines = [
            f"migas collector listening on {collector.url}",
            f"  database: {args.db}",
            f"  projects: {', '.join(register)}",
        ]
        for project, version in latest.items():
            note = "" if project in register else " (not registered: its breadcrumbs are refused)"
            lines.append(f"  latest release of {project}: {version}{note}")
        if args.rate_limit_given:
            limit = args.rate_limit
            lines.append(
                "  rate limit: off"
                if limit is None
                else f"  rate limit: {limit[0]} requests per {limit[1]:g} s per address"
            )
        lines.append(
            f"  try:  MIGAS_ENDPOINT={collector.url} migas-logging send {register[0]} 1.0.0"
        )
        print("\n".join(lines), flush=True)

    try:
        serve_forever(
            host=args.host,
            port=args.port,
            db=args.db,
            register=register,
            rate_limit=args.rate_limit,
            latest=latest,
            ready=ready,
        )
    except sqlite3.Error as exc:
        return _fail(f"cannot use the database {args.db}: {exc}", EXIT_USAGE)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return _fail(f"cannot listen on {args.host}:{args.port}: {reason}", EXIT_USAGE)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from migas_logging._demo import run_demo

    return run_demo(as_json=args.json)


def _spool(args: argparse.Namespace) -> Spool:
    """The spool the command works on; ConfigurationError when there is none to use."""
    from migas_logging.spool import Spool, default_spool_dir

    given = getattr(args, "spool_dir", None)
    directory = Path(given).expanduser() if given else default_spool_dir()
    if directory is None:
        raise ConfigurationError(
            "the spool is disabled (MIGAS_SPOOL_DIR is empty): give --spool-dir DIR"
        )
    spool = Spool(directory)
    problem = _spool_problem(spool)
    if problem:
        raise ConfigurationError(f"{problem}: not used")
    return spool


def _spool_problem(spool: Spool) -> str | None:
    from migas_logging._files import private_dir_problem

    if not os.path.lexists(spool.directory):
        return None
    problem = private_dir_problem(spool.directory, create=False)
    return None if problem is None else f"the spool {spool.directory} {problem}"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _cmd_spool_list(args: argparse.Namespace) -> int:
    import time

    from migas_logging._table import table

    spool = _spool(args)
    items = spool.items()
    now = time.time()
    rows: list[dict[str, Any]] = [
        {
            "session": item.session,
            "seq": item.seq,
            "terminal": item.terminal,
            "status": item.status,
            "age": round(now - item.created, 3),
            "project": item.project,
            "claimed_by": item.claimed_by,
            "file": item.name,
            "breadcrumb": item.payload,
        }
        for item in items
    ]
    if args.json:
        _emit(args, {"directory": str(spool.directory), "items": rows}, "")
        return EXIT_OK
    if not rows:
        print(f"the spool {spool.directory} is empty")
        return EXIT_OK
    shown = [
        {
            **row,
            "status": row["status"]
            + (" terminal" if row["terminal"] else "")
            + (f" (being sent by {row['claimed_by']})" if row["claimed_by"] else ""),
            "age": _age(row["age"]),
        }
        for row in rows
    ]
    print(table(shown, ["session", "seq", "status", "age", "project"], width={"status": 60}))
    sessions = len({row["session"] for row in rows})
    print(f"{len(rows)} breadcrumbs of {sessions} sessions in {spool.directory}")
    return EXIT_OK


def _machine_rate(text: str) -> RateCap:
    """``--rate``: N/SECONDS, checked like the ``machine_rate`` option (never off)."""
    from migas_logging.admission import RateCap

    try:
        cap = RateCap.parse(text)
        if cap is None:
            raise ValueError("off")
    except ValueError as exc:  # ConfigurationError is one
        raise argparse.ArgumentTypeError(
            f"{text!r} is not N/SECONDS (for example 1000/60): {exc}"
        ) from None
    return cap


def _cmd_spool_send(args: argparse.Namespace) -> int:
    from migas_logging import config
    from migas_logging.spool import breadcrumb_from_payload, verdict_of
    from migas_logging.transport import Transport

    settings = config.Settings.resolve(args.endpoint, args.timeout)
    if settings.optout:
        return _fail("telemetry is disabled (MIGAS_OPTOUT is set); nothing was sent")
    spool = _spool(args)
    transport = Transport(settings.endpoint, settings.timeout)
    reasons: dict[str, str] = {}
    from migas_logging.admission import RateCap
    from migas_logging.budget import for_server_window
    from migas_logging.client import DEFAULT_MACHINE_RATE
    from migas_logging.transport import OutcomeKind

    cap = getattr(args, "rate", None) or RateCap.parse(DEFAULT_MACHINE_RATE)
    assert cap is not None
    # the same budget as the processes of this machine: the replay shares their window
    budget = for_server_window(spool.directory.parent / "budget", cap.count, cap.period)
    end = time.monotonic() + max(0.0, getattr(args, "max_wait", 120.0))

    def wait_for(seconds: float) -> bool:
        if time.monotonic() + seconds > end:
            return False
        time.sleep(seconds)
        return True

    def send(payload: dict[str, Any], terminal: bool) -> str:
        try:
            crumb = breadcrumb_from_payload(payload)
        except ValueError as exc:
            reasons["drop"] = f"not a breadcrumb: {exc}"
            return "drop"
        while True:
            while not budget.take():
                if not wait_for(max(0.05, min(budget.wait_time(), 5.0))):
                    reasons["retry"] = "the rate budget is spent; run it again later"
                    return "retry"
            outcome = transport.send(crumb, wait=True)
            if outcome.kind is OutcomeKind.RATE_LIMITED and wait_for(
                max(1.0, outcome.retry_after if outcome.retry_after is not None else 60.0)
            ):
                continue  # the server's window has passed: the same breadcrumb again
            verdict = verdict_of(outcome)
            if verdict != "sent":
                reasons[verdict] = f"{outcome.kind.value}: {outcome.detail}"
            return verdict

    try:
        result = spool.replay(send)
    finally:
        transport.close()
    summary = {
        "sent": result.sent,
        "dropped": result.dropped,
        "left": result.left,
        "stopped": result.stopped,
        "reason": reasons.get("retry") if result.stopped == "retry" else None,
        "last_refusal": reasons.get("drop"),
        "directory": str(spool.directory),
        "endpoint": config.display_url(settings.endpoint),
    }
    text = f"sent {result.sent}, dropped {result.dropped}, left {result.left}"
    if result.dropped:
        text += f" (last refusal: {reasons.get('drop', '?')})"
    _emit(args, summary, text)
    if result.left:
        why = summary["reason"] or "another process is sending them, or they came meanwhile"
        return _fail(f"{result.left} breadcrumbs are left in {spool.directory}: {why}")
    return EXIT_OK


def _cmd_spool_clear(args: argparse.Namespace) -> int:
    spool = _spool(args)
    removed = spool.clear()
    _emit(
        args,
        {"removed": removed, "directory": str(spool.directory)},
        f"removed {removed} breadcrumbs from {spool.directory}",
    )
    return EXIT_OK


# --- parser -------------------------------------------------------------------------


def _options(*, json_only: bool, top: bool) -> _Parser:
    """The shared options; in a command's parser they do not override earlier values."""
    parent = _Parser(add_help=False)
    default = {} if top else {"default": argparse.SUPPRESS}
    if not json_only:
        parent.add_argument(
            "--endpoint",
            metavar="URL",
            help="server base URL (default: $MIGAS_ENDPOINT, then https://migas.nipreps.org)",
            **({"default": None} if top else default),
        )
        parent.add_argument(
            "--timeout",
            type=_seconds,
            metavar="SECONDS",
            help="network timeout (default: $MIGAS_TIMEOUT, then 5)",
            **({"default": None} if top else default),
        )
    parent.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of a table",
        **({"default": False} if top else default),
    )
    return parent


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    net = _options(json_only=False, top=False)
    json_only = _options(json_only=True, top=False)
    parser = _Parser(
        prog="migas-logging",
        description="Talk to a migas telemetry server, or run a local one. --endpoint, "
        "--timeout and --json may come before or after the command (serve and demo "
        "take --json only).",
        parents=[_options(json_only=False, top=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    p = commands["check"] = sub.add_parser(
        "check", parents=[net], help="is this version flagged, what is latest?"
    )
    p.add_argument("project", metavar="OWNER/REPO")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=_cmd_check)

    p = commands["usage"] = sub.add_parser("usage", parents=[net], help="count a project's uses")
    p.add_argument("project", metavar="OWNER/REPO")
    p.add_argument("--start", required=True, help="YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    p.add_argument("--end", default=None, help="default: now; not before --start")
    p.add_argument("--unique", action="store_true", help="count distinct users")
    p.set_defaults(func=_cmd_usage)

    p = commands["send"] = sub.add_parser(
        "send", parents=[net], help="send one breadcrumb and wait for it"
    )
    p.add_argument("project", metavar="OWNER/REPO")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--status", choices=["R", "C", "F", "S"], default="R")
    p.add_argument("--desc", default=None, help="status description")
    p.add_argument("--error-type", default=None)
    p.add_argument("--error-desc", default=None)
    p.set_defaults(func=_cmd_send)

    p = commands["stored"] = sub.add_parser(
        "stored",
        parents=[net],
        help="show what a local collector stored (--follow: as it arrives)",
        description="Show the breadcrumbs a local collector (migas-logging serve) stored, "
        "oldest first, and note the ones it refused. The hosted server cannot be read so.",
    )
    p.add_argument("--project", metavar="OWNER/REPO", help="only this project's")
    p.add_argument("--session", metavar="ID", help="only this session's (or its first characters)")
    p.add_argument("--status", choices=["R", "C", "F", "S"], help="only this status")
    p.add_argument("--limit", type=_count, metavar="N", help="at most N rows, then stop")
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new breadcrumbs as they arrive, until Ctrl-C",
    )
    p.add_argument(
        "--follow-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="with --follow: stop after this long (exit 1 if --limit rows had not come)",
    )
    p.set_defaults(func=_cmd_stored)

    p = commands["serve"] = sub.add_parser(
        "serve",
        parents=[json_only],
        help="run a local migas-compatible collector",
        description="Run a local migas-compatible collector until Ctrl-C or SIGTERM.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=8080, help="port to listen on (default 8080; 0: any free)"
    )
    p.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    p.add_argument(
        "--register",
        action="append",
        type=_project,
        metavar="OWNER/REPO",
        help="a project to accept (repeatable; default nipreps/migas-logging)",
    )
    p.add_argument(
        "--latest",
        action="append",
        type=_latest,
        metavar="OWNER/REPO=VERSION",
        help="the latest release check_project reports for a project (repeatable; "
        "it does not register the project)",
    )
    p.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=argparse.SUPPRESS,
        metavar="N/SECONDS",
        help="answer 429 past N requests per window and address (default 1000/60, the "
        "real server's; 'off': no limit)",
    )
    p.set_defaults(func=_cmd_serve)

    p = commands["demo"] = sub.add_parser(
        "demo",
        parents=[json_only],
        help="start a local collector, log through dictConfig, show what arrived",
    )
    p.set_defaults(func=_cmd_demo)

    spool_dir = _Parser(add_help=False)
    spool_dir.add_argument(
        "--spool-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the spool directory (default: $MIGAS_SPOOL_DIR, then ~/.cache/migas/spool)",
    )
    p = commands["spool"] = sub.add_parser(
        "spool",
        parents=[net, spool_dir],
        help="list, send or clear the breadcrumbs kept while the server was unreachable",
        description="The spool keeps the breadcrumbs that could not be delivered (no "
        "network, or rate-limited at exit) until they can be sent.",
    )
    actions = p.add_subparsers(dest="spool_command", required=True, metavar="ACTION")
    for name, parents, func, text in (
        ("list", [json_only, spool_dir], _cmd_spool_list, "show what the spool holds"),
        (
            "send",
            [net, spool_dir],
            _cmd_spool_send,
            "send it to the server, each run's terminal breadcrumb last",
        ),
        ("clear", [json_only, spool_dir], _cmd_spool_clear, "remove it all, without asking"),
    ):
        q = commands[f"spool {name}"] = actions.add_parser(name, parents=parents, help=text)
        q.set_defaults(func=func)
        if name == "send":
            q.add_argument(
                "--max-wait",
                metavar="SECONDS",
                type=float,
                default=120.0,
                help="wait at most this long in all for the rate budget and the server's "
                "429 windows (default 120); what is left stays in the spool",
            )
            q.add_argument(
                "--rate",
                metavar="N/SECONDS",
                type=_machine_rate,
                default=None,
                help="the machine's budget, shared with the processes that use this spool: "
                "give the same machine_rate as they do (default 100/60, the server's "
                "documented window per address)",
            )
    return parser, commands


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; usage errors exit with status 2 and one line on stderr."""
    parser, commands = _parser()
    args, extra = parser.parse_known_args(argv)
    name = args.command
    if name == "spool":
        name = f"spool {args.spool_command}"
    command = commands[name]
    if extra:
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    local = {
        "serve": "it runs its own server",
        "demo": "it runs its own server",
        "spool list": "it reads only the spool",
        "spool clear": "it reads only the spool",
    }
    if name in local:
        for option in ("endpoint", "timeout"):
            if getattr(args, option, None) is not None:
                command.error(f"--{option} is not an option of {name}: {local[name]}")
    if args.command == "serve":
        args.rate_limit_given = "rate_limit" in vars(args)
        if not args.rate_limit_given:
            from migas_logging.collector import DEFAULT_RATE_LIMIT

            args.rate_limit = DEFAULT_RATE_LIMIT
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    .. versionadded:: 0.1.0
    """
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except ImportError as exc:
        return _fail(_import_message(exc), EXIT_USAGE)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MigasError as exc:
        return _fail(str(exc))
    except ImportError as exc:
        return _fail(_import_message(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    return code


def _import_message(exc: ImportError) -> str:
    message = str(exc)
    return message if _EXTRA_HINT in message else f"{message} (install the extra: {_EXTRA_HINT})"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
