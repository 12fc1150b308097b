"""Error classification: the built-in classes, and the nipype preset on nipype's real texts.

The nipype texts in ``tests/data/nipype/crashes.json`` were produced by real nipype runs
(``tests/data/nipype/record.py`` says how; nipype itself is too heavy for the test extra):
the exceptions ``workflow.run()`` raised, the ERROR records of nipype's logger and the
text crash files, for nodes that fail in the ways pipelines meet. The exceptions are
rebuilt here with a local class named ``NodeExecutionError`` (the preset matches by name).
"""

from __future__ import annotations

import builtins
import errno
import json
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migas_logging import classify as classify_module
from migas_logging.classify import (
    MAX_CHAIN,
    MAX_DESC_BYTES,
    MAX_TYPE_CHARS,
    PRESETS,
    classify,
    nipype,
    nipype_message,
)

DATA = json.loads(
    (Path(__file__).parent / "data" / "nipype" / "crashes.json").read_text(encoding="utf-8")
)
RECORDS = {record["id"]: record for record in DATA["records"]}
# What must never survive: the recorded user's paths, names, host, data and crash files.
PERSONAL = (
    "jdoe",
    "/home",
    ".venvs",
    "site-packages",
    "ds003",
    "node17",
    "example.edu",
    "sub-01",
    "crash-20",
    "mytool",
)


class NodeExecutionError(RuntimeError):
    """Stands for nipype.pipeline.engine.nodes.NodeExecutionError (matched by name)."""


def rebuild(chain: list[dict[str, str]]) -> BaseException:
    """The recorded exception, its ``__cause__`` chain rebuilt (outermost first)."""
    exc: BaseException | None = None
    for link in reversed(chain):
        kind = NodeExecutionError if link["type"].endswith(".NodeExecutionError") else RuntimeError
        outer = kind(link["text"])
        outer.__cause__ = exc
        exc = outer
    assert exc is not None
    return exc


def assert_private(desc: str) -> None:
    """Nothing personal survives, and the description fits."""
    for item in PERSONAL:
        assert item not in desc, (item, desc)
    assert len(desc.encode("utf-8")) <= MAX_DESC_BYTES


