"""Record nipype's real crash texts into ``crashes.json`` (the data of tests/test_classify.py).

Not a test, and not run by the test suite: nipype is too heavy for the test extra (it
pulls scipy, numpy, lxml, rdflib, nibabel, networkx: a 350 MB environment). To record
again, in a separate environment::

    python -m venv /tmp/venv-nipype && /tmp/venv-nipype/bin/pip install nipype
    /tmp/venv-nipype/bin/python tests/data/nipype/record.py tests/data/nipype/crashes.json

Each scenario builds a one-node workflow whose node fails in a way pipelines meet (a
command that exits 1, is killed, segfaults or is not installed; an output that was not
written; a Python node that runs out of memory, space or permission, or rejects its
input), runs it with the Linear and MultiProc plugins, and keeps what nipype produced:
the exception ``workflow.run()`` raised (with its ``__cause__`` chain), the ERROR records
of the ``nipype.workflow`` logger, and the text crash file. The commands are small shell
scripts named like the tools they stand for (``mri_convert``...), put first on PATH.

The texts are kept as nipype wrote them, except that the machine-specific parts are
replaced by realistic personal ones, so that the tests can check that none survives:
the scratch directory becomes ``/home/jdoe/data/ds003``, nipype's install directory
``/home/jdoe/.venvs/fmriprep/lib/python3.11/site-packages``, the host name
``node17.cluster.example.edu``, the login name ``jdoe`` and this file (where two
interfaces are defined) ``/home/jdoe/code/mytool/interfaces.py``.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import platform
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nipype
from nipype import Function, MapNode, Node, Workflow, config
from nipype.interfaces import fsl
from nipype.interfaces.base import CommandLine, CommandLineInputSpec, File, TraitedSpec

HOME = "/home/jdoe/data/ds003"
SITE = "/home/jdoe/.venvs/fmriprep/lib/python3.11/site-packages"
HOST = "node17.cluster.example.edu"
CODE = "/home/jdoe/code/mytool/interfaces.py"  # where this file's interfaces seem to live
USER = "jdoe"

# The tools: shell scripts that fail as the real ones do.
TOOLS = {
    "mri_convert": 'echo "ERROR: cannot determine file type for ${3:-$1}" >&2\nexit 1\n',
    "antsRegistration": "echo 'Using single precision for computations.'\nkill -9 $$\n",
    "recon-all": "echo 'recon-all -s sub-01 -autorecon1'\nkill -11 $$\n",
    "antsBrainExtraction.sh": "sh -c 'kill -9 $$'\nexit $?\n",
    "3dvolreg": "echo '** FATAL ERROR: Cannot allocate memory' >&2\nexit 1\n",
}


class Capture(logging.Handler):
    """Keeps the formatted messages of the ERROR records."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class ConvertInputSpec(CommandLineInputSpec):
    in_file = File(argstr="%s", position=0, desc="input")


class ConvertOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="output")


class Reorient(CommandLine):
    """A command that succeeds but does not write the output it announces."""

    _cmd = "true"
    input_spec = ConvertInputSpec
    output_spec = ConvertOutputSpec

    def _list_outputs(self) -> dict[str, str]:
        return {"out_file": os.path.abspath("sub-01_T1w_reoriented.nii.gz")}


class ContrastCheck(CommandLine):
    """Raises as ContrastMgr, FSLXCommand, MatlabCommand do (and every command before 1.7)."""

    _cmd = "mri_convert"
    input_spec = ConvertInputSpec
    output_spec = TraitedSpec

    def _run_interface(self, runtime: Any) -> Any:
        runtime = super()._run_interface(runtime)
        if runtime.returncode:
            self.raise_exception(runtime)
        return runtime


def allocate(in_file: str) -> str:
    import numpy as np

    data = np.zeros((2**20, 2**20, 256))
    return str(data.shape)


def write_full(in_file: str) -> str:
    with open("/dev/full", "w") as handle:
        handle.write("x")
    return in_file


def denied(in_file: str) -> str:
    import errno
    import os

    # As root nothing is denied: raise what open() raises for a non-root user.
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), in_file)


def validate(in_file: str) -> str:
    raise ValueError(f"Image {in_file} has 3 dimensions, expected 4")


def _function(func: Callable[[str], str], name: str, in_file: Path) -> Node:
    node = Node(Function(function=func, input_names=["in_file"], output_names=["out"]), name=name)
    node.inputs.in_file = str(in_file)
    return node


def _command(tool: str, args: str, name: str) -> Node:
    return Node(CommandLine(command=tool, args=args, terminal_output="allatonce"), name=name)


