"""Privacy and security: what leaves the machine, what never does, and how.

* With default options no breadcrumb (nor the audit trail, nor the library's own log
  lines) carries the home directory, the user name, the host name, an absolute path or
  the value of an environment variable that looks secret. Programs run with a made-up
  identity (``HOME``, ``USER``; the host name in a UTS namespace when the real one is too
  short to be redacted, e.g. ``vm``), so the checks look for values that really are there.
* TLS verification cannot be turned off silently: the transport's session keeps
  ``verify=True``, even when handed a session without it, and the environment variables
  that switch verification off elsewhere (``CURL_CA_BUNDLE=""``, ``PYTHONHTTPSVERIFY=0``)
  change nothing. ``REQUESTS_CA_BUNDLE`` (requests' own variable) chooses which
  authorities are trusted; it cannot turn verification off.
* A plain ``http://`` endpoint that is not this machine gets a warning on the
  ``migas_logging`` logger.
* Credentials never appear in the library's logs or errors. (The library has no token
  option: ``get_usage`` uses the public GraphQL query, not the token-protected
  ``/api/usage`` endpoint; the only place a credential can be given is the endpoint URL.)
* ``MIGAS_OPTOUT`` (any value, even empty) means no connection at all and no file for
  every entry point: the handler, the crash hook, the structlog processor, the queries
  and the command line.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from migas_logging import MigasHandler, client
from migas_logging import breadcrumb as bc
from migas_logging._redact import GENERIC_NAMES, MIN_NAME_LEN, default_redactor
from migas_logging.collector import LocalCollector, free_port
from migas_logging.exceptions import ConfigurationError
from migas_logging.transport import OutcomeKind, Transport

from .conftest import (
    PROJECT,
    App,
    AppRun,
    Listener,
    TLSServer,
    app_env,
    assert_exact,
    make_handler,
)

# --- who the program is ------------------------------------------------------------

USER = "zeldaquint"
HOME = f"/home/{USER}"
FAKE_HOST = "zelda-workstation-7"
SECRETS = {
    "ACME_API_TOKEN": "tok_9f8e7d6c5b4a3f2e",
    "DB_PASSWORD": "hunter2-correct-horse",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "SERVICE_AUTH": "Basic-c2VjcmV0OnBhc3N3b3Jk",
}


def usable_host_name(name: str) -> bool:
    """A host name the redactor replaces (3+ characters, not a generic machine name)."""
    short = name.split(".", 1)[0]
    return len(short) >= MIN_NAME_LEN and short.casefold() not in GENERIC_NAMES


def uts_prefix(hostname: str) -> list[str] | None:
    """A command prefix that runs a program under another host name, if this machine can."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for flags in (["--uts"], ["--user", "--map-root-user", "--uts"]):
        probe = [unshare, *flags, "sh", "-c", f"hostname {hostname} && hostname"]
        try:
            out = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == hostname:
            return [unshare, *flags, "sh", "-c", 'hostname "$0" && exec "$@"', hostname]
    return None


def identity_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A program environment with a made-up user, home and secrets."""
    env = app_env(tmp_path, HOME=HOME, USER=USER, LOGNAME=USER, **SECRETS, **extra)
    env.pop("SUDO_USER", None)
    env.pop("USERNAME", None)
    return env


# What the program logs: identity everywhere, in every shape an application produces.
LEAKY_PROGRAM = """
import os, socket, threading
HOST = socket.gethostname()
TOKEN = os.environ["ACME_API_TOKEN"]
PASSWORD = os.environ["DB_PASSWORD"]
AWS = os.environ["AWS_SECRET_ACCESS_KEY"]
GH = os.environ["GITHUB_TOKEN"]
AUTH = os.environ["SERVICE_AUTH"]
HOME = os.path.expanduser("~")
USER = os.environ["USER"]
say("HOST", name=HOST)
h = setup(URL, excepthook=True, track=True, extras=[])  # default options otherwise
named = logging.getLogger(f"app.{USER}.{HOST}")
named.propagate = False
named.addHandler(h)
log.error(f"cannot read {HOME}/data/sub-01/anat.nii.gz as {USER} on {HOST}")
log.error(f"config at ~/.config/tool.yml and /etc/tool/secret.conf and /srv/x.csv")
log.error(f"C:\\\\Users\\\\{USER}\\\\data.txt and \\\\\\\\{HOST}\\\\share\\\\f and file:///tmp/z")
log.error(f"user {USER.upper()} mailed {USER}@{HOST}.example.org from 10.1.2.3")
log.error(f"GET https://{USER}:{PASSWORD}@api.example.org/v1?key={TOKEN}")
log.error(f"tokens {TOKEN} {GH} {AWS} {AUTH} password={PASSWORD}")
log.error("template keeps arguments out: %s %s %s", TOKEN, HOME, USER)
log.error("extras are off by default", extra={"token": TOKEN, "home": HOME})
named.error(f"{USER} logger name")
try:
    open(f"{HOME}/secret/{TOKEN}.txt")
