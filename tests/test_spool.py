"""The spool: what is written, where, in what order it comes back, and under concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from migas_logging import spool as spool_module
from migas_logging.breadcrumb import Breadcrumb, Context
from migas_logging.exceptions import ConfigurationError
from migas_logging.spool import (
    Spool,
    breadcrumb_from_payload,
    default_spool_dir,
    verdict_of,
)
from migas_logging.transport import Outcome, OutcomeKind

PROJECT = "nipreps/migas-logging"


class FakeClock:
    """Seconds since the epoch that only move when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def payload(session: str | None = None, status: str = "R", desc: str = "x") -> dict[str, Any]:
    ctx = Context(session_id=session or str(uuid.uuid4()))
    return Breadcrumb(PROJECT, "1.0", "3.11", ctx, status=status, status_desc=desc).to_payload()


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def sent_by(spool: Spool, answer: str = "sent") -> list[tuple[str, bool]]:
    """Replay everything, answering ``answer``; the (status_desc, terminal) sent, in order."""
    seen: list[tuple[str, bool]] = []

    def send(body: dict[str, Any], terminal: bool) -> str:
        seen.append((body["proc"]["status_desc"], terminal))
        return answer

    spool.replay(send, terminal_gap=0)
    return seen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "migas" / "spool"


@pytest.fixture
def spool(directory: Path, clock: FakeClock) -> Spool:
    return Spool(directory, clock=clock)


