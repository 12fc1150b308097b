"""The one place that reads a private internal of the standard library.

``logging`` offers no public way to ask whether the calling thread holds its module
lock, and ``dictConfig`` holds it while it closes the old handlers. A handler's
``close()`` flushes; the worker may need that lock to log (a logger's level cache,
emptied by ``dictConfig``, is refilled under it), so waiting there could only end at the
deadline. tests/test_stdlib.py fails loudly on a Python where this stops working.
"""

from __future__ import annotations

import logging

__all__ = ["logging_lock_held"]


def logging_lock_held() -> bool:
    """True when the calling thread holds ``logging``'s module lock (``dictConfig`` does)."""
    lock = getattr(logging, "_lock", None)
    is_owned = getattr(lock, "_is_owned", None)
    if is_owned is None:
        return False
    try:
        return bool(is_owned())
    except Exception:
        return False
