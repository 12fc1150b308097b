"""A griffe extension that renders the Sphinx markup of this package's docstrings.

The docstrings follow the Google style, with a few reStructuredText habits that
mkdocstrings (Markdown) would otherwise print verbatim:

- roles such as ``:class:`~migas_logging.worker.Stats``` become cross-references
  (optional ones: a target that is not rendered on any page stays plain code, and a
  strict build does not fail on it);
- ``.. versionadded:: 0.1.0`` becomes a short "Added in version 0.1.0." line;
- a paragraph ending in ``::`` (a literal block follows) ends in ``:``.

Loaded by mkdocstrings through ``extensions`` in ``mkdocs.yml``; it changes only the
rendered documentation, never the package.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|data|mod|exc|obj):`(~?)([^`<>]+?)`")
_VERSION = re.compile(r"^(\s*)\.\. version(added|changed)::\s*(\S+)\s*$", re.MULTILINE)
_LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    kind, tilde, target = match.groups()
    target = target.strip()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    if kind in ("func", "meth"):
        shown += "()"
    if not target.startswith("migas_logging"):
        return f"`{shown}`"
    return (
        f'<autoref identifier="{html.escape(target)}" optional>'
        f"<code>{html.escape(shown)}</code></autoref>"
    )


def _version(match: re.Match[str]) -> str:
    indent, what, version = match.groups()
    verb = "Added" if what == "added" else "Changed"
    return f"{indent}*{verb} in version {version}.*"


def convert(text: str) -> str:
    """Turn the Sphinx markup of one docstring into Markdown."""
    text = _ROLE.sub(_role, text)
    text = _VERSION.sub(_version, text)
    return _LITERAL.sub(":", text)


class SphinxRoles(griffe.Extension):
    """Convert Sphinx roles and directives in every loaded docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
