"""The spool: breadcrumbs that could not be delivered, kept on disk until they can be.

One small file per breadcrumb holds its request body exactly as the transport sends it
(:meth:`Breadcrumb.to_payload`, compact UTF-8 JSON). Everything else is in the file's
name, ``SESSION_SEQ_KIND_NS_PID_N_RANDOM.json``: the session, the breadcrumb's number in
it, ``t`` for the run's terminal breadcrumb (``r`` otherwise), the time it was written
(nanoseconds), and the writer's pid, counter and 48 random bits, so names sort by
session and number and never collide between processes.

* **Writing** (:meth:`Spool.put`) goes to a hidden temporary file, is flushed to disk
  (``fsync``), then renamed into place: a reader sees a whole file or none. Files are
  mode 0600 in a directory made 0700; a directory that another user owns or may write
  to is refused, and a symbolic link planted in it is never followed.
* **Bounds**: at most ``max_items`` files and ``max_bytes`` bytes. Past either, the
  oldest breadcrumbs are removed and counted (:attr:`Spool.evicted`), runs' terminal
  breadcrumbs last.
* **Order** (:meth:`Spool.items`): sessions in the order they were first written; in
  each session, breadcrumbs by number, the terminal one last whatever its number (the
  dashboard reads a run's outcome from its latest breadcrumb).
* **Replay** (:meth:`Spool.replay`) sends the runs' other breadcrumbs first, then their
  terminal ones, each at least a second after its run's previous one (the server's clock
  counts whole seconds). It claims each file by renaming it to ``NAME.claimed-HOST-PID``
  before sending it and removes it only once the server took it: two replaying
  processes never send one breadcrumb twice, and a process that dies mid-way loses
  nothing (its claim is given back once it is older than a few minutes and its process
  is gone); at most the breadcrumb in flight is sent again.

The store knows nothing of opt-out: the client never makes a :class:`Spool` when the user
opted out (``MIGAS_OPTOUT``) or disabled the spool (``MIGAS_SPOOL_DIR=""``), so nothing is
written then. No method ever raises into the caller.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

from migas_logging._files import NOFOLLOW, private_dir_problem
from migas_logging.exceptions import ConfigurationError

if TYPE_CHECKING:
    from migas_logging.breadcrumb import Breadcrumb
    from migas_logging.transport import Outcome

__all__ = [
    "ReplayResult",
    "Spool",
    "SpoolItem",
    "Verdict",
    "breadcrumb_from_payload",
    "default_spool_dir",
    "verdict_of",
]

#: What ``send`` tells :meth:`Spool.replay` about one breadcrumb.
Verdict = Literal["sent", "retry", "drop"]

_NAME: Final = re.compile(
    r"(?P<session>[A-Za-z0-9-]{1,64})_(?P<seq>\d{10})_(?P<kind>[tr])_(?P<ns>\d{19})"
    r"_(?P<pid>\d{1,10})_(?P<n>\d{12})_(?P<rand>[0-9a-f]{12})\.json"
)
_CLAIM: Final = ".claimed-"
_CLAIMER: Final = re.compile(r"(?P<host>[A-Za-z0-9-]{1,64})-(?P<pid>\d{1,10})")
_SAFE_SESSION: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_TEMP_PREFIX: Final = ".tmp-"
_MAX_SEQ: Final = 10**10 - 1
#: A spool file larger than this is not one of ours (a body is at most 2,500 bytes).
_MAX_FILE_BYTES: Final = 64 * 1024
#: A temporary file older than this was left by a writer that died.
_STALE_TEMP: Final = 3600.0
#: A claim older than this is given back even if its owner cannot be checked (another
#: host, a reused pid): no send takes this long.
_ORPHAN_CLAIM: Final = 3600.0

_counter = itertools.count()
_in_flight: set[str] = set()  # this process's claims being sent, by file name
_in_flight_lock = threading.Lock()
_host: tuple[int, str] | None = None


def default_spool_dir() -> Path | None:
    """The spool directory the environment asks for, or None when the spool is off.

    ``$MIGAS_SPOOL_DIR`` when set (empty, or only spaces: the spool is disabled); else
    ``$XDG_CACHE_HOME/migas/spool`` (an absolute ``XDG_CACHE_HOME`` only, as the XDG
    specification says), else ``~/.cache/migas/spool``. Never raises: None when no home
    directory can be found.

    .. versionadded:: 0.2.0
    """
    try:
        value = os.environ.get("MIGAS_SPOOL_DIR")
        if value is not None:
            return Path(value).expanduser() if value.strip() else None
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
        return base / "migas" / "spool"
    except (RuntimeError, KeyError, OSError):  # no HOME and no password entry
        return None


class SpoolItem(NamedTuple):
    """One spooled breadcrumb, as :meth:`Spool.items` found it.

    Attributes:
        path: Its file.
        session: The session it belongs to (as written in the file name).
        seq: Its number in the session.
        terminal: Whether it ends its run (sent after the session's others).
        created: When it was written (seconds since the epoch).
        size: The file's size in bytes.
        payload: The request body.
        claimed_by: ``HOST-PID`` of the process sending it now, or None.
    """

    path: Path
    session: str
    seq: int
    terminal: bool
    created: float
    size: int
    payload: dict[str, Any]
    claimed_by: str | None = None

    @property
    def name(self) -> str:
        """Its file's name when not claimed (unique, sortable within the session)."""
        return self.path.name.partition(_CLAIM)[0]

    @property
    def status(self) -> str:
        """The breadcrumb's status (``R``, ``C``, ``F``, ``S``), ``?`` if unreadable."""
        proc = self.payload.get("proc")
        status = proc.get("status") if isinstance(proc, dict) else None
        return status if isinstance(status, str) else "?"

    @property
    def project(self) -> str:
        """The breadcrumb's project, ``?`` if unreadable."""
        project = self.payload.get("project")
        return project if isinstance(project, str) else "?"


class ReplayResult(NamedTuple):
    """What one :meth:`Spool.replay` did.

    Attributes:
        sent: Breadcrumbs the server took (their files are gone).
        dropped: Breadcrumbs the server refused for good (their files are gone too).
        left: Breadcrumbs still in the spool when the replay ended.
        stopped: Why it stopped early: ``"retry"`` (``send`` said so), ``"deadline"``,
            ``"max_items"``, ``"unusable"`` (the directory is not safe), or None.
    """

    sent: int
    dropped: int
    left: int
    stopped: str | None = None


class _Entry(NamedTuple):
    """A spool file seen in the directory, before its content is read."""

    name: str  # the file's name now
    base: str  # its name when not claimed
    session: str
    seq: int
    terminal: bool
    ns: int
    size: int
    mtime: float
    claimer: tuple[str, int] | None


def _parse(name: str) -> tuple[re.Match[str], tuple[str, int] | None] | None:
    base, sep, claim = name.partition(_CLAIM)
    match = _NAME.fullmatch(base)
    if match is None:
        return None
    if not sep:
        return match, None
    claimer = _CLAIMER.fullmatch(claim)
    if claimer is None:
        return None
    return match, (claimer["host"], int(claimer["pid"]))


def _claimed_name(name: str) -> str:
    """The name of file ``name`` claimed by this process (to send it, or held by
    :meth:`Spool.write`)."""
    return f"{name}{_CLAIM}{_this_host()}-{os.getpid()}"


def _session_name(session: str) -> str:
    """``session`` when it is safe in a file name (a UUID is); else a digest of it."""
    if _SAFE_SESSION.fullmatch(session):
        return session
    if not session:
        return "none"
    import hashlib

    return "x" + hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _this_host() -> str:
    """This machine's name, safe in a file name (a claim says where its owner runs)."""
    global _host  # noqa: PLW0603 - computed once per process
    pid = os.getpid()
    if _host is None or _host[0] != pid:
        try:
            name = socket.gethostname()
        except OSError:
            name = ""
        safe = re.sub(r"[^A-Za-z0-9-]", "-", name)[:64] or "host"
        _host = (pid, safe)
    return _host[1]


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine."""
    if pid == os.getpid():
        return False  # checked against this process's own claims instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's) or cannot be checked
    return False


class Spool:
    """A bounded store of undelivered breadcrumbs in one directory, for many processes.

    Making a ``Spool`` touches nothing: the directory is made (mode 0700) by the first
    :meth:`put`. The counters are this object's (each process has its own).

    Args:
        directory: Where the files go (see :func:`default_spool_dir`).
        max_items: The most breadcrumbs kept.
        max_bytes: The most bytes kept (file contents).
        clock: Seconds since the epoch (tests give a fake one).
        stale_claim: Seconds after which a claim whose process is gone is given back.

    Raises:
        ConfigurationError: A bound is not a positive whole number, or ``max_bytes`` is
            smaller than one breadcrumb (2,500 bytes).

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_items: int = 1000,
        max_bytes: int = 5_000_000,
        clock: Callable[[], float] = time.time,
        stale_claim: float = 300.0,
    ) -> None:
        from migas_logging.breadcrumb import MAX_BODY_BYTES

        for name, value, least in (
            ("max_items", max_items, 1),
            ("max_bytes", max_bytes, MAX_BODY_BYTES),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigurationError(
                    f"Spool {name}={value!r}: give a whole number of at least {least}"
                )
        self.directory = Path(directory)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.stale_claim = float(stale_claim)
        self._clock = clock
        #: Breadcrumbs removed to keep within the bounds (by this object).
        self.evicted = 0
        #: Unreadable or foreign files removed (by this object).
        self.corrupt = 0
        #: Why the last operation could not use the directory, or None.
        self.problem: str | None = None
        # When each session's latest breadcrumb was sent (time.monotonic()), across
        # replays: a terminal breadcrumb of the next batch keeps its distance too.
        self._last_sent: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # -- writing ------------------------------------------------------------------------

    def put(self, payload: Mapping[str, Any], *, session: str, seq: int, terminal: bool) -> bool:
        """Keep one breadcrumb until it can be sent.

        Args:
            payload: Its request body (:meth:`Breadcrumb.to_payload`).
            session: Its session id (a UUID; other text is stored as a digest).
            seq: Its number in the session (0 to 9,999,999,999).
            terminal: Whether it is the run's terminal breadcrumb.

        Returns:
            True when it is on disk; False when it could not be kept (the directory is
            not safe or not writable, the disk is full, the payload is not JSON or
            larger than ``max_bytes``). Never raises.
        """
        return self.write(payload, session=session, seq=seq, terminal=terminal) is not None

    def write(
        self,
        payload: Mapping[str, Any],
        *,
        session: str,
        seq: int,
        terminal: bool,
        held: bool = False,
    ) -> str | None:
        """:meth:`put`, returning the file's name (None when not kept). Never raises.

        ``held``: the file is written claimed by this process, so that no replay takes
        it until :meth:`release` (a run's terminal breadcrumb written before the rest of
        its run); if this process dies first, the claim is given back like any other.

        .. versionadded:: 0.2.0
        """
        try:
            data = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"))
            body = data.encode("utf-8")
            if len(body) > min(self.max_bytes, _MAX_FILE_BYTES):
                self.problem = f"a breadcrumb of {len(body)} bytes is too large to keep"
                return None
            if not isinstance(seq, int) or not 0 <= seq <= _MAX_SEQ:
                self.problem = f"seq {seq!r} is not a number from 0 to {_MAX_SEQ}"
                return None
            if not self._usable(create=True):
                return None
            name = self._new_name(str(session), seq, bool(terminal))
            if held:
                with _in_flight_lock:
                    _in_flight.add(_claimed_name(name))
            self._write(name, body, final=_claimed_name(name) if held else name)
            if not self._enforce_bounds(keep=name):
                self.problem = "the spool is full of runs' terminal breadcrumbs"
                return None
        except Exception as exc:
            self.problem = f"cannot write to {self.directory}: {_reason(exc)}"
            return None
        return name

    def remove(self, name: str) -> None:
        """Take back a breadcrumb this process wrote (its name from :meth:`write`), if
        no replay has claimed it. Never raises."""
        for candidate in (name, _claimed_name(name)):
            with contextlib.suppress(OSError):
                os.unlink(self.directory / candidate)
        with _in_flight_lock:
            _in_flight.discard(_claimed_name(name))

    def release(self, name: str) -> None:
        """Let replays take a breadcrumb written ``held``. Never raises."""
        with contextlib.suppress(OSError):
            os.rename(self.directory / _claimed_name(name), self.directory / name)
        with _in_flight_lock:
            _in_flight.discard(_claimed_name(name))

    def holds(self, session: str) -> bool:
        """Whether the spool holds a breadcrumb of ``session`` (one being sent included).

        One directory listing, no file read. Never raises (False when it cannot look).

        .. versionadded:: 0.2.0
        """
        prefix = _session_name(str(session)) + "_"
        try:
            names = os.listdir(self.directory)
        except OSError:
            return False
        return any(name.startswith(prefix) and _parse(name) is not None for name in names)

    def _new_name(self, session: str, seq: int, terminal: bool) -> str:
        ns = max(0, min(int(self._clock() * 1e9), 10**19 - 1))
        return (
            f"{_session_name(session)}_{seq:010d}_{'t' if terminal else 'r'}_{ns:019d}"
            f"_{os.getpid()}_{next(_counter) % 10**12:012d}_{os.urandom(6).hex()}.json"
        )

    def _write(self, name: str, body: bytes, final: str | None = None) -> None:
        """Write ``body`` under ``final`` (default ``name``) atomically: temporary file,
        fsync, rename."""
        temp = self.directory / f"{_TEMP_PREFIX}{name}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
        fd = os.open(temp, flags, 0o600)
        try:
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.directory / (final or name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Make the new name itself durable (best effort: not every system can)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _enforce_bounds(self, keep: str) -> bool:
        """Remove unclaimed breadcrumbs while over a bound; whether ``keep`` stays.

        Runs' other breadcrumbs go first, oldest first, then terminal ones, oldest
        first: a run's outcome is what the dashboard shows. So a new breadcrumb that is
        not terminal may be the one removed (when only terminal ones are older); a new
        terminal one never is.
        """
        entries = self._scan()
        count = len(entries)
        total = sum(e.size for e in entries)
        if count <= self.max_items and total <= self.max_bytes:
            return True
        new_is_terminal = any(e.base == keep and e.terminal for e in entries)
        candidates = sorted(
            (e for e in entries if e.claimer is None and (e.base != keep or not new_is_terminal)),
            key=lambda e: (e.terminal, e.base == keep, e.ns, e.base),
        )
        kept = True
        for entry in candidates:
            if count <= self.max_items and total <= self.max_bytes:
                break
            try:
                os.unlink(self.directory / entry.name)
                self.evicted += 1
            except FileNotFoundError:
                pass  # sent, or evicted by another process: gone either way
            except OSError:
                continue
            if entry.base == keep:
                kept = False
            count -= 1
            total -= entry.size
        return kept

    # -- reading ------------------------------------------------------------------------

    def items(self) -> list[SpoolItem]:
        """What the spool holds, in the order :meth:`replay` sends it.

        Sessions in the order of their first breadcrumb's writing; within a session, by
        number, the terminal breadcrumb last. Claimed breadcrumbs (being sent by some
        process) are included. Unreadable files are removed and counted in
        :attr:`corrupt`. A missing directory holds nothing. Never raises.
        """
        try:
            if not self._usable(create=False):
                return []
            loaded: list[SpoolItem] = []
            for entry in self._scan():
                payload = self._load(entry)
                if payload is None:
                    continue
                claimer = entry.claimer
                loaded.append(
                    SpoolItem(
                        path=self.directory / entry.name,
                        session=entry.session,
                        seq=entry.seq,
                        terminal=entry.terminal,
                        created=entry.ns / 1e9,
                        size=entry.size,
                        payload=payload,
                        claimed_by=f"{claimer[0]}-{claimer[1]}" if claimer else None,
                    )
                )
            return _ordered(loaded)
        except Exception as exc:
            self.problem = f"cannot read {self.directory}: {_reason(exc)}"
            return []

    def _usable(self, *, create: bool) -> bool:
        """Whether the directory may be used (made when ``create``); sets :attr:`problem`."""
        if not create and not os.path.lexists(self.directory):
            self.problem = None
            return False
        problem = private_dir_problem(self.directory, create=create)
        self.problem = None if problem is None else f"the spool {self.directory} {problem}"
        return problem is None

    def _scan(self) -> list[_Entry]:
        """The spool's files (one entry per breadcrumb), without reading them."""
        entries: dict[str, _Entry] = {}
        now = self._clock()
        with os.scandir(self.directory) as found:
            for dirent in found:
                name = dirent.name
                try:
                    info = dirent.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone meanwhile
                if name.startswith(_TEMP_PREFIX):
                    if now - info.st_mtime > _STALE_TEMP:
                        with contextlib.suppress(OSError):
                            os.unlink(dirent.path)
                    continue
                parsed = _parse(name)
                if parsed is None:
                    continue  # not ours: left alone
                if dirent.is_symlink():
                    self._discard(name)  # planted: removing a link never follows it
                    continue
                match, claimer = parsed
                base = match.group(0)
                if base in entries and claimer is None:
                    continue  # seen twice while it was being renamed: keep the claim
                entries[base] = _Entry(
                    name=name,
                    base=base,
                    session=match["session"],
                    seq=int(match["seq"]),
                    terminal=match["kind"] == "t",
                    ns=int(match["ns"]),
                    size=info.st_size,
                    mtime=info.st_mtime,
                    claimer=claimer,
                )
        return list(entries.values())

    def _load(self, entry: _Entry) -> dict[str, Any] | None:
        """The payload of a spool file; None when it vanished or was corrupt (removed)."""
        try:
            fd = os.open(self.directory / entry.name, os.O_RDONLY | NOFOLLOW)
        except FileNotFoundError:
            return None  # claimed, sent or evicted meanwhile
        except OSError:
            self._discard(entry.name)  # a link (ELOOP) or something unreadable
            return None
        try:
            data = os.read(fd, _MAX_FILE_BYTES + 1)
        except OSError:
            data = b""
        finally:
            os.close(fd)
        try:
            payload = json.loads(data.decode("utf-8"))
        except ValueError:
            payload = None
        if (
            len(data) > _MAX_FILE_BYTES
            or not isinstance(payload, dict)
            or not isinstance(payload.get("project"), str)
            or not isinstance(payload.get("proc"), dict)
        ):
            self._discard(entry.name)
            return None
        return payload

    def _discard(self, name: str) -> None:
        try:
            os.unlink(self.directory / name)
        except OSError:
            return
        self.corrupt += 1

    # -- replay -------------------------------------------------------------------------

    def replay(
        self,
        send: Callable[[dict[str, Any], bool], str],
        *,
        deadline: float | None = None,
        max_items: int | None = None,
        terminal_gap: float = 1.05,
    ) -> ReplayResult:
        """Send what the spool holds, in order, removing each breadcrumb once taken.

        The runs' other breadcrumbs go first (sessions in the order of :meth:`items`,
        each in order), then their terminal ones, each at least ``terminal_gap`` seconds
        after its session's previous breadcrumb (sent by this object, in this replay or
        an earlier one) and after the terminal one was written (its run's live
        breadcrumbs went out before that): the server stamps breadcrumbs to the second,
        and the dashboard shows a run's latest one as its outcome. (With many sessions,
        the other sessions' breadcrumbs fill that gap: the replay waits about
        ``terminal_gap`` once, not once per run.)

        For each breadcrumb the file is claimed, then ``send(payload, terminal)`` is
        called and answers:

        * ``"sent"``: the server took it; the file is removed.
        * ``"drop"``: the server refused it for good; the file is removed and counted.
        * ``"retry"`` (the server cannot be reached, or limits the rate), anything else,
          or an exception: the claim is given back and the replay stops at once.

        A session that another process is replaying is skipped, and so is the rest of a
        session whose breadcrumb could not be claimed: order within a session is kept.

        Args:
            send: Delivers one body; see above.
            deadline: A ``time.monotonic()`` after which no breadcrumb is started (nor a
                wait for ``terminal_gap`` that would end after it).
            max_items: The most breadcrumbs handed to ``send``.
            terminal_gap: Seconds between a session's last breadcrumb sent and its
                terminal one.

        Returns:
            The counts. Never raises (but a ``KeyboardInterrupt`` inside ``send`` gives
            the claim back and propagates).
        """
        counts = {"sent": 0, "drop": 0}
        stopped: str | None = None
        try:
            if not self._usable(create=False):
                unusable = self.problem is not None
                return ReplayResult(0, 0, 0, "unusable" if unusable else None)
            self._give_back_stale_claims()
            sessions = _sessions(self.items())
            skipped: set[str] = set()
            last_sent = self._last_sent
            for session_id, when in list(last_sent.items()):
                if time.monotonic() - when > max(terminal_gap, 0.0):
                    del last_sent[session_id]  # long enough ago for any terminal one
            for terminal in (False, True):
                for session in sessions:
                    for item in session:
                        if item.terminal is not terminal or item.session in skipped:
                            continue
                        if max_items is not None and sum(counts.values()) >= max_items:
                            stopped = "max_items"
                            break
                        start = time.monotonic()
                        if terminal:  # after its session's latest, sent here or live
                            start += max(0.0, item.created + terminal_gap - self._clock())
                            gap_end = last_sent.get(item.session, -math.inf) + terminal_gap
                            start = max(start, gap_end)
                        if deadline is not None and start >= deadline:
                            stopped = "deadline"
                            break
                        if start > time.monotonic():
                            time.sleep(start - time.monotonic())
                        verdict = self._replay_one(send, item)
                        if verdict in counts:
                            counts[verdict] += 1
                            if verdict == "sent":
                                last_sent[item.session] = time.monotonic()
                        elif verdict == "busy":
                            skipped.add(item.session)
                        else:
                            stopped = "retry"
                            break
                    if stopped:
                        break
                if stopped:
                    break
            left = len(self._scan())
        except Exception as exc:
            self.problem = f"cannot replay {self.directory}: {_reason(exc)}"
            left = self._count_quietly()
        return ReplayResult(counts["sent"], counts["drop"], left, stopped)

    def _replay_one(self, send: Callable[[dict[str, Any], bool], str], item: SpoolItem) -> str:
        """Claim and send one breadcrumb: ``"sent"``, ``"drop"``, ``"retry"`` or
        ``"busy"`` (its session is another process's, or an earlier one is still there)."""
        if item.claimed_by is not None:
            return "busy"
        claimed = self._claim(item)
        if claimed is None:
            return "busy"  # another process claimed it first: the session is its
        return self._send_claimed(send, item, claimed)

    def _send_claimed(
        self, send: Callable[[dict[str, Any], bool], str], item: SpoolItem, claimed: Path
    ) -> str:
        """Send a claimed breadcrumb: ``"sent"``, ``"drop"``, ``"retry"`` or ``"busy"``."""
        done = False
        try:
            if self._earlier_in_session(item):
                return "busy"  # an earlier breadcrumb is still there (being claimed?)
            try:
                verdict = send(item.payload, item.terminal)
            except Exception:
                verdict = "retry"
            if verdict in ("sent", "drop"):
                with contextlib.suppress(OSError):
                    os.unlink(claimed)
                done = True
            return verdict if done else "retry"
        finally:
            with _in_flight_lock:
                _in_flight.discard(claimed.name)
            if not done:
                with contextlib.suppress(OSError):
                    os.rename(claimed, item.path)

    def _claim(self, item: SpoolItem) -> Path | None:
        """Rename the item's file to this process's claim; None if another was first."""
        target = item.path.with_name(_claimed_name(item.path.name))
        with _in_flight_lock:
            _in_flight.add(target.name)
        try:
            os.rename(item.path, target)
        except OSError:
            with _in_flight_lock:
                _in_flight.discard(target.name)
            return None
        now = self._clock()
        with contextlib.suppress(OSError):
            os.utime(target, (now, now))  # the claim's age counts from now
        return target

    def _earlier_in_session(self, item: SpoolItem) -> bool:
        """Whether the directory holds a breadcrumb of the same session that goes first."""
        prefix = item.session + "_"
        mine = item.name
        key = _order_key(item.terminal, item.seq, mine)
        for name in os.listdir(self.directory):
            if not name.startswith(prefix) or name.startswith(mine):
                continue
            parsed = _parse(name)
            if parsed is None:
                continue
            match = parsed[0]
            if _order_key(match["kind"] == "t", int(match["seq"]), match.group(0)) < key:
                return True
        return False

    def _give_back_stale_claims(self) -> None:
        """Rename claims whose owner is gone (or that are very old) back to their names."""
        host, pid, now = _this_host(), os.getpid(), self._clock()
        for entry in self._scan():
            if entry.claimer is None:
                continue
            owner_host, owner_pid = entry.claimer
            age = now - entry.mtime
            if owner_host == host and owner_pid == pid:
                with _in_flight_lock:
                    stale = entry.name not in _in_flight
            elif owner_host == host:
                stale = age > self.stale_claim and _process_gone(owner_pid)
            else:
                stale = False
            if stale or age > _ORPHAN_CLAIM:
                with contextlib.suppress(OSError):
                    os.rename(self.directory / entry.name, self.directory / entry.base)

    def _count_quietly(self) -> int:
        try:
            return len(self._scan())
        except Exception:
            return 0

    # -- clearing -----------------------------------------------------------------------

    def clear(self) -> int:
        """Remove every spooled breadcrumb (claimed ones too).

        Returns:
            How many were removed. Never raises.
        """
        removed = 0
        try:
            if not self._usable(create=False):
                return 0
            for entry in self._scan():
                try:
                    os.unlink(self.directory / entry.name)
                except OSError:
                    continue
                removed += 1
        except Exception as exc:
            self.problem = f"cannot clear {self.directory}: {_reason(exc)}"
        return removed


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _order_key(terminal: bool, seq: int, name: str) -> tuple[bool, int, str]:
    """A breadcrumb's place in its session: by number, the terminal one last.

    Names of one session with one number differ first by their writing time (fixed
    width), so the name breaks ties by age.
    """
    return (terminal, seq, name)


def _ordered(items: list[SpoolItem]) -> list[SpoolItem]:
    """Sessions by their first writing; in each, by number with the terminal one last."""
    return [item for session in _sessions(items) for item in session]


def _sessions(items: list[SpoolItem]) -> list[list[SpoolItem]]:
    groups: dict[str, list[SpoolItem]] = {}
    for item in items:
        groups.setdefault(item.session, []).append(item)
    for group in groups.values():
        group.sort(key=lambda i: _order_key(i.terminal, i.seq, i.name))
    return sorted(groups.values(), key=lambda g: (min(i.created for i in g), g[0].session))


# -- sending a spooled body ----------------------------------------------------------


def breadcrumb_from_payload(payload: Mapping[str, Any]) -> Breadcrumb:
    """The :class:`~migas_logging.breadcrumb.Breadcrumb` a request body was made from.

    The body of a valid breadcrumb gives back an equal breadcrumb (its fields are
    already normalised); anything else is normalised as the constructor does.

    Args:
        payload: A body as :meth:`Breadcrumb.to_payload` gives it.

    Raises:
        ValueError: The body has no valid ``owner/repo`` project, or is not a mapping.
    """
    from migas_logging.breadcrumb import Breadcrumb

    if not isinstance(payload, Mapping):
        raise ValueError("a breadcrumb body is a JSON object")
    proc = payload.get("proc")
    proc = proc if isinstance(proc, Mapping) else {}
    return Breadcrumb(
        project=payload.get("project"),
        project_version=payload.get("project_version"),
        language_version=payload.get("language_version"),
        ctx=payload.get("ctx"),
        status=proc.get("status", "R"),
        status_desc=proc.get("status_desc"),
        error_type=proc.get("error_type"),
        error_desc=proc.get("error_desc"),
        language=payload.get("language", "python"),
    )


def verdict_of(outcome: Outcome) -> Verdict:
    """What a replay does after one transport outcome.

    Delivered: ``"sent"``. Refused for good (``4xx`` but 429, ``success: false``) or a
    request the client could not even build: ``"drop"``. Everything else (no connection,
    a timeout, 429, ``5xx``, an answer that is not a migas server's, such as a proxy's
    login page): ``"retry"``, later.

    Args:
        outcome: What :meth:`Transport.send` returned.
    """
    from migas_logging.transport import OutcomeKind

    if outcome.kind is OutcomeKind.DELIVERED:
        return "sent"
    if outcome.kind in (OutcomeKind.REJECTED, OutcomeKind.CLIENT_ERROR):
        return "drop"
    return "retry"