class TestDefaultSpoolDir:
    def test_migas_spool_dir_wins(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """MIGAS_SPOOL_DIR is used as given, with ~ expanded."""
        monkeypatch.setenv("MIGAS_SPOOL_DIR", str(tmp_path / "here"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert tmp_path / "here" == default_spool_dir()
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("MIGAS_SPOOL_DIR", "~/spool")
        assert tmp_path / "spool" == default_spool_dir()

    @pytest.mark.parametrize("value", ["", "   "])
    def test_empty_disables(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """An empty MIGAS_SPOOL_DIR turns the spool off."""
        monkeypatch.setenv("MIGAS_SPOOL_DIR", value)
        assert default_spool_dir() is None

    def test_xdg_cache_home(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without MIGAS_SPOOL_DIR: $XDG_CACHE_HOME/migas/spool."""
        monkeypatch.delenv("MIGAS_SPOOL_DIR", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert tmp_path / "xdg" / "migas" / "spool" == default_spool_dir()

    @pytest.mark.parametrize("xdg", [None, "", "relative/cache"])
    def test_home_cache(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str | None
    ) -> None:
        """Unset, empty or relative XDG_CACHE_HOME (invalid per XDG): ~/.cache/migas/spool."""
        monkeypatch.delenv("MIGAS_SPOOL_DIR", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert tmp_path / ".cache" / "migas" / "spool" == default_spool_dir()


class TestPut:
    def test_one_private_file_per_breadcrumb(self, spool: Spool, directory: Path) -> None:
        """The directory is made 0700, each file is 0600 and holds the body as JSON."""
        body = payload()
        assert not directory.exists()
        assert spool.put(body, session="s1", seq=0, terminal=False)
        assert spool.put(body, session="s1", seq=1, terminal=True)
        assert 0o700 == stat.S_IMODE(directory.stat().st_mode)
        files = names(directory)
        assert 2 == len(files)
        for name in files:
            assert 0o600 == stat.S_IMODE((directory / name).stat().st_mode)
            assert body == json.loads((directory / name).read_text(encoding="utf-8"))
        assert files[0].startswith("s1_0000000000_r_")
        assert files[1].startswith("s1_0000000001_t_")

    def test_names_sort_by_session_and_seq(self, spool: Spool, directory: Path) -> None:
        """Names sort by session, then number (zero-padded), whatever the writing order."""
        for seq in (10, 2, 1):
            assert spool.put(payload(), session="b", seq=seq, terminal=False)
        assert spool.put(payload(), session="a", seq=99, terminal=False)
        assert ["a_99", "b_1", "b_2", "b_10"] == [
            f"{n.split('_')[0]}_{int(n.split('_')[1])}" for n in names(directory)
        ]

    def test_a_session_unsafe_in_a_file_name_is_digested(
        self, spool: Spool, directory: Path
    ) -> None:
        """A session with / or .. cannot escape the directory: its digest names the file."""
        assert spool.put(payload(), session="../../etc/x", seq=0, terminal=False)
        assert spool.put(payload(), session="", seq=0, terminal=False)
        files = names(directory)
        assert 2 == len(files)
        assert all("/" not in n and ".." not in n for n in files)
        assert 2 == len(spool.items())

    @pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
    def test_refuses_a_directory_others_may_write(
        self, spool: Spool, directory: Path, mode: int
    ) -> None:
        """A group- or world-writable directory is refused: False, no file, a reason."""
        directory.mkdir(parents=True)
        directory.chmod(mode)
        assert not spool.put(payload(), session="s", seq=0, terminal=False)
        assert [] == names(directory)
        assert "writable by group or others" in (spool.problem or "")
        assert [] == spool.items()

    def test_refuses_a_directory_of_another_user(
        self, spool: Spool, directory: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A directory this user does not own is refused."""
        directory.mkdir(parents=True, mode=0o700)
        if os.geteuid() == 0:
            os.chown(directory, 65534, 65534)
        else:
            monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
        assert not spool.put(payload(), session="s", seq=0, terminal=False)
        assert "belongs to another user" in (spool.problem or "")
        assert [] == names(directory)

    def test_a_directory_reached_through_the_users_own_link_is_fine(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """~/.cache pointing at a scratch disk is common on clusters: it works."""
        real = tmp_path / "scratch"
        real.mkdir(mode=0o700)
        (tmp_path / "link").symlink_to(real)
        spool = Spool(tmp_path / "link", clock=clock)
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        assert 1 == len(names(real))

    def test_a_planted_link_is_never_followed(
        self, spool: Spool, directory: Path, tmp_path: Path
    ) -> None:
        """A symbolic link named like a spool file is removed, not read or written through."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        secret = tmp_path / "secret.json"
        secret.write_text(json.dumps(payload(desc="SECRET")), encoding="utf-8")
        planted = names(directory)[0].replace("_0000000000_", "_0000000001_")
        (directory / planted).symlink_to(secret)
        items = spool.items()
        assert ["x"] == [item.payload["proc"]["status_desc"] for item in items]
        assert not os.path.lexists(directory / planted)
        assert secret.exists()
        assert "SECRET" in secret.read_text(encoding="utf-8")

    @pytest.mark.parametrize(
        ("body", "seq"),
        [
            ({"not json": object()}, 0),
            ({"text": "\ud800"}, 0),  # a lone surrogate is not UTF-8
            (payload(), -1),
            (payload(), 10**10),
            (payload(), "3"),
            ("not a mapping", 0),
        ],
    )
    def test_bad_input_is_refused_without_raising(
        self, spool: Spool, directory: Path, body: Any, seq: Any
    ) -> None:
        """put never raises: bad payloads and numbers give False and leave nothing."""
        assert not spool.put(body, session="s", seq=seq, terminal=False)
        assert not directory.exists() or [] == names(directory)

    def test_a_file_where_the_directory_should_be(self, tmp_path: Path) -> None:
        """An unusable path gives False and a reason, not an exception."""
        (tmp_path / "file").write_text("x", encoding="utf-8")
        spool = Spool(tmp_path / "file")
        assert not spool.put(payload(), session="s", seq=0, terminal=False)
        assert spool.problem
        assert [] == spool.items()
        assert 0 == spool.clear()

    def test_making_a_spool_writes_nothing(self, directory: Path) -> None:
        """Only a put makes the directory."""
        spool = Spool(directory)
        assert [] == spool.items()
        assert 0 == spool.clear()
        assert (0, 0, 0) == spool.replay(lambda body, terminal: "sent")[:3]
        assert not directory.exists()
        assert not directory.parent.exists()

    @pytest.mark.parametrize(
        "options", [{"max_items": 0}, {"max_items": True}, {"max_bytes": 100}, {"max_items": 1.5}]
    )
    def test_bad_bounds_fail_at_configuration(self, directory: Path, options: Any) -> None:
        """Bounds are the developer's: a bad one is a ConfigurationError at once."""
        with pytest.raises(ConfigurationError):
            Spool(directory, **options)


class TestBounds:
    def test_the_oldest_are_evicted_and_counted(self, directory: Path, clock: FakeClock) -> None:
        """Past max_items, the oldest go first (by writing time), and are counted."""
        spool = Spool(directory, max_items=3, clock=clock)
        for n in range(5):
            clock.advance(1)
            assert spool.put(payload(desc=f"n{n}"), session=f"s{4 - n}", seq=0, terminal=False)
        assert 2 == spool.evicted
        assert ["n2", "n3", "n4"] == sorted(
            i.payload["proc"]["status_desc"] for i in spool.items()
        )

    def test_outcomes_are_evicted_last(self, directory: Path, clock: FakeClock) -> None:
        """Runs' other breadcrumbs go before any terminal one, even newer ones: the
        outcome is what the dashboard shows. A new terminal breadcrumb is always kept."""
        spool = Spool(directory, max_items=3, clock=clock)
        for desc, terminal in (("t0", True), ("r1", False), ("t2", True), ("r3", False)):
            clock.advance(1)
            assert spool.put(payload(desc=desc), session=desc, seq=0, terminal=terminal)
        assert ["r3", "t0", "t2"] == sorted(
            i.payload["proc"]["status_desc"] for i in spool.items()
        )
        clock.advance(1)
        assert spool.put(payload(desc="t4"), session="t4", seq=1, terminal=True)
        assert ["t0", "t2", "t4"] == sorted(
            i.payload["proc"]["status_desc"] for i in spool.items()
        )
        assert 2 == spool.evicted

    def test_a_new_record_does_not_push_out_an_outcome(
        self, directory: Path, clock: FakeClock
    ) -> None:
        """With only terminal breadcrumbs older than it, a new other one is not kept."""
        spool = Spool(directory, max_items=2, clock=clock)
        for seq in range(2):
            clock.advance(1)
            assert spool.put(payload(desc=f"t{seq}"), session=f"s{seq}", seq=1, terminal=True)
        clock.advance(1)
        assert not spool.put(payload(desc="r"), session="s9", seq=0, terminal=False)
        assert "full" in (spool.problem or "")
        assert ["t0", "t1"] == sorted(i.payload["proc"]["status_desc"] for i in spool.items())
        assert 1 == spool.evicted

    def test_bytes_are_bounded_too(self, directory: Path, clock: FakeClock) -> None:
        """Past max_bytes, the oldest go until the rest fits."""
        body = payload(desc="y" * 2000)
        size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        spool = Spool(directory, max_bytes=3 * size + 10, clock=clock)
        for seq in range(6):
            clock.advance(1)
            assert spool.put(body, session="s", seq=seq, terminal=False)
        assert 3 == len(spool.items())
        assert 3 == spool.evicted
        assert [3, 4, 5] == [item.seq for item in spool.items()]

    def test_a_breadcrumb_larger_than_the_bound_is_refused(self, directory: Path) -> None:
        """One body over max_bytes cannot be kept at all."""
        spool = Spool(directory, max_bytes=2500)
        assert not spool.put({"x": "y" * 3000}, session="s", seq=0, terminal=False)
        assert "too large" in (spool.problem or "")


class TestItems:
    def test_order(self, spool: Spool, clock: FakeClock) -> None:
        """Sessions by first writing; in each, by number, the terminal one last."""
        puts = [
            ("B", 5, False, "B5"),
            ("A", 0, True, "A-end"),  # a terminal breadcrumb with a low number
            ("A", 2, False, "A2"),
            ("B", 1, False, "B1"),
            ("A", 1, False, "A1"),
            ("C", 0, False, "C0"),
            ("B", 6, True, "B-end"),
        ]
        for session, seq, terminal, desc in puts:
            clock.advance(1)
            assert spool.put(payload(desc=desc), session=session, seq=seq, terminal=terminal)
        got = [(i.session, i.payload["proc"]["status_desc"], i.terminal) for i in spool.items()]
        assert [
            ("B", "B1", False),
            ("B", "B5", False),
            ("B", "B-end", True),
            ("A", "A1", False),
            ("A", "A2", False),
            ("A", "A-end", True),
            ("C", "C0", False),
        ] == got

    def test_an_item_says_what_it_holds(self, spool: Spool, clock: FakeClock) -> None:
        """status, project, created and name come from the file."""
        assert spool.put(payload(status="F"), session="s", seq=3, terminal=True)
        (item,) = spool.items()
        assert ("F", PROJECT, 3, True) == (item.status, item.project, item.seq, item.terminal)
        assert clock.now == pytest.approx(item.created)
        assert item.claimed_by is None
        assert item.path.name == item.name

    @pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"project": 1}', b"\xff"])
    def test_corrupt_files_are_removed_and_counted(
        self, spool: Spool, directory: Path, content: bytes
    ) -> None:
        """A spool file that does not hold a breadcrumb body is skipped and removed."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        bad = names(directory)[0].replace("_0000000000_", "_0000000007_")
        (directory / bad).write_bytes(content)
        assert 1 == len(spool.items())
        assert 1 == spool.corrupt
        assert not (directory / bad).exists()

    def test_other_files_are_left_alone(self, spool: Spool, directory: Path) -> None:
        """Files that are not the spool's (by name) are neither read nor removed."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        (directory / "notes.txt").write_text("mine", encoding="utf-8")
        assert 1 == len(spool.items())
        assert 1 == spool.clear()
        assert ["notes.txt"] == names(directory)

    def test_a_dead_writers_temporary_file_is_ignored_then_removed(
        self, spool: Spool, directory: Path, clock: FakeClock
    ) -> None:
        """A writer that died before its rename leaves a hidden file: never an item."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        temp = directory / ".tmp-s_0000000001_r_x.json"
        temp.write_bytes(b'{"partial')
        assert 1 == len(spool.items())
        assert temp.exists()  # it may still be being written
        os.utime(temp, (clock.now - 7200, clock.now - 7200))
        assert 1 == len(spool.items())
        assert not temp.exists()


class TestReplay:
    def test_sends_in_order_and_removes(self, spool: Spool, directory: Path) -> None:
        """Everything is sent, the terminal breadcrumb of each session last."""
        assert spool.put(payload(desc="end"), session="s", seq=0, terminal=True)
        assert spool.put(payload(desc="a"), session="s", seq=1, terminal=False)
        assert spool.put(payload(desc="b"), session="s", seq=2, terminal=False)
        assert [("a", False), ("b", False), ("end", True)] == sent_by(spool)
        assert [] == names(directory)

    def test_retry_stops_at_once_and_keeps_everything(self, spool: Spool, directory: Path) -> None:
        """'retry': the claim is given back under its own name and nothing else is tried."""
        for seq in range(3):
            assert spool.put(payload(), session="s", seq=seq, terminal=False)
        assert spool.put(payload(), session="t", seq=0, terminal=False)
        before = names(directory)
        calls: list[bool] = []
        result = spool.replay(lambda body, terminal: calls.append(terminal) or "retry")
        assert (0, 0, 4, "retry") == result
        assert 1 == len(calls)
        assert before == names(directory)

    def test_only_sent_or_dropped_files_go(self, spool: Spool, directory: Path) -> None:
        """'drop' removes and counts; the breadcrumb after a retry stays."""
        answers = iter(["sent", "drop", "retry"])
        for seq in range(4):
            assert spool.put(payload(desc=str(seq)), session="s", seq=seq, terminal=False)
        result = spool.replay(lambda body, terminal: next(answers))
        assert (1, 1, 2, "retry") == result
        assert ["2", "3"] == [i.payload["proc"]["status_desc"] for i in spool.items()]

    @pytest.mark.parametrize("answer", ["maybe", None])
    def test_an_unknown_answer_is_a_retry(
        self, spool: Spool, directory: Path, answer: Any
    ) -> None:
        """Anything but 'sent' or 'drop' keeps the breadcrumb."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        assert (0, 0, 1, "retry") == spool.replay(lambda body, terminal: answer)

    def test_an_exception_in_send_keeps_the_breadcrumb(self, spool: Spool) -> None:
        """send raising is a retry: replay itself never raises."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)

        def send(body: dict[str, Any], terminal: bool) -> str:
            raise RuntimeError("boom")

        assert (0, 0, 1, "retry") == spool.replay(send)
        assert 1 == len(spool.items())
        assert spool.items()[0].claimed_by is None

    def test_keyboard_interrupt_gives_the_claim_back(self, spool: Spool, directory: Path) -> None:
        """Ctrl-C during a send propagates, and the file is back under its name."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        before = names(directory)

        def send(body: dict[str, Any], terminal: bool) -> str:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            spool.replay(send)
        assert before == names(directory)

    def test_deadline_and_max_items(self, spool: Spool) -> None:
        """No breadcrumb is started after the deadline, nor more than max_items."""
        for seq in range(5):
            assert spool.put(payload(), session="s", seq=seq, terminal=False)
        result = spool.replay(lambda b, t: "sent", deadline=time.monotonic() - 1)
        assert (0, 0, 5, "deadline") == result
        assert (2, 0, 3, "max_items") == spool.replay(lambda b, t: "sent", max_items=2)
        assert (3, 0, 0, None) == spool.replay(lambda b, t: "sent", max_items=3)

    def test_terminal_breadcrumbs_go_last_and_a_gap_after_their_session(
        self, spool: Spool, clock: FakeClock
    ) -> None:
        """Others first, then the terminal ones, each >= terminal_gap after its session's."""
        for session in ("A", "B"):
            clock.advance(1)
            assert spool.put(payload(desc=f"{session}-R"), session=session, seq=0, terminal=False)
            assert spool.put(payload(desc=f"{session}-end"), session=session, seq=1, terminal=True)
        times: dict[str, float] = {}

        def send(body: dict[str, Any], terminal: bool) -> str:
            times[body["proc"]["status_desc"]] = time.monotonic()
            return "sent"

        assert (4, 0, 0, None) == spool.replay(send, terminal_gap=0.3)
        assert ["A-R", "B-R", "A-end", "B-end"] == sorted(times, key=times.__getitem__)
        assert times["A-end"] - times["A-R"] >= 0.3
        assert times["B-end"] - times["B-R"] >= 0.3

    def test_the_gap_holds_across_replays(self, spool: Spool) -> None:
        """Replayed a few at a time, a terminal breadcrumb still keeps its distance."""
        assert spool.put(payload(desc="R"), session="s", seq=0, terminal=False)
        assert spool.put(payload(desc="end"), session="s", seq=1, terminal=True)
        times: list[float] = []

        def send(body: dict[str, Any], terminal: bool) -> str:
            times.append(time.monotonic())
            return "sent"

        assert (1, 0, 1, "max_items") == spool.replay(send, max_items=1, terminal_gap=0.3)
        assert (1, 0, 0, None) == spool.replay(send, max_items=1, terminal_gap=0.3)
        assert times[1] - times[0] >= 0.3

    def test_a_terminal_breadcrumb_keeps_its_gap_after_being_written(
        self, spool: Spool, clock: FakeClock
    ) -> None:
        """Its run's live breadcrumbs went out just before it was written: a replay
        soon after waits until the gap has passed since then, not since the replay's
        own previous breadcrumb of the session (there may be none)."""
        assert spool.put(payload(desc="end"), session="s", seq=4, terminal=True)
        clock.advance(0.2)  # written 0.2 s ago
        start = time.monotonic()
        sent: list[float] = []

        def send(body: dict[str, Any], terminal: bool) -> str:
            sent.append(time.monotonic())
            return "sent"

        result = spool.replay(send, terminal_gap=0.5)
        assert (1, 0, 0, None) == result
        assert sent[0] - start >= 0.3 - 0.01  # 0.5 after the writing, not at once
        assert spool.put(payload(desc="end"), session="t", seq=4, terminal=True)
        clock.advance(30)  # written a gap ago: no wait
        start = time.monotonic()
        assert (1, 0, 0, None) == spool.replay(lambda b, t: "sent", terminal_gap=30)
        assert time.monotonic() - start < 10

    def test_a_held_breadcrumb_waits_for_its_release(self, spool: Spool, directory: Path) -> None:
        """A run's terminal breadcrumb written before the rest of its run (the exit in a
        hurry) is held: no replay takes it, nor gives it back as stale, until released."""
        name = spool.write(payload(desc="end"), session="s", seq=9, terminal=True, held=True)
        assert name is not None
        (item,) = spool.items()
        assert item.claimed_by is not None  # claimed by this process
        assert (0, 0, 1, None) == spool.replay(lambda b, t: "sent", terminal_gap=0)
        assert spool.put(payload(desc="R"), session="s", seq=1, terminal=False)
        assert [("R", False)] == sent_by(spool)  # the rest of the run may go; not the end
        spool.release(name)
        assert [("end", True)] == sent_by(spool)
        assert [] == names(directory)

    def test_a_held_breadcrumb_can_be_taken_back(self, spool: Spool, directory: Path) -> None:
        name = spool.write(payload(desc="end"), session="s", seq=9, terminal=True, held=True)
        assert name is not None
        spool.remove(name)
        assert [] == names(directory)

    def test_holds(self, spool: Spool, clock: FakeClock) -> None:
        """Whether a session has breadcrumbs in the spool, claimed ones included."""
        assert not spool.holds("s")  # no directory yet
        assert spool.put(payload(desc="R"), session="s", seq=1, terminal=False)
        assert spool.put(payload(desc="R"), session="x/y", seq=1, terminal=False)
        assert spool.holds("s")
        assert spool.holds("x/y")
        assert not spool.holds("t")
        assert not spool.holds("")
        item = spool.items()[0]
        claimed = spool._claim(item)  # a replay in flight elsewhere
        assert claimed is not None
        assert spool.holds(item.session)

    def test_the_gap_never_waits_past_the_deadline(self, spool: Spool) -> None:
        """A terminal breadcrumb whose gap would end after the deadline is left for later."""
        assert spool.put(payload(desc="R"), session="s", seq=0, terminal=False)
        assert spool.put(payload(desc="end"), session="s", seq=1, terminal=True)
        start = time.monotonic()
        result = spool.replay(lambda b, t: "sent", deadline=start + 1, terminal_gap=30)
        assert (1, 0, 1, "deadline") == result
        assert time.monotonic() - start < 10
        assert spool.items()[0].terminal

    def test_no_gap_after_a_refusal(self, spool: Spool, clock: FakeClock) -> None:
        """A dropped breadcrumb was not stored: the terminal one need not wait for it."""
        assert spool.put(payload(desc="R"), session="s", seq=0, terminal=False)
        assert spool.put(payload(desc="end"), session="s", seq=1, terminal=True)
        clock.advance(60)  # written long ago
        start = time.monotonic()
        answers = iter(["drop", "sent"])
        assert (1, 1, 0, None) == spool.replay(lambda b, t: next(answers), terminal_gap=30)
        assert time.monotonic() - start < 10

    def test_a_claim_is_a_rename_and_is_fresh(
        self, spool: Spool, directory: Path, clock: FakeClock
    ) -> None:
        """While send runs, the file is NAME.claimed-HOST-PID with the claim's time."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        clock.advance(1000)
        seen: list[tuple[list[str], float]] = []

        def send(body: dict[str, Any], terminal: bool) -> str:
            (name,) = names(directory)
            seen.append((names(directory), (directory / name).stat().st_mtime))
            return "sent"

        spool.replay(send)
        [(files, mtime)] = seen
        assert files[0].endswith(f"-{os.getpid()}")
        assert ".claimed-" in files[0]
        assert clock.now == pytest.approx(mtime)

    def test_a_session_being_sent_elsewhere_is_skipped(
        self, spool: Spool, directory: Path
    ) -> None:
        """A live process's claim: that session waits, the others are sent."""
        assert spool.put(payload(desc="busy0"), session="busy", seq=0, terminal=False)
        assert spool.put(payload(desc="busy1"), session="busy", seq=1, terminal=True)
        assert spool.put(payload(desc="free"), session="free", seq=0, terminal=False)
        first = next(n for n in names(directory) if n.startswith("busy_0000000000"))
        host = spool_module._this_host()
        os.rename(directory / first, directory / f"{first}.claimed-{host}-{os.getppid()}")
        assert [("free", False)] == sent_by(spool)
        assert 2 == len(spool.items())

    def test_an_earlier_breadcrumb_missed_by_the_listing_holds_the_session(
        self, spool: Spool, directory: Path
    ) -> None:
        """If an earlier breadcrumb of the session shows up after listing, wait for it."""
        assert spool.put(payload(desc="late"), session="s", seq=5, terminal=False)
        original = spool.items

        def listing_without_it() -> list[Any]:
            items = original()
            assert spool.put(payload(desc="early"), session="s", seq=1, terminal=False)
            return items

        spool.items = listing_without_it  # type: ignore[method-assign]
        assert (0, 0, 2, None) == spool.replay(lambda b, t: "sent")
        spool.items = original  # type: ignore[method-assign]
        assert [("early", False), ("late", False)] == sent_by(spool)

    def _orphan(self, directory: Path, clock: FakeClock, host: str, pid: int, age: float) -> None:
        (name,) = names(directory)
        claimed = directory / f"{name}.claimed-{host}-{pid}"
        os.rename(directory / name, claimed)
        os.utime(claimed, (clock.now - age, clock.now - age))

    def dead_pid(self) -> int:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        return proc.pid

    @pytest.mark.parametrize(
        ("owner", "age", "given_back"),
        [
            ("dead", 400, True),  # older than stale_claim (300 s) and its process is gone
            ("dead", 100, False),  # too young: it might be a slow send of a slow machine
            ("alive", 400, False),  # its process still runs
            ("other-host", 400, False),  # cannot be checked from here...
            ("other-host", 4000, True),  # ...until it is an hour old
            ("this-process", 0, True),  # this process does not hold it: a reused pid
        ],
    )
    def test_stale_claims_are_given_back(
        self,
        spool: Spool,
        directory: Path,
        clock: FakeClock,
        owner: str,
        age: float,
        given_back: bool,
    ) -> None:
        """A claim comes back once its owner surely died; a live one never does."""
        assert spool.put(payload(), session="s", seq=0, terminal=False)
        host = spool_module._this_host()
        pid = {"dead": self.dead_pid(), "alive": os.getppid(), "this-process": os.getpid()}
        self._orphan(
            directory,
            clock,
            "elsewhere" if owner == "other-host" else host,
            pid.get(owner, 4242),
            age,
        )
        result = spool.replay(lambda b, t: "sent")
        assert (1 if given_back else 0) == result.sent

    def test_a_crash_mid_replay_loses_nothing(self, directory: Path, tmp_path: Path) -> None:
        """A replayer killed after a delivery: the next replay resends only that one."""
        spool = Spool(directory)
        for seq in range(5):
            assert spool.put(payload(desc=str(seq)), session="s", seq=seq, terminal=seq == 4)
        log = tmp_path / "delivered.txt"
        script = textwrap.dedent(
            f"""
            import os
            from migas_logging.spool import Spool

            def send(body, terminal):
                with open({str(log)!r}, "a") as out:
                    out.write(body["proc"]["status_desc"] + "\\n")
                if body["proc"]["status_desc"] == "2":
                    os._exit(9)  # delivered, then killed before the file is removed
                return "sent"

            Spool({str(directory)!r}).replay(send)
            """
        )
        crashed = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
        assert 9 == crashed.returncode
        assert 3 == len(spool.items())  # 3 and 4, and 2 still claimed by the dead process
        retry = Spool(directory, stale_claim=0)
        assert (3, 0, 0, None) == retry.replay(
            lambda body, terminal: (
                log.open("a").write(body["proc"]["status_desc"] + "\n") and "sent"
            ),
            terminal_gap=0,
        )
        assert ["0", "1", "2", "2", "3", "4"] == log.read_text().split()

    def test_clear(self, spool: Spool, directory: Path) -> None:
        """clear removes every breadcrumb, claimed ones too, and says how many."""
        for seq in range(3):
            assert spool.put(payload(), session="s", seq=seq, terminal=False)
        first = names(directory)[0]
        os.rename(directory / first, directory / f"{first}.claimed-h-1")
        assert 3 == spool.clear()
        assert [] == names(directory)
        assert 0 == spool.clear()


class TestBreadcrumbFromPayload:
    @pytest.mark.parametrize(
        "crumb",
        [
            Breadcrumb(PROJECT, "1.0", "3.11"),
            Breadcrumb(
                PROJECT,
                "2.0.0rc1",
                "3.13.0",
                Context(user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), is_ci=True),
                status="F",
                status_desc="Errored",
                error_type="ValueError",
                error_desc="é" * 3000,  # shortened to fit, with a marker
            ),
            Breadcrumb(PROJECT, "1", "3", Context(container="docker"), status="S"),
        ],
    )
    def test_round_trip(self, crumb: Breadcrumb) -> None:
        """A body gives back the breadcrumb it was made from."""
        assert crumb == breadcrumb_from_payload(json.loads(crumb.to_json()))

    @pytest.mark.parametrize("body", [{}, {"project": "no-slash"}, [], "x"])
    def test_not_a_breadcrumb(self, body: Any) -> None:
        """A body without a valid project is a ValueError (a replay drops it)."""
        with pytest.raises(ValueError):
            breadcrumb_from_payload(body)


class TestVerdictOf:
    @pytest.mark.parametrize(
        ("kind", "verdict"),
        [
            (OutcomeKind.DELIVERED, "sent"),
            (OutcomeKind.REJECTED, "drop"),
            (OutcomeKind.CLIENT_ERROR, "drop"),
            (OutcomeKind.RATE_LIMITED, "retry"),
            (OutcomeKind.UNREACHABLE, "retry"),
            (OutcomeKind.TIMEOUT, "retry"),
            (OutcomeKind.SERVER_ERROR, "retry"),
            (OutcomeKind.BAD_ANSWER, "retry"),
        ],
    )
    def test_mapping(self, kind: OutcomeKind, verdict: str) -> None:
        """Only a delivery removes for success, only a refusal for good drops."""
        assert verdict == verdict_of(Outcome(kind))


# --- many processes at once -----------------------------------------------------------

N_WRITERS, PER_WRITER, N_REPLAYERS = 8, 50, 3


def _writer(directory: str, index: int, start: Any) -> None:
    spool = Spool(directory)
    session = str(uuid.UUID(int=index + 1))
    start.wait(30)
    for seq in range(PER_WRITER):
        body = payload(session, "C" if seq == PER_WRITER - 1 else "R", f"{index}:{seq}")
        assert spool.put(body, session=session, seq=seq, terminal=seq == PER_WRITER - 1)


def _replayer(directory: str, log: str, done: str, start: Any) -> None:
    spool = Spool(directory)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def send(body: dict[str, Any], terminal: bool) -> str:
        line = f"{body['proc']['status_desc']} {int(terminal)} {os.getpid()}\n"
        os.write(fd, line.encode())  # one O_APPEND write: lines never interleave
        return "sent"

    start.wait(30)
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        finished = os.path.exists(done)
        spool.replay(send)
        if finished and not spool.items():
            break
    os.close(fd)


def _evicting_writer(directory: str, index: int, start: Any, counts: Any) -> None:
    spool = Spool(directory, max_items=30)
    start.wait(30)
    for seq in range(40):
        assert spool.put(
            payload(desc=f"{index}:{seq}"), session=f"w{index}", seq=seq, terminal=False
        )
    counts[index] = spool.evicted


def run_all(processes: list[Any]) -> None:
    for proc in processes:
        proc.start()
    for proc in processes:
        proc.join(120)
        assert 0 == proc.exitcode


@pytest.mark.slow
class TestManyProcesses:
    def test_writers_and_replayers_at_once(self, tmp_path: Path) -> None:
        """8 x 50 puts while 3 replay: each breadcrumb sent once, in order per session."""
        ctx = multiprocessing.get_context("spawn")
        directory, log, done = tmp_path / "spool", tmp_path / "log", tmp_path / "done"
        start = ctx.Event()
        writers = [
            ctx.Process(target=_writer, args=(str(directory), i, start)) for i in range(N_WRITERS)
        ]
        replayers = [
            ctx.Process(target=_replayer, args=(str(directory), str(log), str(done), start))
            for _ in range(N_REPLAYERS)
        ]
        for proc in [*writers, *replayers]:
            proc.start()
        start.set()
        for proc in writers:
            proc.join(120)
            assert 0 == proc.exitcode
        done.touch()
        for proc in replayers:
            proc.join(120)
            assert 0 == proc.exitcode
        lines = [line.split() for line in log.read_text().splitlines()]
        sent = [desc for desc, _, _ in lines]
        assert len(sent) == len(set(sent)), "a breadcrumb was sent twice"
        expected = {f"{i}:{s}" for i in range(N_WRITERS) for s in range(PER_WRITER)}
        assert expected == set(sent), "a breadcrumb was lost"
        for index in range(N_WRITERS):
            order = [int(d.split(":")[1]) for d, _, _ in lines if d.startswith(f"{index}:")]
            assert list(range(PER_WRITER)) == order
        assert {"1"} == {t for d, t, _ in lines if d.endswith(f":{PER_WRITER - 1}")}
        assert len({pid for _, _, pid in lines}) >= 1
        assert [] == names(directory)

    def test_eviction_with_many_writers(self, tmp_path: Path) -> None:
        """4 x 40 puts into a spool of 30: at most 30 stay, every other one is counted."""
        ctx = multiprocessing.get_context("spawn")
        directory = tmp_path / "spool"
        start, counts = ctx.Event(), ctx.Array("i", 4)
        procs = [
            ctx.Process(target=_evicting_writer, args=(str(directory), i, start, counts))
            for i in range(4)
        ]
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(120)
            assert 0 == proc.exitcode
        left = len(Spool(directory).items())
        assert left <= 30
        assert 160 == left + sum(counts)
