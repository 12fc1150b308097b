"""Error classification: stable classes for the failures every pipeline meets, and presets.

A crash reported as ``OSError: [Errno 28] No space left on device: '/scratch/jdoe/...'``
groups badly on a dashboard (every path differs) and says nothing the maintainer can
count. The functions here turn an exception into an :data:`ErrorClass`, a pair
``(error_type, error_desc)`` with a stable ``error_type`` and a short, path-free
``error_desc``. They are pure: no I/O, no state, they never raise (``None`` when they
have nothing to say) and their output is bounded (``error_type`` at most
:data:`MAX_TYPE_CHARS` characters, ``error_desc`` at most :data:`MAX_DESC_BYTES` bytes).

:func:`classify` knows the failures that are about the machine, not the code
(``error_type``: what it is found from; an example ``error_desc``):

* ``OutOfMemory``: :class:`MemoryError` (and subclasses such as numpy's), ``OSError``
  ``ENOMEM``; in the text ``Cannot allocate memory``, ``std::bad_alloc``, ``out of
  memory``, the OOM killer (``oom-kill``), ``exceeded memory limit``, a ``...MemoryError``
  class name. ``errno 12 (ENOMEM) in OSError``.
* ``NoSpaceLeft``: ``OSError`` ``ENOSPC`` or ``EDQUOT``; in the text ``No space left on
  device``, ``Disk quota exceeded``. ``errno 28 (ENOSPC) in OSError``.
* ``KilledBySignal``: a ``CalledProcessError`` with a negative return code or a shell's
  ``128 + N`` (N one of SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGSEGV, SIGTERM);
  ``BrokenProcessPool`` (a worker process died); in the text such a return code or exit
  status, the shell's ``Killed``, ``Segmentation fault``, ``Aborted (core dumped)``...
  ``SIGKILL (9), exit status 137 in CalledProcessError``.
* ``PermissionDenied``: ``OSError`` ``EACCES`` or ``EPERM``, :class:`PermissionError`;
  in the text ``Permission denied``, ``Operation not permitted``. ``errno 13 (EACCES) in
  PermissionError``.
* ``MissingFile``: :class:`FileNotFoundError`, ``OSError`` ``ENOENT``; in the text ``No
  such file or directory``. ``errno 2 (ENOENT) in FileNotFoundError``.

Rules:

* The exception and its ``__cause__`` / ``__context__`` chain are walked (at most
  :data:`MAX_CHAIN` exceptions, cycles stopped, exception groups' members included), and
  so is the text of each one (its ``str()``, and the ``stderr`` / ``output`` of a
  ``CalledProcessError``; the first and last 32,768 characters of a long one).
* When several classes are found, the most fundamental wins, in the order of this list:
  a command killed for lack of memory often leaves an output missing, and the dashboard
  should count the memory, not the missing file. A SIGKILL alone is ``KilledBySignal``
  ("often the OOM killer", but not always: a scheduler's time limit kills too); with an
  out-of-memory text it is ``OutOfMemory``.
* ``error_desc`` says what was found (an errno and its name, a signal and its number, a
  fixed phrase) and in which exception class: it holds no text of the exception itself,
  so no path, user name or file name.

:func:`nipype` is the preset for `nipype <https://nipype.readthedocs.io>`_ pipelines
(fMRIPrep, MRIQC, sMRIPrep...): a ``NodeExecutionError`` (matched by class name, nipype
is not imported), or an exception carrying nipype's crash text (the ``RuntimeError`` that
the MultiProc plugin raises), becomes ``("NodeExecutionError", "Node <name> (<interface>)
failed: <exception class>: <first line of its message>...")``, as migas-py's ``nipype``
preset reports it (same ``error_type``, a shorter description without any path).
:func:`nipype_message` does the same for a log message or a crash file's text. Both
redact what they keep of the message with :func:`migas_logging._redact.default_redactor`
(paths, user and host names...), and replace file names with a data file's extension
(``sub-01_T1w.nii.gz``) by ``<file>``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import builtins
import errno
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

from migas_logging._redact import default_redactor
from migas_logging.breadcrumb import safe_str, shorten, storable_text

__all__ = [
    "MAX_CHAIN",
    "MAX_DESC_BYTES",
    "MAX_TYPE_CHARS",
    "PRESETS",
    "ErrorClass",
    "classify",
    "nipype",
    "nipype_message",
]

#: ``(error_type, error_desc)``: a stable class name and a short, path-free description.
ErrorClass = tuple[str, str]

#: The longest ``error_type`` returned.
MAX_TYPE_CHARS: Final = 64
#: The largest ``error_desc`` returned, in bytes of UTF-8.
MAX_DESC_BYTES: Final = 800
#: At most this many exceptions of a ``__cause__`` / ``__context__`` chain are examined.
MAX_CHAIN: Final = 8

_TEXT_HALF: Final = 32_768  # characters kept from each end of a long exception text
_STREAM_TAIL: Final = 4_096  # characters kept from the end of a subprocess's output
_ITEM_CHARS: Final = 240  # the longest piece of free text kept in a nipype description
_NAME_CHARS: Final = 120  # the longest node, interface or command name kept

_OUT_OF_MEMORY: Final = "OutOfMemory"
_NO_SPACE: Final = "NoSpaceLeft"
_KILLED: Final = "KilledBySignal"
_PERMISSION: Final = "PermissionDenied"
_MISSING: Final = "MissingFile"
# The most fundamental first (see the module docstring).
_RANK: Final = {_OUT_OF_MEMORY: 0, _NO_SPACE: 1, _KILLED: 2, _PERMISSION: 3, _MISSING: 4}

_ERRNO_CLASSES: Final = {
    errno.ENOMEM: _OUT_OF_MEMORY,
    errno.ENOSPC: _NO_SPACE,
    errno.EACCES: _PERMISSION,
    errno.EPERM: _PERMISSION,
    errno.ENOENT: _MISSING,
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _ERRNO_CLASSES[errno.EDQUOT] = _NO_SPACE

# Signals that a shell reports as exit status 128 + N (other statuses above 128 are often
# a program's own choice, and 130, SIGINT, is the user stopping the program).
_SHELL_SIGNALS: Final = frozenset(
    getattr(signal, name)
    for name in ("SIGILL", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGSEGV", "SIGTERM")
    if hasattr(signal, name)
)

# Phrases looked for in the text of an exception, with their class and how they are named
# in error_desc. Matched case-insensitively where the phrase is a sentence, not a name.
_TEXT_RULES: Final = (
    (re.compile(r"Cannot allocate memory", re.I), _OUT_OF_MEMORY, "'Cannot allocate memory'"),
    (re.compile(r"std::bad_alloc"), _OUT_OF_MEMORY, "'std::bad_alloc'"),
    (re.compile(r"\bout of memory\b", re.I), _OUT_OF_MEMORY, "'out of memory'"),
    (re.compile(r"\boom[-_ ]kill", re.I), _OUT_OF_MEMORY, "the OOM killer"),
    (re.compile(r"exceeded (?:job |step )?memory limit", re.I), _OUT_OF_MEMORY, "a memory limit"),
    (re.compile(r"\b\w*MemoryError\b"), _OUT_OF_MEMORY, "'MemoryError'"),
    (re.compile(r"No space left on device", re.I), _NO_SPACE, "'No space left on device'"),
    (re.compile(r"Disk quota exceeded", re.I), _NO_SPACE, "'Disk quota exceeded'"),
    (re.compile(r"Permission denied", re.I), _PERMISSION, "'Permission denied'"),
    (re.compile(r"Operation not permitted", re.I), _PERMISSION, "'Operation not permitted'"),
    (re.compile(r"\bPermissionError\b"), _PERMISSION, "'PermissionError'"),
    (re.compile(r"No such file or directory", re.I), _MISSING, "'No such file or directory'"),
    (re.compile(r"\bFileNotFoundError\b"), _MISSING, "'FileNotFoundError'"),
)
# What a shell (sh, bash) or the C runtime prints when a command dies of a signal.
_SIGNAL_TEXTS: Final = (
    (re.compile(r"(?m)^[ \t]*Killed[ \t]*$|\d[ \t]+Killed[ \t]+\S"), "SIGKILL"),
    (re.compile(r"\bsegmentation fault\b|\bsegfault\b", re.I), "SIGSEGV"),
    (re.compile(r"\bAborted \(core dumped\)"), "SIGABRT"),
    (re.compile(r"\bBus error \(core dumped\)"), "SIGBUS"),
    (re.compile(r"\bIllegal instruction \(core dumped\)"), "SIGILL"),
    (re.compile(r"\bFloating point exception \(core dumped\)"), "SIGFPE"),
)
_RETURN_CODE: Final = re.compile(
    r"(?:return ?code|exit (?:status|code)|exited with (?:status |code )?"
    r"|non-zero exit status)[ \t]*[:=]?[ \t]*(-?\d{1,3})\b",
    re.I,
)
# ``str()`` of a CalledProcessError whose process died of a signal.
_DIED_WITH: Final = re.compile(r"died with <Signals\.SIG[A-Z0-9]+: (\d{1,3})>")


class _Finding(NamedTuple):
    """One class found in one exception (``order``: where, for ties)."""

    rank: int
    order: int
    error_type: str
    desc: str


# --------------------------------------------------------------------------------------
# Walking an exception
# --------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and exception groups' members.

    Breadth first, each exception once (cycles stop), at most :data:`MAX_CHAIN`.
    """
    group_type = getattr(builtins, "BaseExceptionGroup", None)
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue and len(seen) < MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        following: list[object] = [current.__cause__, current.__context__]
        if group_type is not None and isinstance(current, group_type):
            following.extend(getattr(current, "exceptions", ()))
        queue.extend(e for e in following if isinstance(e, BaseException))