class TestBuiltinClasses:
    """classify(): the failures that are about the machine, found from type, errno, text."""

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (MemoryError(), ("OutOfMemory", "MemoryError")),
            (
                OSError(errno.ENOMEM, "Cannot allocate memory"),
                ("OutOfMemory", "errno 12 (ENOMEM) in OSError"),
            ),
            (
                OSError(errno.ENOSPC, "No space left on device", "/home/jdoe/out/x.nii.gz"),
                ("NoSpaceLeft", "errno 28 (ENOSPC) in OSError"),
            ),
            (
                PermissionError(errno.EACCES, "Permission denied", "/home/jdoe/x"),
                ("PermissionDenied", "errno 13 (EACCES) in PermissionError"),
            ),
            (
                OSError(errno.EPERM, "Operation not permitted"),
                ("PermissionDenied", "errno 1 (EPERM) in PermissionError"),
            ),
            (PermissionError("read-only output"), ("PermissionDenied", "PermissionError")),
            (
                FileNotFoundError(errno.ENOENT, "No such file or directory", "/home/jdoe/a.txt"),
                ("MissingFile", "errno 2 (ENOENT) in FileNotFoundError"),
            ),
            (FileNotFoundError("output missing"), ("MissingFile", "FileNotFoundError")),
        ],
    )
    def test_from_type_and_errno(self, exc: BaseException, expected: tuple[str, str]) -> None:
        """The class comes from the type or the errno; the description names what was found."""
        assert expected == classify(exc)

    @pytest.mark.skipif(not hasattr(errno, "EDQUOT"), reason="no EDQUOT on this platform")
    def test_disk_quota_is_no_space_left(self) -> None:
        """EDQUOT counts as NoSpaceLeft, as fMRIPrep's classification counts it."""
        found = classify(OSError(errno.EDQUOT, "Disk quota exceeded", "/home/jdoe/x"))
        assert found is not None
        assert "NoSpaceLeft" == found[0]
        assert "(EDQUOT)" in found[1]

    def test_numpy_style_memory_error_subclass(self) -> None:
        """A MemoryError subclass (numpy's _ArrayMemoryError) is OutOfMemory, named as is."""
        array_error = type("_ArrayMemoryError", (MemoryError,), {})
        assert ("OutOfMemory", "_ArrayMemoryError") == classify(array_error("Unable to allocate"))

    @pytest.mark.parametrize(
        ("returncode", "expected"),
        [
            (-9, "SIGKILL (9) in CalledProcessError"),
            (-11, "SIGSEGV (11) in CalledProcessError"),
            (137, "SIGKILL (9), exit status 137 in CalledProcessError"),
            (139, "SIGSEGV (11), exit status 139 in CalledProcessError"),
        ],
    )
    def test_subprocess_killed_by_signal(self, returncode: int, expected: str) -> None:
        """A negative return code, or a shell's 128 + N, is the signal that killed it."""
        exc = subprocess.CalledProcessError(returncode, ["antsRegistration", "/home/jdoe/x"])
        assert ("KilledBySignal", expected) == classify(exc)

    @pytest.mark.parametrize("returncode", [1, 2, 127, 130, 255])
    def test_ordinary_exit_status_is_not_a_signal(self, returncode: int) -> None:
        """Exit statuses a program chooses itself (and 130, the user's Ctrl-C) are no class."""
        assert classify(subprocess.CalledProcessError(returncode, "tool")) is None

    def test_subprocess_stderr_is_read(self) -> None:
        """What the command printed says why: 'Cannot allocate memory' is OutOfMemory."""
        exc = subprocess.CalledProcessError(
            1, "3dvolreg", stderr=b"** FATAL ERROR: Cannot allocate memory\n"
        )
        assert ("OutOfMemory", "'Cannot allocate memory' in CalledProcessError") == classify(exc)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                (
                    "terminate called after throwing an instance of 'std::bad_alloc'\n"
                    "  what():  std::bad_alloc\nAborted (core dumped)"
                ),
                ("OutOfMemory", "'std::bad_alloc' in RuntimeError"),
            ),
            (
                "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=123.batch.",
                ("OutOfMemory", "the OOM killer in RuntimeError"),
            ),
            (
                "Out of memory: Killed process 4242 (antsRegistration)",
                ("OutOfMemory", "'out of memory' in RuntimeError"),
            ),
            (
                "[Errno 28] No space left on device: '/scratch/jdoe/work'",
                ("NoSpaceLeft", "'No space left on device' in RuntimeError"),
            ),
            (
                "[Errno 122] Disk quota exceeded",
                ("NoSpaceLeft", "'Disk quota exceeded' in RuntimeError"),
            ),
            (
                "cannot open /home/jdoe/x: Permission denied",
                ("PermissionDenied", "'Permission denied' in RuntimeError"),
            ),
            (
                "bash: line 1: 31337 Killed                  python /home/jdoe/run.py",
                ("KilledBySignal", "SIGKILL (9) in RuntimeError"),
            ),
            ("Killed", ("KilledBySignal", "SIGKILL (9) in RuntimeError")),
            (
                "/home/jdoe/run.sh: line 3: 4242 Segmentation fault      (core dumped) recon-all",
                ("KilledBySignal", "SIGSEGV (11) in RuntimeError"),
            ),
            (
                "Return code: 139",
                ("KilledBySignal", "SIGSEGV (11), exit status 139 in RuntimeError"),
            ),
            (
                "Return code: 134",
                ("KilledBySignal", "SIGABRT (6), exit status 134 in RuntimeError"),
            ),
            (
                "Command '['bet', 'x']' died with <Signals.SIGKILL: 9>.",
                ("KilledBySignal", "SIGKILL (9) in RuntimeError"),
            ),
            (
                "cp: cannot stat 'sub-01_T1w.nii.gz': No such file or directory",
                ("MissingFile", "'No such file or directory' in RuntimeError"),
            ),
        ],
    )
    def test_from_text(self, text: str, expected: tuple[str, str]) -> None:
        """The phrases that shells, the C library and schedulers print are recognised."""
        assert expected == classify(RuntimeError(text))

    @pytest.mark.parametrize(
        "text",
        [
            "Killed 3 zombie processes before starting",
            "the process exited with code 1",
            "exit status 130",
            "invalid input: expected 4 dimensions",
            "",
        ],
    )
    def test_ordinary_texts_are_no_class(self, text: str) -> None:
        """Prose that merely contains a word such as 'Killed' is not a class."""
        assert classify(RuntimeError(text)) is None

    def test_the_most_fundamental_class_wins(self) -> None:
        """A missing output caused by a lack of memory is counted as the memory."""
        missing = FileNotFoundError(errno.ENOENT, "No such file", "out.nii.gz")
        missing.__cause__ = MemoryError()
        assert ("OutOfMemory", "MemoryError") == classify(missing)

    def test_killed_with_an_out_of_memory_text_is_out_of_memory(self) -> None:
        """SIGKILL alone is KilledBySignal; with the OOM killer's words it is OutOfMemory."""
        exc = subprocess.CalledProcessError(-9, "tool", stderr="Out of memory: Killed process 7")
        found = classify(exc)
        assert found is not None
        assert "OutOfMemory" == found[0]
        assert ("KilledBySignal", "SIGKILL (9) in CalledProcessError") == classify(
            subprocess.CalledProcessError(-9, "tool")
        )

    def test_cause_and_context_are_followed(self) -> None:
        """An application's own error raised from (or while handling) a disk error."""
        outer = RuntimeError("could not write the report")
        outer.__cause__ = OSError(errno.ENOSPC, "No space left on device")
        assert ("NoSpaceLeft", "errno 28 (ENOSPC) in OSError") == classify(outer)
        other = ValueError("cleanup failed")
        other.__context__ = PermissionError(errno.EACCES, "Permission denied")
        assert ("PermissionDenied", "errno 13 (EACCES) in PermissionError") == classify(other)

    def test_cycles_stop(self) -> None:
        """A cause chain that loops back is walked once."""
        first, second = ValueError("a"), ValueError("b")
        first.__context__, second.__context__ = second, first
        assert classify(first) is None

    def test_chain_depth_is_bounded(self) -> None:
        """A root cause deeper than MAX_CHAIN is not looked for (bounded work)."""
        exc: BaseException = MemoryError()
        for i in range(MAX_CHAIN):
            outer = ValueError(f"level {i}")
            outer.__cause__ = exc
            exc = outer
        assert classify(exc) is None
        assert classify(exc.__cause__ or exc) == ("OutOfMemory", "MemoryError")

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups need 3.11")
    def test_exception_group_members(self) -> None:
        """The members of an exception group are examined too."""
        group_type: Any = getattr(builtins, "ExceptionGroup")  # noqa: B009  # not on 3.10
        group = group_type("tasks failed", [ValueError("x"), OSError(errno.ENOSPC, "full")])
        assert ("NoSpaceLeft", "errno 28 (ENOSPC) in OSError") == classify(group)

    def test_broken_process_pool(self) -> None:
        """A worker process that died (usually killed) is KilledBySignal."""
        found = classify(BrokenProcessPool("A process in the process pool was terminated"))
        assert ("KilledBySignal", "a worker process died (BrokenProcessPool)") == found

    def test_no_class_for_ordinary_errors(self) -> None:
        """A bug is not a machine failure: None, so the caller keeps its own mapping."""
        assert classify(ValueError("bad value")) is None
        assert classify(KeyboardInterrupt()) is None

    def test_description_holds_no_text_of_the_exception(self) -> None:
        """Paths, user and file names of the message never reach error_desc."""
        exc = OSError(errno.ENOSPC, "No space left on device", "/home/jdoe/sub-01_T1w.nii.gz")
        text = RuntimeError("write /home/jdoe/data/sub-01/x.nii.gz: Disk quota exceeded")
        for found in (classify(exc), classify(text)):
            assert found is not None
            assert_private(found[1])

    def test_hostile_exceptions_never_raise(self) -> None:
        """An unprintable exception, an errno that raises, a non-exception: no raise."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

            def __repr__(self) -> str:
                raise RuntimeError("no")

        class BadErrno(OSError):
            @property  # type: ignore[override]
            def errno(self) -> int:
                raise RuntimeError("no")

        assert classify(Unprintable()) is None
        assert classify(BadErrno()) is None
        assert classify(None) is None  # type: ignore[arg-type]
        assert classify("Killed") is None  # type: ignore[arg-type]

    def test_bounded_output(self) -> None:
        """A huge class name and a huge text give a bounded class and description."""
        huge = type("Huge" * 100 + "Error", (MemoryError,), {})
        found = classify(huge("x" * 1_000_000))
        assert found is not None
        assert len(found[0]) <= MAX_TYPE_CHARS
        assert len(found[1].encode("utf-8")) <= MAX_DESC_BYTES

    @settings(max_examples=60, deadline=None, database=None)
    @given(st.text(max_size=300), st.sampled_from(["", "Killed\n", "Return code: 137\n"]))
    def test_any_text_is_bounded_and_path_free(self, text: str, marker: str) -> None:
        """Whatever the text, classify never raises, and keeps none of it."""
        found = classify(RuntimeError(f"/home/jdoe/work {marker}{text}"))
        if found is not None:
            error_type, desc = found
            assert error_type in {
                "OutOfMemory",
                "NoSpaceLeft",
                "KilledBySignal",
                "PermissionDenied",
                "MissingFile",
            }
            assert "jdoe" not in desc
            assert len(desc.encode("utf-8")) <= MAX_DESC_BYTES


# What the preset must extract from each recorded run: the node, the interface part, the
# underlying error (class and the start of its line), the built-in class, if any.
EXPECTED = {
    "command_exit_1": (
        "convert_t1w",
        "(command mri_convert)",
        (
            "RuntimeError: subprocess exited with code 1.; stderr: ERROR: cannot determine file "
            "type for <path>"
        ),
        "",
    ),
    "command_sigkill": (
        "t1w2mni",
        "(command antsRegistration)",
        "RuntimeError: subprocess exited with code 137.; stderr: Killed",
        "KilledBySignal",
    ),
    "command_sigsegv": (
        "autorecon1",
        "(command recon-all)",
        "RuntimeError: subprocess exited with code 139.; stderr: Segmentation fault",
        "KilledBySignal",
    ),
    "command_inner_killed": (
        "brain_extraction",
        "(command antsBrainExtraction.sh)",
        "RuntimeError: subprocess exited with code 137.; stderr: Killed",
        "KilledBySignal",
    ),
    "command_no_memory": (
        "bold_hmc",
        "(command 3dvolreg)",
        (
            "RuntimeError: subprocess exited with code 1.; stderr: ** FATAL ERROR: Cannot "
            "allocate memory"
        ),
        "OutOfMemory",
    ),
    "command_not_found": (
        "skullstrip",
        "(nipype.interfaces.fsl.preprocess, command bet)",
        'OSError: No command "bet" found on host <host>. Please check',
        "",
    ),
    "command_raise_exception": (
        "check_t1w",
        "(command mri_convert)",
        "RuntimeError: Return code: 1; stderr: ERROR: cannot determine file type for <path>",
        "",
    ),
    "missing_output": (
        "reorient",
        "(Reorient, command true)",
        (
            "FileNotFoundError: No such file or directory '<path>' for output 'out_file' of a "
            "Reorient interface"
        ),
        "MissingFile",
    ),
    "python_memory_error": (
        "bold_std_trans",
        "(Function allocate)",
        "_ArrayMemoryError: Unable to allocate 2.00 PiB",
        "OutOfMemory",
    ),
    "python_no_space": (
        "ds_bold",
        "(Function write_full)",
        "OSError: [Errno 28] No space left on device",
        "NoSpaceLeft",
    ),
    "python_permission": (
        "ds_report",
        "(Function denied)",
        "PermissionError: [Errno 13] Permission denied: '<path>'",
        "PermissionDenied",
    ),
    "python_value_error": (
        "validate_bold",
        "(Function validate)",
        "ValueError: Image <path> has 3 dimensions, expected 4",
        "",
    ),
    "two_failures": (
        "validate_bold",
        "(Function validate)",
        "ValueError: Image <path> has 3 dimensions, expected 4",
        "",
    ),
    "mapnode": (
        "validate_runs",
        "(Function validate), 2 subnodes",
        "ValueError: Image <path> has 3 dimensions, expected 4",
        "",
    ),
}


def check(found: tuple[str, str] | None, scenario: str, node: str | None = None) -> str:
    """Assert the preset's answer for a recorded scenario; return the description."""
    assert found is not None
    error_type, desc = found
    want_node, interface, error, builtin = EXPECTED[scenario]
    assert "NodeExecutionError" == error_type
    assert desc.startswith(f"Node {node or want_node} {interface} failed: {error}"), desc
    if builtin:
        assert desc.endswith(f"[{builtin}]"), desc
    else:
        assert not desc.endswith("]"), desc
    assert_private(desc)
    return desc


