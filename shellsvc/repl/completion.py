"""Completion over a live namespace that never runs the app's code.

Attribute chains are resolved with ``inspect.getattr_static``: a property, or any other
descriptor that would execute code, stops the chain instead of being evaluated. Dict key
completion only looks into real ``dict`` instances.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

__all__ = ["NamespaceCompleter"]

_DOTTED = re.compile(r"([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\.(\w*)$")
_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)$")
_DICT_KEY = re.compile(r"([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\[\s*(['\"])([^'\"]*)$")

_MISSING = object()
_SAFE_DESCRIPTORS = (staticmethod, classmethod)


def _static_attr(obj: Any, name: str) -> Any:
    """``obj.name`` if it can be read without running user code, else ``_MISSING``."""
    if isinstance(obj, Mapping) and not isinstance(obj, dict):
        return _MISSING
    try:
        value = inspect.getattr_static(obj, name)
    except AttributeError:
        return _MISSING
    if inspect.ismodule(obj) or isinstance(obj, type) and not hasattr(value, "__get__"):
        return value
    if isinstance(value, _SAFE_DESCRIPTORS):
        return value.__func__
    if hasattr(value, "__get__") and not inspect.isfunction(value) and not inspect.isbuiltin(value):
        # A property or custom descriptor: reading it would run code.
        return _MISSING
    return value


def _safe_dir(obj: Any) -> list[str]:
    names: set[str] = set()
    if isinstance(obj, type):
        for klass in obj.__mro__:
            names.update(vars(klass))
    else:
        namespace = getattr(obj, "__dict__", None)
        if isinstance(namespace, dict):
            names.update(namespace)
        for klass in type(obj).__mro__:
            names.update(vars(klass))
    return sorted(n for n in names if isinstance(n, str))


class NamespaceCompleter(Completer):
    """Completes names, attributes and dict keys against a live namespace."""

    def __init__(self, get_namespace: Callable[[], Mapping[str, Any]]) -> None:
        self.get_namespace = get_namespace

    def resolve(self, dotted: str) -> Any:
        """Resolve ``a.b.c`` statically; ``_MISSING`` when any step would run code."""
        namespace = self.get_namespace()
        head, *rest = dotted.split(".")
        if head in namespace:
            obj = namespace[head]
        elif hasattr(builtins, head):
            obj = getattr(builtins, head)
        else:
            return _MISSING
        for part in rest:
            obj = _static_attr(obj, part)
            if obj is _MISSING:
                return _MISSING
        return obj

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        match = _DICT_KEY.search(text)
        if match:
            yield from self._dict_keys(match.group(1), match.group(2), match.group(3))
            return
        match = _DOTTED.search(text)
        if match:
            yield from self._attributes(match.group(1), match.group(2))
            return
        match = _NAME.search(text)
        if match:
            yield from self._names(match.group(1))

    def _names(self, prefix: str) -> Iterable[Completion]:
        candidates = set(self.get_namespace()) | set(dir(builtins)) | set(keyword.kwlist)
        for name in sorted(candidates):
            if name.startswith(prefix) and not name.startswith("__shellsvc"):
                if name.startswith("_") and not prefix.startswith("_"):
                    continue
                yield Completion(name, -len(prefix))

    def _attributes(self, dotted: str, prefix: str) -> Iterable[Completion]:
        obj = self.resolve(dotted)
        if obj is _MISSING:
            return
        for name in _safe_dir(obj):
            if name.startswith(prefix):
                if name.startswith("_") and not prefix.startswith("_"):
                    continue
                yield Completion(name, -len(prefix))

    def _dict_keys(self, dotted: str, quote: str, prefix: str) -> Iterable[Completion]:
        obj = self.resolve(dotted)
        if not isinstance(obj, dict):
            return
        for key in list(obj)[:1000]:
            if isinstance(key, str) and key.startswith(prefix):
                yield Completion(key + quote + "]", -len(prefix), display=repr(key))