def scenarios(base: Path) -> dict[str, Callable[[], Node]]:
    t1w = base / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    bold = base / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    return {
        "command_exit_1": lambda: _command(
            "mri_convert", f"--out_type mgz {t1w} {t1w.with_suffix('.mgz')}", "convert_t1w"
        ),
        "command_sigkill": lambda: _command(
            "antsRegistration",
            f"--dimensionality 3 --output [ants_, {base}/out.nii.gz]",
            "t1w2mni",
        ),
        "command_sigsegv": lambda: _command("recon-all", "-autorecon1 -s sub-01", "autorecon1"),
        "command_inner_killed": lambda: _command(
            "antsBrainExtraction.sh", f"-d 3 -a {t1w}", "brain_extraction"
        ),
        "command_no_memory": lambda: _command("3dvolreg", f"-base 0 {bold}", "bold_hmc"),
        "command_not_found": lambda: Node(fsl.BET(in_file=str(t1w), mask=True), name="skullstrip"),
        "command_raise_exception": lambda: Node(ContrastCheck(in_file=str(t1w)), name="check_t1w"),
        "missing_output": lambda: Node(Reorient(in_file=str(t1w)), name="reorient"),
        "python_memory_error": lambda: _function(allocate, "bold_std_trans", bold),
        "python_no_space": lambda: _function(write_full, "ds_bold", bold),
        "python_permission": lambda: _function(denied, "ds_report", bold),
        "python_value_error": lambda: _function(validate, "validate_bold", bold),
    }


def _chain(exc: BaseException | None) -> list[dict[str, str]]:
    chain: list[dict[str, str]] = []
    while exc is not None and len(chain) < 5:
        kind = type(exc)
        chain.append({"type": f"{kind.__module__}.{kind.__qualname__}", "text": str(exc)})
        exc = exc.__cause__ or exc.__context__
    return chain


def _run(base: Path, name: str, nodes: list[Node], plugin: str) -> dict[str, Any]:
    work = base / "work" / f"{name}_{plugin.lower()}"
    crashdir = base / "crash" / f"{name}_{plugin.lower()}"
    wf = Workflow(name="sub_01_wf", base_dir=str(work))
    wf.add_nodes(nodes)
    wf.config["execution"] = {"crashdump_dir": str(crashdir), "crashfile_format": "txt"}
    capture = Capture()
    logger = logging.getLogger("nipype.workflow")
    logger.addHandler(capture)
    record: dict[str, Any] = {"id": f"{name}.{plugin.lower()}", "plugin": plugin}
    try:
        wf.run(plugin=plugin, plugin_args={"n_procs": 1} if plugin == "MultiProc" else {})
    except Exception as exc:
        record["exception"] = _chain(exc)
    finally:
        logger.removeHandler(capture)
    record["log"] = capture.messages
    crashfiles = sorted(crashdir.glob("crash-*.txt")) if crashdir.exists() else []
    if crashfiles:
        record["crashfile"] = crashfiles[0].read_text()
    return record


def _personal(value: Any, base: Path, site: str, host: str, user: str) -> Any:
    """The recorded value with this machine's paths and names made a realistic user's."""
    if isinstance(value, dict):
        return {k: _personal(v, base, site, host, user) for k, v in value.items()}
    if isinstance(value, list):
        return [_personal(v, base, site, host, user) for v in value]
    if not isinstance(value, str):
        return value
    value = value.replace(site, SITE).replace(str(base), HOME)
    value = value.replace(str(Path(__file__).resolve()), CODE)
    value = value.replace(f"on host {host}.", f"on host {HOST}.")
    return value.replace(f"-{user}-", f"-{USER}-")


def main() -> None:
    out = Path(sys.argv[1])
    config.set("execution", "stop_on_first_crash", "false")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        bindir = base / "bin"
        bindir.mkdir()
        for tool, script in TOOLS.items():
            path = bindir / tool
            path.write_text(f"#!/bin/sh\n{script}")
            path.chmod(0o755)
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"
        for sub in ("anat", "func"):
            (base / "sub-01" / sub).mkdir(parents=True)
        (base / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"")
        for run in ("", "_run-1", "_run-2"):
            (base / "sub-01" / "func" / f"sub-01_task-rest{run}_bold.nii.gz").write_bytes(b"")

        records = []
        for name, make in scenarios(base).items():
            records.append(_run(base, name, [make()], "Linear"))
        for name in ("command_exit_1", "command_sigkill", "python_memory_error"):
            records.append(_run(base, name, [scenarios(base)[name]()], "MultiProc"))
        both = scenarios(base)
        records.append(
            _run(
                base,
                "two_failures",
                [both["python_value_error"](), both["python_memory_error"]()],
                "Linear",
            )
        )
        mapnode = MapNode(
            Function(function=validate, input_names=["in_file"], output_names=["out"]),
            iterfield=["in_file"],
            name="validate_runs",
        )
        mapnode.inputs.in_file = [
            str(base / "sub-01" / "func" / f"sub-01_task-rest_run-{i}_bold.nii.gz") for i in (1, 2)
        ]
        records.append(_run(base, "mapnode", [mapnode], "Linear"))
        site = str(Path(nipype.__file__).parent.parent)
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"UID{os.getuid():d}"
        records = _personal(records, base, site, socket.gethostname(), user)

    data = {
        "recorded_with": {"nipype": nipype.__version__, "python": platform.python_version()},
        "personal": {"home": HOME, "site_packages": SITE, "host": HOST, "user": USER},
        "records": records,
    }
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