class TestNipypeRecorded:
    """The preset on what real nipype runs raised, logged and wrote."""

    def test_every_recorded_scenario_is_expected(self) -> None:
        """The data and the expectations cover the same scenarios."""
        assert set(EXPECTED) == {rid.split(".", maxsplit=1)[0] for rid in RECORDS}

    @pytest.mark.parametrize("rid", sorted(RECORDS))
    def test_exception(self, rid: str) -> None:
        """The exception workflow.run() raised (Linear: the NodeExecutionError itself;
        MultiProc: a RuntimeError holding the node's traceback; two failures: a
        RuntimeError caused by the first)."""
        desc = check(nipype(rebuild(RECORDS[rid]["exception"])), rid.split(".", maxsplit=1)[0])
        assert ("(first of 2 failures)" in desc) == rid.startswith("two_failures")

    @pytest.mark.parametrize("rid", sorted(RECORDS))
    def test_crash_log_record(self, rid: str) -> None:
        """The 'Saving crash info to <crash file>' record, followed by the traceback."""
        scenario = rid.split(".", maxsplit=1)[0]
        messages = [m for m in RECORDS[rid]["log"] if m.startswith("Saving crash info to ")]
        assert messages
        desc = check(nipype_message(messages[0]), scenario)
        if scenario == "two_failures":
            assert "first of" not in desc  # one record per failed node
            second = nipype_message(messages[1])
            assert second is not None
            assert second[1].startswith("Node bold_std_trans (Function allocate) failed")

    @pytest.mark.parametrize("rid", sorted(RECORDS))
    def test_crash_file(self, rid: str) -> None:
        """The text crash file: its 'Node:' line gives the node's full name."""
        scenario = rid.split(".", maxsplit=1)[0]
        if scenario == "two_failures":  # the first crash file of this run is the other node's
            found = nipype_message(RECORDS[rid]["crashfile"])
            assert found is not None
            assert found[1].startswith(
                "Node sub_01_wf.bold_std_trans (Function allocate) failed: _ArrayMemoryError"
            )
            assert found[1].endswith("[OutOfMemory]")
            return
        node = f"sub_01_wf.{EXPECTED[scenario][0]}"
        check(nipype_message(RECORDS[rid]["crashfile"]), scenario, node=node)

    @pytest.mark.parametrize("rid", sorted(RECORDS))
    def test_short_log_records(self, rid: str) -> None:
        """'Node X failed to run on host H.' and 'could not run node: wf.X' name the node
        only, and never the host."""
        for message in RECORDS[rid]["log"]:
            if message.startswith("Saving crash info to "):
                continue
            found = nipype_message(message)
            assert found is not None
            error_type, desc = found
            assert "NodeExecutionError" == error_type
            assert desc.startswith("Node "), desc
            assert desc.endswith(" failed"), desc
            assert_private(desc)

    def test_multiproc_and_linear_agree(self) -> None:
        """The same failure reads the same whichever plugin ran it."""
        for scenario in ("command_exit_1", "command_sigkill", "python_memory_error"):
            linear = nipype(rebuild(RECORDS[f"{scenario}.linear"]["exception"]))
            multiproc = nipype(rebuild(RECORDS[f"{scenario}.multiproc"]["exception"]))
            assert linear == multiproc

    def test_builtin_classify_reads_nipype_texts(self) -> None:
        """classify() finds the machine failure inside a node's text too."""
        cases = {
            "command_sigkill.multiproc": "KilledBySignal",
            "command_no_memory.linear": "OutOfMemory",
            "python_no_space.linear": "NoSpaceLeft",
            "python_value_error.linear": None,
        }
        for rid, expected in cases.items():
            found = classify(rebuild(RECORDS[rid]["exception"]))
            assert expected == (found[0] if found else None), rid

    def test_the_recorded_texts_do_hold_personal_data(self) -> None:
        """The privacy checks above are meaningful: the inputs are full of it."""
        text = json.dumps(DATA["records"])
        for item in PERSONAL:
            assert item in text, item