except OSError:
    log.exception(f"while {USER} opened a file on {HOST}")
try:
    raise KeyError(f"{HOME}/{PASSWORD}") from ValueError(f"{GH} at /var/lib/{USER}")
except KeyError:
    log.exception("chained")
def dies():
    raise RuntimeError(f"thread of {USER} failed in {HOME} with {AWS}")
t = threading.Thread(target=dies, name=f"worker-{USER}")
t.start(); t.join()
h.flush(5)
logged()
raise SystemError(f"{USER}@{HOST} crashed in {HOME}/run with {TOKEN} and {AUTH}")
"""

ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"=(\[:,])(?:~?/[^\s/<>]+|[A-Za-z]:\\|\\\\[^\s\\]+)")


def forbidden_values() -> list[str]:
    """The values that must never leave, anywhere in a request (all made-up, distinctive)."""
    return [HOME, USER, *SECRETS.values()]


def proc_texts(breadcrumb: dict[str, Any] | None) -> str:
    """The free texts of a breadcrumb (a real host name may be a word that the fixed
    fields hold anyway, ``linux`` say, so it is looked for in these only)."""
    proc = (breadcrumb or {}).get("proc") or {}
    return json.dumps([proc.get(k) for k in ("status_desc", "error_type", "error_desc")])


def assert_clean(text: str, values: list[str], where: str) -> None:
    """None of ``values`` (case-insensitive) is in ``text``."""
    folded = text.casefold()
    for value in values:
        assert value.casefold() not in folded, f"{value!r} leaked into {where}: {text[:2000]!r}"


def run_leaky_program(
    tmp_path: Path, collector: LocalCollector, prefix: list[str] | None
) -> tuple[AppRun, Path]:
    """Run LEAKY_PROGRAM with the library's own diagnostics and an audit trail on."""
    audit = tmp_path / "audit.jsonl"
    env = identity_env(tmp_path, MIGAS_LOG_LEVEL="DEBUG", MIGAS_AUDIT_FILE=str(audit))
    body = LEAKY_PROGRAM.replace("URL", repr(collector.url))
    return App(body, env, prefix=prefix).result(60), audit


def check_nothing_identifying_left(
    run: AppRun, audit: Path, collector: LocalCollector, host: str | None
) -> None:
    """Every request, the audit trail and the library's own log lines are clean."""
    assert 1 == run.returncode, run.stderr[-3000:]
    assert "SystemError" in run.stderr  # the program's own traceback is untouched
    values = forbidden_values()
    requests_seen = collector.requests()
    assert len(requests_seen) >= 12  # the records, the thread crash, start, the crash
    for request in requests_seen:
        assert_clean(request.body.decode("utf-8"), values, f"a request to {request.path}")
        if host is not None:
            assert_clean(proc_texts(request.json()), [host], f"a request to {request.path}")
    for row in collector.breadcrumbs():
        for field in ("status_desc", "error_type", "error_desc"):
            text = row[field] or ""
            assert not ABSOLUTE_PATH.search(text), f"a path in {field}: {text!r}"
    assert "SystemError" in {r["error_type"] for r in collector.breadcrumbs()}
    trail = audit.read_text(encoding="utf-8")
    assert trail.count("\n") >= 12
    assert_clean(trail, values, "the audit trail")
    if host is not None:
        for line in trail.splitlines():
            assert_clean(proc_texts(json.loads(line).get("breadcrumb")), [host], "the audit")
    own = [line for line in run.stderr.splitlines() if line.startswith("<migas_logging")]
    assert_clean("\n".join(own), [*SECRETS.values(), HOME], "the library's own log lines")