def _class_name(exc: BaseException) -> str:
    """The class name of ``exc``, made safe for ``error_desc`` (identifier characters)."""
    name = re.sub(r"[^\w.]", "", safe_str(type(exc).__name__))
    return name[:MAX_TYPE_CHARS] or "Exception"


def _bounded(text: str) -> str:
    """The first and last :data:`_TEXT_HALF` characters of a long text."""
    if len(text) <= 2 * _TEXT_HALF:
        return text
    return f"{text[:_TEXT_HALF]}\n{text[-_TEXT_HALF:]}"


def _texts(exc: BaseException) -> list[str]:
    """The texts of ``exc`` worth reading: its str, and a subprocess's output."""
    texts = [_bounded(safe_str(exc))]
    if isinstance(exc, subprocess.CalledProcessError):
        for stream in (exc.stderr, exc.output):
            if stream:
                texts.append(safe_str(stream)[-_STREAM_TAIL:])
    return texts


def _names_of(cls: type) -> list[str]:
    """The names of ``cls`` and its bases."""
    try:
        return [safe_str(c.__name__) for c in cls.__mro__]
    except Exception:
        return []


# --------------------------------------------------------------------------------------
# The built-in classes
# --------------------------------------------------------------------------------------


def _signal_name(number: int) -> str:
    """``SIGKILL (9)``, or ``signal 42 (42)`` for a number this platform does not name."""
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return f"signal {number}"


