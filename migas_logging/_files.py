"""Private directories for the spool and the machine budget.

A directory holds private files only if this user owns it and nobody else can write to
it: otherwise another user could read, plant or replace what is stored there. The last
component may be a symbolic link (``~/.cache`` pointing at a scratch disk is common on
clusters) but only one this user made. Files inside are opened with ``O_NOFOLLOW``, so
a link planted in the directory is never followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

__all__ = ["NOFOLLOW", "private_dir_problem"]

#: ``os.O_NOFOLLOW`` where the platform has it (opening a symbolic link then fails).
NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def _euid() -> int | None:
    geteuid = getattr(os, "geteuid", None)
    return geteuid() if geteuid is not None else None


def private_dir_problem(path: Path, *, create: bool) -> str | None:
    """Why ``path`` cannot hold private files, or None when it can.

    Args:
        path: The directory.
        create: Make it (mode 0700, and its missing parents) when it does not exist.
            Without it, a missing directory is a problem (``"does not exist"``).

    Returns:
        None, or a short reason such as ``"is writable by group or others"``.
        Never raises.
    """
    try:
        if create and not os.path.lexists(path):
            parent = path.parent
            if not parent.is_dir():
                os.makedirs(parent, mode=0o700, exist_ok=True)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass  # another process made it meanwhile
        info = os.lstat(path)
        uid = _euid()
        if stat.S_ISLNK(info.st_mode):
            if uid is not None and info.st_uid != uid:
                return "is a symbolic link made by another user"
            info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            return "is not a directory"
        if uid is not None and info.st_uid != uid:
            return "belongs to another user"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return "is writable by group or others"
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None
