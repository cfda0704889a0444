"""Name -> factory registries filled by decorators (timm's register_model, torchdistill's registries)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dait_edge.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of entries, each with a one-line description for `dait-edge list`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, description: str = "", aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            doc_lines = (obj.__doc__ or "").strip().splitlines()
            self._descriptions[name] = description or (doc_lines[0] if doc_lines else "")
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove an entry and its aliases (plugins that unload, tests that register a temporary entry)."""
        name = self.resolve(name)
        del self._entries[name], self._descriptions[name]
        self._aliases = {alias: target for alias, target in self._aliases.items() if target != name}

    def resolve(self, name: str) -> str:
        """Canonical name for `name` (an alias or a registered name); raises UserError if unknown."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(
            f"unknown {self.kind} {name!r}.{hint} Run `dait-edge list {self.kind}s` to see the choices."
        )

    def get(self, name: str) -> T:
        return self._entries[self.resolve(name)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def describe(self, name: str) -> str:
        return self._descriptions[self.resolve(name)]

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)
