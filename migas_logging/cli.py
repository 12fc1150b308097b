"""The ``migas-logging`` command.

::

    migas-logging check OWNER/REPO VERSION
    migas-logging usage OWNER/REPO --start DATE [--end DATE] [--unique]
    migas-logging send OWNER/REPO VERSION [--status R|C|F|S] [--desc TEXT]
    migas-logging serve [--port N] [--db FILE] [--register OWNER/REPO ...]
    migas-logging demo

Every command takes ``--endpoint URL`` (default ``MIGAS_ENDPOINT``, then the hosted
server) and ``--json`` (machine-readable output instead of a table). A failure prints
one line saying why on stderr and exits non-zero: 1 when the server said no or could not
be reached, 2 for bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from migas_logging._version import __version__
from migas_logging.exceptions import ConfigurationError, MigasError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, width: int = 60) -> str:
    """A plain text table, each column as wide as its widest cell (at most ``width``)."""
    cells = [[str(c) for c in columns]]
    for row in rows:
        cells.append([_cell(row.get(c), width) for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _pairs(result: dict[str, Any]) -> str:
    width = max(len(k) for k in result)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in result.items())


def _emit(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"migas-logging: {message}", file=sys.stderr)
    return code


# --- commands ---------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    from migas_logging.query import check_project

    result = check_project(
        args.project,
        args.version,
        endpoint=args.endpoint,
        timeout=args.timeout,
        raise_on_error=True,
    )
    _emit(args, result, _pairs(result))
    return (
        EXIT_OK
        if result["success"]
        else _fail(result["message"] or "the server could not tell the latest version")
    )


def _cmd_usage(args: argparse.Namespace) -> int:
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
    _emit(args, result, _pairs(result))
    return EXIT_OK if result["success"] else _fail(result["message"] or "no usage data")


def _cmd_send(args: argparse.Namespace) -> int:
    from migas_logging import breadcrumb as bc
    from migas_logging import config
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
    _emit(args, result, _pairs({k: v for k, v in result.items() if k != "breadcrumb"}))
    return (
        EXIT_OK if outcome.ok else _fail(f"not delivered ({outcome.kind.value}): {outcome.detail}")
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from migas_logging.collector import serve_forever

    rate = None
    if args.rate_limit:
        count, _, window = args.rate_limit.partition("/")
        rate = (int(count), float(window or 60))
    register = args.register or ["nipreps/migas-logging"]
    latest: dict[str, str] = {}
    for item in args.latest or []:
        project, sep, version = item.partition("=")
        if not sep or not version:
            raise ConfigurationError(f"--latest {item!r} is not OWNER/REPO=VERSION")
        latest[project] = version

    def ready(collector: Any) -> None:
        info = {"url": collector.url, "db": args.db, "registered": register}
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"migas collector listening on {collector.url}", flush=True)
            print(f"  database: {args.db}", flush=True)
            print(f"  projects: {', '.join(register)}", flush=True)
            print(
                f"  try:  MIGAS_ENDPOINT={collector.url} migas-logging send {register[0]} 1.0.0",
                flush=True,
            )

    def ready_with_latest(collector: Any) -> None:
        for project, version in latest.items():
            collector.register(project, latest=version)
        ready(collector)

    serve_forever(
        host=args.host,
        port=args.port,
        db=args.db,
        register=register,
        rate_limit=rate,
        ready=ready_with_latest,
    )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from migas_logging._demo import run_demo

    return run_demo(as_json=args.json, endpoint=args.endpoint)


# --- parser -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoint",
        help="server base URL (default: $MIGAS_ENDPOINT, then https://migas.nipreps.org)",
    )
    common.add_argument("--timeout", type=float, default=None, help="seconds (default 5)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = argparse.ArgumentParser(
        prog="migas-logging",
        description="Talk to a migas telemetry server, or run a local one.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", parents=[common], help="is this version flagged, what is latest?")
    p.add_argument("project", metavar="OWNER/REPO")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("usage", parents=[common], help="count a project's uses")
    p.add_argument("project", metavar="OWNER/REPO")
    p.add_argument("--start", required=True, help="YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    p.add_argument("--end", default=None, help="default: now")
    p.add_argument("--unique", action="store_true", help="count distinct users")
    p.set_defaults(func=_cmd_usage)

    p = sub.add_parser("send", parents=[common], help="send one breadcrumb and wait for it")
    p.add_argument("project", metavar="OWNER/REPO")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--status", choices=["R", "C", "F", "S"], default="R")
    p.add_argument("--desc", default=None, help="status description")
    p.add_argument("--error-type", default=None)
    p.add_argument("--error-desc", default=None)
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser("serve", parents=[common], help="run a local migas-compatible collector")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    p.add_argument(
        "--register",
        action="append",
        metavar="OWNER/REPO",
        help="a project to accept (repeatable; default nipreps/migas-logging)",
    )
    p.add_argument(
        "--latest",
        action="append",
        metavar="OWNER/REPO=VERSION",
        help="the latest version check_project reports for a project (repeatable)",
    )
    p.add_argument(
        "--rate-limit",
        default=None,
        metavar="N/SECONDS",
        help="answer 429 past N requests per window, like the real server",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="start a local collector, log through dictConfig, show what arrived",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    .. versionadded:: 0.1.0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MigasError as exc:
        return _fail(str(exc))
    except ImportError as exc:
        return _fail(
            f"{exc} (install the extra: pip install 'migas-logging[collector]')", EXIT_USAGE
        )
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
