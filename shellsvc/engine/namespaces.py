"""Per-user interpreter namespaces.

One dict per user, shared by that user's concurrent sessions and kept for the life of
the service, so a reconnect finds its variables again while two users never see each
other's names.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["NamespaceRegistry", "Seed"]

#: What the host app hands in: fixed names, or a factory called once per new user.
Seed = Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None


class NamespaceRegistry:
    """Creates and keeps one namespace per user name."""

    def __init__(self, seed: Seed = None) -> None:
        self._seed = seed
        self._spaces: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._extra: dict[str, Any] = {}

    def get(self, user: str) -> dict[str, Any]:
        """Return ``user``'s namespace, creating it from the seed on first use."""
        with self._lock:
            space = self._spaces.get(user)
            if space is None:
                space = self._spaces[user] = self._new_namespace(user)
            return space

    def adopt(self, user: str, namespace: MutableMapping[str, Any]) -> None:
        """Use the caller's own dict as ``user``'s namespace (``embed(namespace=...)``)."""
        namespace.setdefault("__name__", "__shellsvc__")
        namespace.setdefault("__builtins__", builtins)
        with self._lock:
            for key, value in self._extra.items():
                namespace.setdefault(key, value)
            self._spaces[user] = namespace  # type: ignore[assignment]

    def add_names(self, names: Mapping[str, Any]) -> None:
        """Offer ``names`` to every namespace, present and future, unless a user rebound them."""
        with self._lock:
            self._extra.update(names)
            for space in self._spaces.values():
                for key, value in names.items():
                    space.setdefault(key, value)

    def users(self) -> list[str]:
        with self._lock:
            return sorted(self._spaces)

    def __contains__(self, user: object) -> bool:
        return user in self._spaces

    def __iter__(self) -> Iterator[str]:
        return iter(self.users())

    def __len__(self) -> int:
        return len(self._spaces)

    def _new_namespace(self, user: str) -> dict[str, Any]:
        space: dict[str, Any] = {
            "__name__": "__shellsvc__",
            "__doc__": None,
            "__builtins__": builtins,
        }
        seed = self._seed(user) if callable(self._seed) else self._seed
        if seed:
            space.update(seed)
        for key, value in self._extra.items():
            space.setdefault(key, value)
        return space

    def __repr__(self) -> str:
        return f"<NamespaceRegistry users={self.users()!r}>"