class TestNipypeEdges:
    """The preset on what is not (quite) a recorded crash."""

    def test_not_nipype(self) -> None:
        """Exceptions and texts that are not nipype's give None."""
        assert nipype(ValueError("Node failed")) is None
        assert nipype(RuntimeError("2 raised. Re-raising first.")) is None
        assert nipype_message("Node 3 of the cluster failed") is None
        assert nipype_message("") is None

    def test_bare_node_execution_error(self) -> None:
        """A NodeExecutionError without nipype's text still gives the class."""
        assert ("NodeExecutionError", "Node ? failed: NodeExecutionError") == nipype(
            NodeExecutionError()
        )
        found = nipype(NodeExecutionError("something odd in /home/jdoe/x"))
        assert (
            "NodeExecutionError",
            "Node ? failed: NodeExecutionError: something odd in <path>",
        ) == found

    def test_subclass_is_matched_by_name(self) -> None:
        """A subclass of a class named NodeExecutionError is matched too."""

        class Custom(NodeExecutionError):
            pass

        assert nipype(Custom("x")) is not None

    def test_populating_inputs(self) -> None:
        """nipype's error when a source node left no outputs (nodes.py's text)."""
        text = (
            'Error populating the inputs of node "bold_std_trans": the results file of the '
            "source node (/home/jdoe/work/sub_01_wf/bold_hmc/result_bold_hmc.pklz) does not "
            "contain any outputs."
        )
        found = nipype(NodeExecutionError(text))
        assert found is not None
        assert found[1].startswith(
            "Node bold_std_trans failed: NodeExecutionError: Error populating"
        )
        assert_private(found[1])

    def test_old_workflow_message(self) -> None:
        """nipype < 1.7 ended a failed run with 'Workflow did not execute cleanly.'"""
        found = nipype(RuntimeError("Workflow did not execute cleanly. Check log for details"))
        assert (
            "NodeExecutionError",
            "Node ? failed: RuntimeError: Workflow did not execute cleanly",
        ) == found

    def test_node_and_interface_from_the_traceback(self) -> None:
        """Raised in this process, the node object in the traceback gives its full name and
        its interface class, which the text does not name."""

        class Registration:
            """Stands for nipype.interfaces.ants.Registration."""

        class Node:
            """Stands for nipype.pipeline.engine.nodes.Node."""

            fullname = "sub_01_wf.anat_fit_wf.t1w2mni"
            interface = Registration()

            def run(self) -> None:
                raise NodeExecutionError(RECORDS["command_sigkill.linear"]["exception"][0]["text"])

        Node.__module__ = "nipype.pipeline.engine.nodes"
        try:
            Node().run()
        except NodeExecutionError as exc:
            found = nipype(exc)
        assert found is not None
        assert found[1].startswith(
            "Node sub_01_wf.anat_fit_wf.t1w2mni (Registration, command antsRegistration) failed"
        )

    def test_other_objects_in_frames_are_ignored(self) -> None:
        """A 'self' that is not nipype's Node (here: a Node of another package) is ignored."""

        class Node:
            fullname = "not.this"

            def run(self) -> None:
                raise NodeExecutionError(RECORDS["command_sigkill.linear"]["exception"][0]["text"])

        try:
            Node().run()
        except NodeExecutionError as exc:
            found = nipype(exc)
        assert found is not None
        assert found[1].startswith("Node t1w2mni (command antsRegistration)")

    def test_never_raises(self) -> None:
        """Unprintable exceptions and non-text input give None or a class, never a raise."""

        class Unprintable(NodeExecutionError):
            def __str__(self) -> str:
                raise RuntimeError("no")

            def __repr__(self) -> str:
                raise RuntimeError("no")

        assert nipype(Unprintable()) is not None
        assert nipype(None) is None  # type: ignore[arg-type]
        assert nipype_message(None) is None  # type: ignore[arg-type]
        assert nipype_message(b"Saving crash info to /x")  # type: ignore[arg-type]

    def test_huge_text_is_bounded(self) -> None:
        """A node's enormous stderr and message still give a description within the limit."""
        text = RECORDS["command_exit_1.linear"]["exception"][0]["text"].replace(
            "ERROR: cannot", "é" * 200_000 + "\n\tERROR: cannot"
        )
        found = nipype(NodeExecutionError(text + "x" * 100_000))
        assert found is not None
        assert len(found[1].encode("utf-8")) <= MAX_DESC_BYTES
        long_line = NodeExecutionError(
            f"Exception raised while executing Node n.\n\nTraceback:\n\tValueError: {'ü' * 5000}"
        )
        found = nipype(long_line)
        assert found is not None
        assert len(found[1].encode("utf-8")) <= MAX_DESC_BYTES

    def test_pathological_texts_are_fast(self) -> None:
        """Texts built to make regular expressions backtrack are read in linear time (a
        nested lazy pattern once took minutes on the second one)."""
        head = "Exception raised while executing Node n.\n\nTraceback:\n\tRuntimeError: "
        texts = [
            "a" * 200_000,
            "a." * 100_000,
            head + "Command:\n" + "\nStandard output:\n\nStandard error:\n" * 1500,
            head + "Stderr:\n" * 10_000,
            "1 " * 50_000 + "Killed",
            "Exception raised while executing Node " * 5_000,
            head + ("a.b." * 50 + "Error: x\n") * 1_000,
            "return code " * 20_000,
        ]
        start = time.perf_counter()
        for text in texts:
            classify(RuntimeError(text))
            nipype(NodeExecutionError(text))
            nipype_message(text)
        assert time.perf_counter() - start < 10  # about 0.3 s; minutes before the fix

    def test_data_file_names_are_redacted(self) -> None:
        """A bare BIDS file name (no directory, so no path) becomes <file>."""
        text = (
            "Exception raised while executing Node n.\n\nTraceback:\n\t"
            "ValueError: sub-02_ses-1_T1w.nii.gz and sub-02_bold.json disagree (3.11 vs 4)"
        )
        found = nipype(NodeExecutionError(text))
        assert found is not None
        assert "Node n failed: ValueError: <file> and <file> disagree (3.11 vs 4)" == found[1]

    def test_presets(self) -> None:
        """PRESETS names the nipype preset."""
        assert {"nipype": nipype} == PRESETS
        assert "PRESETS" in classify_module.__all__
