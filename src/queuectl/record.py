"""`Record`: immutable value objects without the `dataclasses` import.

`dataclasses` imports `inspect`, which alone costs about 0.8x a bare Python
start-up here; on the path of a single `queuectl enqueue` that is a quarter of
the whole budget (bench/, a). Records behave like frozen, keyword-only
dataclasses: fields come from the class annotations (with class-level
defaults), equality and hashing are by value, and `replace()` makes a changed
copy. Type checkers see them as dataclasses through `dataclass_transform`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self, dataclass_transform
else:

    def dataclass_transform(**_options: object) -> object:
        return lambda cls: cls


_MISSING = object()


@dataclass_transform(frozen_default=True, kw_only_default=True)
class Record:
    """Base of immutable value objects; see the module docstring."""

    _fields: tuple[str, ...] = ()
    _field_set: frozenset[str] = frozenset()
    _defaults: dict[str, object] = {}  # noqa: RUF012 - set per subclass, never mutated

    def __init_subclass__(cls) -> None:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            # Not inspect.get_annotations: importing `inspect` is what we avoid here.
            for name in klass.__dict__.get("__annotations__", {}):  # noqa: RUF063
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._fields = tuple(names)
        cls._field_set = frozenset(names)
        cls._defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}

    def __init__(self, **values: Any) -> None:
        if values.keys() != self._field_set:  # defaults to fill in, or a caller's mistake
            unknown = values.keys() - self._field_set
            if unknown:
                raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
            for name in self._fields:
                if name in values:
                    continue
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__} needs {name!r}")
                values[name] = self._defaults[name]
        # Straight into the instance dict: __setattr__ refuses, and one update is
        # several times faster than a call per field (a worker builds a Job per claim).
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({body})"

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed."""
        return type(self)(**{**{n: getattr(self, n) for n in self._fields}, **changes})

    def fields(self) -> dict[str, Any]:
        """Field names to values, in declaration order."""
        return {name: getattr(self, name) for name in self._fields}
