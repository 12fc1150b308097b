"""Plain text tables for the command line (``check``, ``usage``, ``stored``, ``demo``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["cell", "line", "pairs", "table"]


def cell(value: Any, width: int = 60) -> str:
    """``value`` on one line, cut to ``width`` characters with ``…``; None is empty."""
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One row: each cell padded to its column's width, two spaces apart."""
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    width: int | Mapping[str, int] = 60,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A table: a header, a rule, then one line per row.

    Each column is as wide as its widest cell, at most ``width`` (one number for every
    column, or one per column name).

    Args:
        rows: The rows, as mappings from column name to value.
        columns: The column names, in order.
        width: The widest a cell may be.
        headers: A header to show instead of a column's name.
    """
    names = [(headers or {}).get(c, c) for c in columns]
    caps = [width.get(c, 60) if isinstance(width, Mapping) else width for c in columns]
    cells = [names] + [
        [cell(row.get(c), cap) for c, cap in zip(columns, caps, strict=True)] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [line(r, widths) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pairs(result: Mapping[str, Any]) -> str:
    """Aligned ``key  value`` lines."""
    width = max(len(k) for k in result)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}" for k, v in result.items())