def _signal_of(code: int) -> int | None:
    """The signal a return code says killed the process: -N, or a shell's 128 + N."""
    if code < 0:
        return -code
    if code > 128 and code - 128 in _SHELL_SIGNALS:
        return code - 128
    return None


def _killed(code: int) -> str | None:
    """``SIGKILL (9)`` (negative code) or ``SIGKILL (9), exit status 137``; None if no signal."""
    number = _signal_of(code)
    if number is None:
        return None
    if code < 0:
        return _signal_name(number)
    return f"{_signal_name(number)}, exit status {code}"


def _from_object(exc: BaseException) -> tuple[str, str] | None:
    """The class the exception's type and attributes prove (not its text)."""
    name = _class_name(exc)
    if isinstance(exc, MemoryError):
        return _OUT_OF_MEMORY, name
    if isinstance(exc, OSError):
        number = exc.errno
        if isinstance(number, int) and number in _ERRNO_CLASSES:
            symbol = errno.errorcode.get(number, "?")
            return _ERRNO_CLASSES[number], f"errno {number} ({symbol}) in {name}"
        if isinstance(exc, PermissionError):
            return _PERMISSION, name
        if isinstance(exc, FileNotFoundError):
            return _MISSING, name
    if isinstance(exc, subprocess.CalledProcessError) and isinstance(exc.returncode, int):
        killed = _killed(exc.returncode)
        if killed is not None:
            return _KILLED, f"{killed} in {name}"
    if "BrokenProcessPool" in _names_of(type(exc)):
        return _KILLED, f"a worker process died ({name})"
    return None


