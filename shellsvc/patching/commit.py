"""Write a hot swap back into the source file, so it survives a restart without the journal.

The ``def`` (or the class's methods) is located in the module's file by qualname with
:mod:`ast`, replaced textually (comments elsewhere in the file are untouched, the
original decorators stay), checked to compile, and written atomically after a backup.
The cached bytecode is removed so the next import reads the new text.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from .errors import PatchError, PatchRefused

__all__ = ["commit_source"]

_DefNode = ast.FunctionDef | ast.AsyncFunctionDef


def _module_file(module_name: str) -> Path:
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if not filename or not filename.endswith(".py"):
        raise PatchRefused(f"module {module_name!r} has no .py source file to commit to")
    return Path(filename)


def _find(tree: ast.Module, qualname: str) -> ast.AST:
    node: ast.AST = tree
    for part in qualname.split("."):
        if part == "<locals>":
            raise PatchRefused(f"{qualname} is defined inside a function; commit it by editing the enclosing function")
        body = getattr(node, "body", [])
        matches = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part]
        if not matches:
            raise PatchRefused(f"cannot find {qualname} in the source file (looked for {part!r})")
        node = matches[-1]  # the last definition wins at import time
    return node


def _def_text(source: str, name: str, indent: int) -> list[str]:
    """The ``def`` from ``source`` without decorators, renamed to ``name``, indented."""
    tree = ast.parse(textwrap.dedent(source))
    fdef = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    lines = textwrap.dedent(source).splitlines()[fdef.lineno - 1 : fdef.end_lineno]
    lines[0] = re.sub(r"^(\s*(?:async\s+)?def\s+)\w+", lambda m: m.group(1) + name, lines[0], count=1)
    return [(" " * indent + line) if line.strip() else "" for line in lines]


def _replace(lines: list[str], node: _DefNode, new: list[str]) -> None:
    lines[node.lineno - 1 : node.end_lineno] = new  # type: ignore[misc]


def commit_source(module_name: str, qualname: str, kind: str, after_source: str, patch_id: int) -> tuple[Path, Path]:
    """Write the patched definition into the module's file; returns ``(file, backup)``."""
    path = _module_file(module_name)
    try:
        return _commit(path, qualname, kind, after_source, patch_id)
    except OSError as exc:
        raise PatchError(f"cannot commit patch #{patch_id} to {path}: {exc.strerror or exc}; file unchanged") from exc


def _commit(path: Path, qualname: str, kind: str, after_source: str, patch_id: int) -> tuple[Path, Path]:
    original = path.read_text(encoding="utf-8")
    tree = ast.parse(original, str(path))
    lines = original.splitlines()
    target = _find(tree, qualname)
    if kind == "function":
        if not isinstance(target, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise PatchRefused(f"{qualname} in {path} is not a function")
        _replace(lines, target, _def_text(after_source, target.name, target.col_offset))
    elif kind == "class":
        if not isinstance(target, ast.ClassDef):
            raise PatchRefused(f"{qualname} in {path} is not a class")
        _commit_class(lines, target, after_source)
    else:
        raise PatchRefused(f"cannot commit a patch of kind {kind!r}")
    text = "\n".join(lines) + "\n"
    try:
        compile(text, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise PatchError(f"committing patch #{patch_id} would leave {path} unable to compile ({exc}); file unchanged") from exc
    backup = _backup_path(path, patch_id)
    shutil.copy2(path, backup)
    _atomic_write(path, text)
    cached = importlib.util.cache_from_source(str(path))
    if os.path.exists(cached):
        os.unlink(cached)
    return path, backup


def _commit_class(lines: list[str], cls: ast.ClassDef, after_source: str) -> None:
    new_tree = ast.parse(textwrap.dedent(after_source))
    new_cls = next(n for n in new_tree.body if isinstance(n, ast.ClassDef))
    dedented = textwrap.dedent(after_source)
    existing = {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    indent = cls.body[0].col_offset if cls.body else cls.col_offset + 4
    replacements: list[tuple[Any, list[str]]] = []
    appended: list[str] = []
    for node in new_cls.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        segment = "\n".join(dedented.splitlines()[start : node.end_lineno])
        if node.name in existing:
            replacements.append((existing[node.name], _def_text(segment, node.name, indent)))
        else:
            appended.extend([""] + [(" " * indent + line) if line.strip() else "" for line in textwrap.dedent(segment).splitlines()])
    end = cls.end_lineno or cls.lineno
    lines[end:end] = appended
    for node, new in sorted(replacements, key=lambda item: item[0].lineno, reverse=True):
        _replace(lines, node, new)


def _backup_path(path: Path, patch_id: int) -> Path:
    candidate = path.with_name(f"{path.name}.patch{patch_id}.bak")
    counter = 1
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.name}.patch{patch_id}.{counter}.bak")
    return candidate


def _atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