@pytest.mark.slow
def test_default_breadcrumbs_carry_no_identity(collector: LocalCollector, tmp_path: Path) -> None:
    """Home, user, paths and secret values: in every message shape, none leaves."""
    run, audit = run_leaky_program(tmp_path, collector, prefix=None)
    host = None  # the host name: next test
    check_nothing_identifying_left(run, audit, collector, host)


@pytest.mark.slow
def test_default_breadcrumbs_carry_no_host_name(collector: LocalCollector, tmp_path: Path) -> None:
    """The machine's name (real, or made up in a UTS namespace) never leaves."""
    import socket

    real = socket.gethostname()
    if usable_host_name(real):
        prefix, host = None, real
    else:
        prefix, host = uts_prefix(FAKE_HOST), FAKE_HOST
        if prefix is None:
            pytest.skip(f"host name {real!r} is too short to redact and no UTS namespace")
    run, audit = run_leaky_program(tmp_path, collector, prefix=prefix)
    assert [{"name": host}] == run.tagged("HOST")  # the program really ran under that name
    check_nothing_identifying_left(run, audit, collector, host)


def test_privacy_check_can_fail() -> None:
    """Self-test of the suite: a leaked value and an absolute path are caught."""
    with pytest.raises(AssertionError):
        assert_clean(f"oops {USER.upper()}", [USER], "a test")
    assert ABSOLUTE_PATH.search("read /etc/shadow")
    assert ABSOLUTE_PATH.search("at C:\\Users")
    assert not ABSOLUTE_PATH.search("owner/repo <path> module:function:12")


# --- credentials ---------------------------------------------------------------------

CREDENTIAL = "S3cretT0kenValue"


def test_credentials_in_the_endpoint_never_appear(
    app_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """user:password@ in the endpoint URL: absent from logs, errors and repr."""
    url = f"http://bob:{CREDENTIAL}@127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG, logger="migas_logging"):
        handler = make_handler(url, app_log, retries=0)
        for i in range(3):  # the third failure opens the circuit, and says so
            app_log.error(f"unreachable {i}")
        handler.flush(3)
        with pytest.raises(ConfigurationError) as info:
            MigasHandler(PROJECT, endpoint=f"ftp://bob:{CREDENTIAL}@127.0.0.1", excepthook=False)
    assert "cannot reach" in caplog.text  # the diagnostics were written ...
    assert CREDENTIAL not in caplog.text  # ... without the credential
    assert CREDENTIAL not in repr(handler)
    assert CREDENTIAL not in str(info.value)


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TLSServer]:
    """An HTTPS server on 127.0.0.1 whose certificate nobody trusts."""
    server = TLSServer(tmp_path)
    yield server
    server.close()


CROSSING_VARIABLES = {"CURL_CA_BUNDLE": "", "REQUESTS_CA_BUNDLE": "", "PYTHONHTTPSVERIFY": "0"}


def test_tls_verification_cannot_be_switched_off(
    tls: TLSServer,
    app_log: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An untrusted certificate: nothing is sent, whatever the environment says; verify=True."""
    for name, value in CROSSING_VARIABLES.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="migas_logging"):
        handler = make_handler(tls.url, app_log, retries=0)
        for i in range(3):
            app_log.error(f"over tls {i}")
        handler.flush(10)
    stats = handler.stats.as_dict()
    assert_exact(stats)
    assert (0, {"unreachable": 3}) == (stats["sent"], stats["dropped"])
    assert [] == tls.bodies  # not one body crossed an unverified connection
    assert "TLS" in caplog.text  # and it was said why, on the library's logger
    transport = client.current_client().sender.transport()  # type: ignore[union-attr]
    assert transport._session.verify is True


def test_transport_turns_verification_back_on(tls: TLSServer) -> None:
    """A session handed over with verify=False gets verify=True back, and refuses."""
    session = requests.Session()
    session.verify = False
    transport = Transport(tls.url, 2.0, session=session)
    assert session.verify is True
    crumb = bc.Breadcrumb(project=PROJECT, project_version="1", language_version="3")
    outcome = transport.send(crumb)
    assert OutcomeKind.UNREACHABLE is outcome.kind
    assert "TLS" in outcome.detail
    assert [] == tls.bodies


def test_requests_ca_bundle_chooses_authorities_only(
    tls: TLSServer, app_log: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE (documented): trusting a CA delivers; a bad path delivers nothing."""
    crumb = bc.Breadcrumb(project=PROJECT, project_version="1", language_version="3")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
    assert Transport(tls.url, 2.0).send(crumb).ok  # verified against the chosen authority
    assert 1 == len(tls.bodies)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert.with_name("missing.pem")))
    handler = make_handler(tls.url, app_log, retries=0)
    app_log.error("bundle missing")
    handler.flush(5)
    assert {"error": 1} == handler.stats.as_dict()["dropped"]  # not sent unverified
    assert 1 == len(tls.bodies)