def _from_text(text: str, name: str) -> list[tuple[str, str]]:
    """The classes the text of an exception (of class ``name``) mentions."""
    found: list[tuple[str, str]] = []
    for pattern, kind, phrase in _TEXT_RULES:
        if pattern.search(text):
            found.append((kind, f"{phrase} in {name}"))
    codes = [-int(m.group(1)) for m in _DIED_WITH.finditer(text)]
    codes += [int(m.group(1)) for m in _RETURN_CODE.finditer(text)]
    for code in codes:
        killed = _killed(code)
        if killed is not None:
            found.append((_KILLED, f"{killed} in {name}"))
            break
    else:
        for pattern, signame in _SIGNAL_TEXTS:
            number = getattr(signal, signame, None)
            if isinstance(number, int) and pattern.search(text):
                found.append((_KILLED, f"{_signal_name(number)} in {name}"))
                break
    return found


def _classify(exc: BaseException) -> ErrorClass | None:
    findings: list[_Finding] = []
    for exc_ in _chain(exc):
        proven = _from_object(exc_)
        if proven is not None:
            findings.append(_Finding(_RANK[proven[0]], len(findings), *proven))
        name = _class_name(exc_)
        for text in _texts(exc_):
            for kind, desc in _from_text(text, name):
                findings.append(_Finding(_RANK[kind], len(findings), kind, desc))
    if not findings:
        return None
    best = min(findings)
    return best.error_type, shorten(storable_text(best.desc), MAX_DESC_BYTES)


def classify(exc: BaseException) -> ErrorClass | None:
    """The built-in class of a failure every pipeline meets, or None.

    See the module docstring for the classes, what each is found from, and which wins
    when several are found.

    Args:
        exc: The exception (its ``__cause__`` / ``__context__`` chain is examined too).

    Returns:
        ``(error_type, error_desc)``, such as ``("NoSpaceLeft", "errno 28 (ENOSPC) in
        OSError")``; None when no class applies (or on any internal error: never raises).

    .. versionadded:: 0.2.0
    """
    try:
        return _classify(exc)
    except Exception:
        return None


# --------------------------------------------------------------------------------------
# The nipype preset
# --------------------------------------------------------------------------------------

_NODE_CLASSES: Final = frozenset({"Node", "MapNode", "JoinNode"})
# Texts only nipype writes (exception messages, log messages, crash files).
_NIPYPE_MARKERS: Final = (
    "Exception raised while executing Node ",
    "Subnodes of node: ",
    "Error populating the inputs of node ",
    "NodeExecutionError",
    "Saving crash info to ",
    " failed to run on host ",
    "could not run node: ",
    "Workflow did not execute cleanly",
)
_NAME: Final = r"[\w.-]{1,200}"
_EXECUTING: Final = re.compile(rf"Exception raised while executing Node ({_NAME}?)\.?(?:\s|$)")
_SUBNODES: Final = re.compile(rf"Subnodes of node: ({_NAME}) failed:")
_SUBNODE_FAILED: Final = re.compile(r"(?m)^Subnode \d+ failed$")
_POPULATING: Final = re.compile(rf'Error populating the inputs of node "({_NAME})"')
_CRASHFILE_NODE: Final = re.compile(rf"(?m)\ANode: ({_NAME})$")
_COULD_NOT_RUN: Final = re.compile(rf"could not run node: ({_NAME})")
_FAILED_ON_HOST: Final = re.compile(rf"Node ({_NAME}) failed to run on host ")
_NOT_CLEANLY: Final = "Workflow did not execute cleanly"
_RERAISED: Final = re.compile(r"(?m)^(\d{1,6}) raised\. Re-raising first\.$")

