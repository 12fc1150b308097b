"""A small base for immutable value classes, without ``dataclasses``.

``dataclasses`` builds every method of every class with ``exec`` when the module that
defines the class is imported, and imports ``inspect``: about 1 ms per class and 4 ms for
the module, paid by every application that configures a handler. Value classes here
declare their fields once (``__slots__``) and write their ``__init__``; this base gives
them what ``@dataclass(frozen=True, slots=True)`` would: immutability, equality and
hashing by fields, a readable ``repr`` and ``_replace``.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["Frozen"]

_T = TypeVar("_T", bound="Frozen")


class Frozen:
    """Immutable value: fields are the class's ``__slots__``, set once in ``__init__``."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"cannot assign to field {name!r}: {type(self).__name__} is immutable"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def _set(self, name: str, value: Any) -> None:
        """Set a field (for ``__init__`` only)."""
        object.__setattr__(self, name, value)

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        names: tuple[str, ...] = cls.__slots__
        return names

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Frozen) and other.__class__ is self.__class__:
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._fields()))

    def __repr__(self) -> str:
        values = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names())
        return f"{type(self).__name__}({values})"

    def _replace(self: _T, **changes: Any) -> _T:
        """A copy with some fields changed (through ``__init__``, so it is re-checked)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self._names()}
        values.update(changes)
        return type(self)(**values)