# --- plain http ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://192.0.2.10:8080", True),
        ("http://migas.example.org", True),
        ("http://[2001:db8::1]:8080", True),
        ("http://0177.0.0.1", True),  # not how this library spells loopback: warn
        ("https://192.0.2.10", False),
        ("http://127.0.0.1:8080", False),
        ("http://127.5.6.7", False),
        ("http://localhost:8080", False),
        ("http://[::1]:8080", False),
        pytest.param(
            "http://127.0.0.1.nip.example",
            True,
        ),
    ],
)
def test_plain_http_off_this_machine_is_warned_about(
    url: str, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Building a handler for plain http to another machine warns (no connection made)."""
    from migas_logging import config

    getattr(config, "_warned_plain_http", set()).clear()  # warned once per URL per process
    with caplog.at_level(logging.WARNING, logger="migas_logging"):
        MigasHandler(PROJECT, "1", endpoint=url, excepthook=False)
    warned = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert warns == bool(warned)
    if warned:
        assert warned[0].name.startswith("migas_logging")


# --- opt-out ---------------------------------------------------------------------------

OPTOUT_PROGRAMS: dict[str, str] = {
    "handler": """
        h = setup(URL, excepthook=False, audit_file=AUDIT)
        for i in range(20):
            log.error(f"opted out {i}")
        h.flush(2)
        extra["stats"] = h.stats.as_dict()
    """,
    "dictconfig-crash": """
        import logging.config
        logging.config.dictConfig({"version": 1, "handlers": {"m": {
            "class": "migas_logging.MigasHandler", "project": "nipreps/migas-logging",
            "endpoint": URL, "track": True}}, "root": {"handlers": ["m"]}})
        logging.getLogger("x").error("before the crash")
        logged()
        raise RuntimeError("crash while opted out")
    """,
    "install-excepthook-crash": """
        import threading
        from migas_logging import install_excepthook
        install_excepthook("nipreps/migas-logging", "1", endpoint=URL, track=True)
        t = threading.Thread(target=lambda: 1 / 0)
        t.start(); t.join()
        logged()
        raise KeyError("crash while opted out")
    """,
    "structlog": """
        import structlog
        from migas_logging.processors import MigasProcessor
        p = MigasProcessor("nipreps/migas-logging", "1", endpoint=URL, audit_file=AUDIT)
        slog = structlog.wrap_logger(structlog.ReturnLogger(), processors=[
            structlog.processors.add_log_level, p, lambda _l, _m, e: ""])
        for i in range(10):
            slog.error("opted out", i=i)
        p.handler.flush(2)
        extra["stats"] = p.handler.stats.as_dict()
    """,
    "queries": """
        from migas_logging import check_project, get_usage
        extra["check"] = check_project("nipreps/migas-logging", "1.0", endpoint=URL)
        extra["usage"] = get_usage("nipreps/migas-logging", "2024-01-01", endpoint=URL)
        try:
            check_project("nipreps/migas-logging", "1.0", endpoint=URL, raise_on_error=True)
        except Exception as exc:
            extra["raised"] = type(exc).__name__
    """,
}
CLI_COMMANDS = {
    "cli-send": ["send", PROJECT, "1.0", "--status", "F", "--desc", "opted out"],
    "cli-check": ["check", PROJECT, "1.0"],
    "cli-usage": ["usage", PROJECT, "--start", "2024-01-01"],
}
OPTOUT_VALUES = {"1": "1", "empty": ""}


@pytest.fixture(scope="module")
def optout_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[AppRun, Listener, Path]]]:
    """Every entry point under MIGAS_OPTOUT (1, and empty), run at once."""
    started: dict[str, tuple[App, Listener, Path]] = {}
    listeners: list[Listener] = []
    try:
        for value_name, value in OPTOUT_VALUES.items():
            for name in [*OPTOUT_PROGRAMS, *CLI_COMMANDS]:
                key = f"{name}-{value_name}"
                root = tmp_path_factory.mktemp(key)
                (root / "cwd").mkdir()
                listener = Listener()
                listeners.append(listener)
                env = app_env(
                    root,
                    MIGAS_OPTOUT=value,
                    HOME=str(root / "home"),
                    MIGAS_AUDIT_FILE=str(root / "audit-from-env.jsonl"),
                    MIGAS_ENDPOINT=listener.url,
                )
                if name in CLI_COMMANDS:
                    argv = [sys.executable, "-m", "migas_logging", *CLI_COMMANDS[name]]
                    app = App("", env, argv=argv, cwd=root / "cwd")
                else:
                    body = OPTOUT_PROGRAMS[name].replace("URL", repr(listener.url))
                    body = body.replace("AUDIT", repr(str(root / "audit.jsonl")))
                    app = App(body, env, cwd=root / "cwd")
                started[key] = (app, listener, root)
        yield {key: (app.result(60), lis, root) for key, (app, lis, root) in started.items()}
    finally:
        for listener in listeners:
            listener.close()


def files_under(root: Path) -> list[str]:
    """Every file and directory below ``root`` (the program's HOME, XDG dir, cwd...)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("value", list(OPTOUT_VALUES))
@pytest.mark.parametrize("entry", [*OPTOUT_PROGRAMS, *CLI_COMMANDS])
def test_optout_means_no_connection_and_no_file(
    optout_runs: dict[str, tuple[AppRun, Listener, Path]], entry: str, value: str
) -> None:
    """MIGAS_OPTOUT: not one connection, not one file, for every entry point."""
    run, listener, root = optout_runs[f"{entry}-{value}"]
    assert 0 == listener.connections(), run.stderr[-2000:]
    assert ["cwd"] == files_under(root)  # no user id, no audit file, nothing in cwd
    if entry.endswith("crash"):
        assert 1 == run.returncode
        assert "crash while opted out" in run.stderr  # the traceback is still printed
    elif entry.startswith("cli-"):
        assert 1 == run.returncode  # documented: the server said no / nothing was done
        assert "MIGAS_OPTOUT" in run.stderr
        assert "Traceback" not in run.stderr
    else:
        assert 0 == run.returncode, run.stderr[-2000:]
        extra = run.report["extra"]
        if "stats" in extra:
            stats = extra["stats"]
            assert_exact(stats)
            assert stats["emitted"] == stats["dropped"].get("optout", 0) > 0
        if entry == "queries":
            assert extra["check"]["success"] is False
            assert "MIGAS_OPTOUT" in extra["check"]["message"]
            assert extra["usage"]["success"] is False
            assert "TelemetryDisabledError" == extra["raised"]


@pytest.mark.slow
def test_optout_checks_can_fail(tmp_path: Path) -> None:
    """Self-test: without MIGAS_OPTOUT the same program connects and writes its user id."""
    listener = Listener()
    try:
        env = app_env(tmp_path, HOME=str(tmp_path / "home"), MIGAS_ENDPOINT=listener.url)
        body = OPTOUT_PROGRAMS["handler"].replace("URL", repr(listener.url))
        body = body.replace("AUDIT", repr(str(tmp_path / "audit.jsonl")))
        body = body.replace("excepthook=False,", "excepthook=False, flush_deadline=0.3,")
        body = body.replace("h.flush(2)", "h.flush(0.3)")
        run = App(body, env, cwd=tmp_path).result(60)
        assert 0 == run.returncode, run.stderr[-2000:]
        assert listener.connections() > 0
        assert (tmp_path / "xdg" / "migas" / "user_id").exists()
    finally:
        listener.close()


def test_redactor_knows_the_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default redactor takes secret-looking variables from the environment (in-process)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    default_redactor.cache_clear()
    try:
        redact = default_redactor()
        for value in SECRETS.values():
            assert value not in redact(f"value {value} inside")
    finally:
        default_redactor.cache_clear()