_CMDLINE: Final = re.compile(r"(?m)^Cmdline:\n\t?[ \t]*([^\n]*)")
_STDERR: Final = re.compile(r"(?ms)^Stderr:\n(.*?)(?=^Traceback:$|\Z)")
_TRACEBACK_SECTION: Final = re.compile(r"(?m)^Traceback:\n")
_NO_COMMAND: Final = re.compile(r'No command "([^"\n]{1,200})" found on host')
_INTERFACE_TEXT: Final = re.compile(r"\bof an? (\w{1,120}) interface\b")
_SPEC_TEXT: Final = re.compile(r"\btrait of an? (\w{1,120}?)(?:Input|Output)Spec instance\b")
_FRAME: Final = re.compile(r'(?m)^[ \t]*File "([^"\n]{1,1000})", line \d+, in ([\w<>]{1,200})$')
_EXCEPTION_LINE: Final = re.compile(
    r"(?m)^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning|Iteration"
    r"|Fault|Failure|Timeout|Abort|Pool)|(?:[A-Za-z_]\w*\.)+[A-Z]\w*)(?:: ?(.*))?$"
)
# The ``Command: ... Return code: N`` message of ``CommandLine.raise_exception``.
_RETURN_CODE_LINE: Final = re.compile(r"(?m)^[ \t]*Return code: (-?\d{1,6})$")
_EXITED: Final = re.compile(r"subprocess exited with code (-?\d+)")
_HOST: Final = re.compile(r"\bon host \S+?(?=\.?(?:\s|$))")
_PACKAGES: Final = re.compile(r"[/\\](?:site|dist)-packages[/\\](.+)\.py$")
_INTERFACE_FUNCTIONS: Final = frozenset(
    {"_run_interface", "_list_outputs", "aggregate_outputs", "_format_arg", "_gen_filename"}
)
_GENERIC_MODULES: Final = frozenset(
    {"nipype.interfaces.base.core", "nipype.interfaces.base.support"}
)
_SECTION_HEADERS: Final = frozenset(
    {"Command:", "Standard output:", "Standard error:", "Cmdline:", "Stdout:", "Stderr:"}
)
# File names of data files (no directory: the redactor takes paths) become ``<file>``.
_DATA_FILE: Final = re.compile(
    r"(?<![\w<.-])[\w+.-]{1,200}\.(?:nii(?:\.gz)?|gz|mgz|mgh|gii|h5|hdf5|mat|json|tsv|csv|txt"
    r"|npy|npz|pkl|pklz|svg|html|dcm|img|hdr|lta|xfm|mif|tck|trk|BRIK|HEAD|1D|x5|tar|zip|log)"
    r"(?![\w.])"
)


class _NodeFailure(NamedTuple):
    """What the preset learnt about a failed node (empty strings for unknown parts)."""

    node: str
    interface: str
    function: str
    module: str
    command: str
    error_type: str
    error_line: str
    stderr: str
    subnodes: int
    failures: int


def _first_match(pattern: re.Pattern[str], text: str) -> str:
    """Group 1 of the first match of ``pattern`` in ``text``, or ``""``."""
    match = pattern.search(text)
    return match.group(1) if match else ""


def _clip(text: str, limit: int = _ITEM_CHARS) -> str:
    """One line of at most ``limit`` characters (``…`` marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dedent_tab(text: str) -> str:
    """Remove the one tab nipype puts before each line of a section."""
    return "\n".join(line[1:] if line.startswith("\t") else line for line in text.split("\n"))


def _last_line(text: str) -> str:
    """The last line that is not blank (errors come last in a command's stderr)."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return lines[-1] if lines else ""


def _final_exception(text: str) -> tuple[str, str]:
    """The class (last dotted part) and first meaningful message line of a traceback's
    final exception, or ``("", "")``."""
    matches = list(_EXCEPTION_LINE.finditer(text))
    if not matches:
        return "", ""
    last = matches[-1]
    kind = last.group(1).rsplit(".", 1)[-1]
    rest = text[last.start(2) :] if last.group(2) is not None else ""
    if rest.startswith("Command:\n"):  # CommandLine.raise_exception: the code says most
        code = _RETURN_CODE_LINE.search(rest)
        if code:
            return kind, f"Return code: {code.group(1)}"
    for raw in rest.split("\n"):
        line = raw.strip()
        if line.startswith(("During handling of the above", "The above exception")):
            break
        if line and line not in _SECTION_HEADERS:
            return kind, line
    return kind, ""


def _interface_from_frames(text: str) -> tuple[str, str, str]:
    """``(interface, function, module)`` read from the frames of a traceback text."""
    interface = function = module = ""
    for match in _FRAME.finditer(text):
        path, func = match.group(1), match.group(2)
        unix = path.replace("\\", "/")
        if unix.endswith("nipype/interfaces/utility/wrappers.py"):
            interface = "Function"
        elif path == "<string>" and func != "<module>":
            function = func  # the function of a Function node
        elif func in _INTERFACE_FUNCTIONS:
            found = _PACKAGES.search(path)
            if found:
                dotted = re.sub(r"[/\\]", ".", found.group(1))
                if dotted not in _GENERIC_MODULES:
                    module = dotted
    return interface, function, module


def _parse_node_text(text: str) -> _NodeFailure | None:
    """Read nipype's crash text (exception message, log message or crash file)."""
    if not any(marker in text for marker in _NIPYPE_MARKERS):
        return None
    failures = int(_first_match(_RERAISED, text) or 0)
    node = _first_match(_CRASHFILE_NODE, text) or _first_match(_COULD_NOT_RUN, text)
    region = text
    subnodes = 0
    parent = _first_match(_SUBNODES, text)
    if parent:
        node = node or parent
        region = text[text.index("Subnodes of node: ") :]
        starts = [m.start() for m in _SUBNODE_FAILED.finditer(region)]
        subnodes = len(starts)
        if subnodes > 1:
            region = region[: starts[1]]  # the first failed subnode's error only
    executing = _EXECUTING.search(region)
    if executing:
        node = node or executing.group(1)
        region = region[executing.start() :]
    node = node or _first_match(_POPULATING, text) or _first_match(_FAILED_ON_HOST, text)

    command = _first_match(_NO_COMMAND, region)
    if not command:
        cmdline = _first_match(_CMDLINE, region).strip()
        if cmdline:
            first = cmdline.split()[0].strip("'\"")
            command = re.split(r"[/\\]", first)[-1]
    interface, function, module = _interface_from_frames(region)
    interface = (
        _first_match(_INTERFACE_TEXT, region) or _first_match(_SPEC_TEXT, region) or interface
    )

    stderr = ""
    section = _TRACEBACK_SECTION.search(region)
    if section:
        traceback_text = _dedent_tab(region[section.end() :])
        stderr = _last_line(_dedent_tab(_first_match(_STDERR, region[: section.start()])))
    elif executing:
        traceback_text = region[executing.end() :]
    else:
        traceback_text = region
    error_type, error_line = _final_exception(traceback_text)
    if not error_type:
        if _POPULATING.search(region):
            error_type, error_line = "NodeExecutionError", _clip(region.split("\n")[0])
        elif _NOT_CLEANLY in text and not node:
            error_type, error_line = "RuntimeError", _NOT_CLEANLY
    command_failed = bool(_EXITED.search(error_line) or error_line.startswith("Return code:"))
    return _NodeFailure(
        node=node,
        interface=interface,
        function=function,
        module=module,
        command=command,
        error_type=error_type,
        error_line=error_line,
        stderr=stderr if command_failed else "",
        subnodes=subnodes,
        failures=failures,
    )


def _node_from_frames(exc: BaseException) -> tuple[str, str]:
    """``(node name, interface class)`` from a nipype node in the traceback's frames.

    A ``NodeExecutionError`` raised in this process (the Linear plugin, or ``node.run()``)
    passed through ``Node.run`` and ``Node._run_command``, whose ``self`` is the node.
    """
    node = interface = ""
    tb = exc.__traceback__
    depth = 0
    while tb is not None and depth < 200:
        depth += 1
        owner = tb.tb_frame.f_locals.get("self")
        tb = tb.tb_next
        classes = getattr(type(owner), "__mro__", ())
        if not any(
            c.__name__ in _NODE_CLASSES and safe_str(c.__module__).startswith("nipype.")
            for c in classes
        ):
            continue
        try:
            name = getattr(owner, "fullname", None) or getattr(owner, "name", "")
            interface = safe_str(type(getattr(owner, "interface", None)).__name__)
        except Exception:  # a property of the node failed: keep what the text says
            name, interface = "", ""
        node = name if isinstance(name, str) else ""
        if interface == "NoneType":
            interface = ""
    return node, interface


def _safe_name(value: str) -> str:
    """A node, interface or command name: identifier-like characters only, bounded."""
    return re.sub(r"[^\w.+-]", "", value)[:_NAME_CHARS]


def _describe(failure: _NodeFailure, builtin: str) -> str:
    """The ``error_desc`` of a node failure (redacted, fitted to :data:`MAX_DESC_BYTES`)."""
    parts = []
    if failure.interface:
        suffix = f" {_safe_name(failure.function)}" if failure.function else ""
        parts.append(_safe_name(failure.interface) + suffix)
    elif failure.function:
        parts.append(f"function {_safe_name(failure.function)}")
    elif failure.module:
        parts.append(_safe_name(failure.module))
    if failure.command:
        parts.append(f"command {_safe_name(failure.command)}")
    node = _safe_name(failure.node) or "?"
    text = f"Node {node}"
    if parts:
        text += f" ({', '.join(parts)})"
    if failure.subnodes:
        text += f", {failure.subnodes} subnode{'s' if failure.subnodes > 1 else ''}"
    error = _clip(f"{failure.error_type}: {failure.error_line}".strip(": "))
    text += f" failed: {error}" if failure.error_type else " failed"
    if failure.stderr:
        text += f"; stderr: {_clip(failure.stderr, 160)}"
    if failure.failures > 1:
        text += f" (first of {failure.failures} failures)"
    if builtin:
        text += f" [{builtin}]"
    text = _HOST.sub("on host <host>", text)
    text = _DATA_FILE.sub("<file>", default_redactor()(text))
    return shorten(storable_text(text), MAX_DESC_BYTES)


def _builtin_of_text(failure: _NodeFailure, text: str) -> str:
    """The built-in class that the node's own text shows (``""`` if none)."""
    name = failure.error_type or "NodeExecutionError"
    found = _from_text(text, name)
    return min(found, key=lambda kd: _RANK[kd[0]])[0] if found else ""


def _nipype(exc: BaseException) -> ErrorClass | None:
    failures = 0
    for exc_ in _chain(exc):
        text = _bounded(safe_str(exc_))
        reraised = _RERAISED.search(text)
        if reraised:
            failures = int(reraised.group(1))
            continue
        is_node_error = "NodeExecutionError" in _names_of(type(exc_))
        failure = _parse_node_text(text)
        if failure is None and not is_node_error:
            continue
        if failure is None:
            failure = _NodeFailure("", "", "", "", "", "", "", "", 0, 0)
        frame_node, frame_interface = _node_from_frames(exc_)
        failure = failure._replace(
            node=frame_node or failure.node,
            interface=frame_interface or failure.interface,
            failures=max(failure.failures, failures),
        )
        if not failure.error_type and not _EXECUTING.search(text):
            # A bare NodeExecutionError (``Subnodes...`` is parsed above): its own message.
            failure = failure._replace(
                error_type="NodeExecutionError" if is_node_error else _class_name(exc_),
                error_line=_clip(text.strip().split("\n")[0]) if text.strip() else "",
            )
        return "NodeExecutionError", _describe(failure, _builtin_of_text(failure, text))
    return None


def nipype(exc: BaseException) -> ErrorClass | None:
    """The nipype preset: a failed node, named, with its underlying error.

    Recognises a ``NodeExecutionError`` (by class name) and any exception whose text is
    nipype's crash text (the MultiProc plugin raises a ``RuntimeError`` holding the
    node's traceback; with several failures, ``RuntimeError("N raised. Re-raising
    first.")`` caused by the first one). The description names the node (its full name
    when known), its interface (the class, when the exception was raised in this process
    or the message names it; the function of a ``Function`` node; the module of an
    interface installed as a package; the command of a command-line interface), and the
    underlying error: its class and the first meaningful line of its message, with the
    last line of the command's stderr when a command failed, and the built-in class (see
    :func:`classify`) when the node's text shows one. Paths, user and host names and data
    file names are redacted.

    Args:
        exc: The exception (its ``__cause__`` / ``__context__`` chain is examined too).

    Returns:
        ``("NodeExecutionError", "Node sub_01_wf.t1w2mni (command antsRegistration)
        failed: RuntimeError: subprocess exited with code 137.; stderr: Killed
        [KilledBySignal]")``, for example; None for an exception that is not nipype's (or
        on any internal error: never raises).

    .. versionadded:: 0.2.0
    """
    try:
        return _nipype(exc)
    except Exception:
        return None


def nipype_message(text: str) -> ErrorClass | None:
    """The nipype preset for a log message or a crash file's text.

    Reads the messages nipype logs when a node fails (``Saving crash info to ...``
    followed by the traceback, ``Node X failed to run on host H.``, ``could not run node:
    X``) and the text crash files (``crashfile_format = txt``), as :func:`nipype` reads
    an exception.

    Args:
        text: The message or crash file's text.

    Returns:
        ``("NodeExecutionError", description)``, or None for a text that is not nipype's
        crash text (or on any internal error: never raises).

    .. versionadded:: 0.2.0
    """
    try:
        text = _bounded(safe_str(text))
        failure = _parse_node_text(text)
        if failure is None:
            return None
        return "NodeExecutionError", _describe(failure, _builtin_of_text(failure, text))
    except Exception:
        return None


#: The presets by name: a function from an exception to an :data:`ErrorClass` or None.
PRESETS: dict[str, Callable[[BaseException], ErrorClass | None]] = {"nipype": nipype}
