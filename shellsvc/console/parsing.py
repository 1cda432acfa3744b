"""Turning an operator's line into words and typed values - and refusing everything else.

The line is checked before it is split: a length limit, no control or format characters
(NUL, escape sequences, bidi overrides, zero-width joiners), and no unquoted shell
operators or Python punctuation. Nothing here evaluates anything: words are split with
POSIX shell quoting rules (:mod:`shlex`) and converted by small, strict converters
(ASCII digits only, finite floats, a fixed set of boolean words).
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import InputRejected, UsageError

__all__ = [
    "MAX_LINE_LENGTH",
    "MAX_WORD_LENGTH",
    "check_line",
    "convert",
    "did_you_mean",
    "quote_for_display",
    "split_line",
]

#: Longest line the console accepts; longer input is refused, not truncated.
MAX_LINE_LENGTH = 4096
#: Longest single word (after unquoting) for a ``str`` argument unless the command says otherwise.
MAX_WORD_LENGTH = 1024
#: Most words in one line.
MAX_WORDS = 64

_OPERATOR_HINTS = {
    ";": "shell operators are not supported: one command per line, nothing runs in a shell",
    "|": "shell operators are not supported: one command per line, nothing runs in a shell",
    "&": "shell operators are not supported: one command per line, nothing runs in a shell",
    "<": "redirections are not supported: nothing runs in a shell",
    ">": "redirections are not supported: nothing runs in a shell",
    "`": "command substitution is not supported: nothing runs in a shell",
    "$": "there is no variable expansion; quote the word if you mean a literal '$'",
    "(": "this console runs allow-listed commands, not Python; type help",
    ")": "this console runs allow-listed commands, not Python; type help",
}

_INT_RE = re.compile(r"[+-]?[0-9]{1,30}")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?")
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n"})


def quote_for_display(word: str, limit: int = 40) -> str:
    """``repr`` of user input, shortened: safe to print (escapes) and to put on one line."""
    if len(word) > limit:
        return repr(word[:limit]) + "..."
    return repr(word)


def _forbidden_character(char: str) -> str | None:
    if char == "\t":
        return None
    category = unicodedata.category(char)
    if category[0] == "C":  # Cc control, Cf format (bidi, zero-width), Cs, Co, Cn
        return {"Cc": "control", "Cf": "invisible formatting", "Cs": "surrogate",
                "Co": "private-use", "Cn": "unassigned"}[category]
    if category in ("Zl", "Zp"):
        return "line separator"
    return None


def check_line(line: str, *, max_length: int = MAX_LINE_LENGTH) -> None:
    """Refuse a line that is too long, has control/format characters or unquoted operators."""
    if len(line) > max_length:
        raise InputRejected(f"line too long ({len(line)} characters, the limit is {max_length})",
                            hint="nothing was run")
    for column, char in enumerate(line, 1):
        kind = _forbidden_character(char)
        if kind is not None:
            raise InputRejected(f"{kind} character U+{ord(char):04X} at column {column} is not allowed",
                                hint="type plain text; nothing was run")
    quote: str | None = None
    escaped = False
    for column, char in enumerate(line, 1):
        if escaped:
            escaped = False
        elif quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            escaped = True
        elif quote == '"':
            if char == '"':
                quote = None
            elif char in "`$":
                raise InputRejected(f"{char!r} at column {column} is not allowed inside double quotes",
                                    hint="use single quotes for a literal value")
        elif char in "'\"":
            quote = char
        elif char in _OPERATOR_HINTS:
            raise InputRejected(f"unexpected {char!r} at column {column}", hint=_OPERATOR_HINTS[char])


def split_line(line: str) -> list[str]:
    """Check ``line`` and split it into words with POSIX shell quoting rules (no expansion)."""
    check_line(line)
    try:
        words = shlex.split(line, comments=False, posix=True)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise InputRejected(f"cannot split the line: {str(exc).lower()}",
                            hint="close the quote or remove the trailing backslash") from None
    if len(words) > MAX_WORDS:
        raise InputRejected(f"too many words ({len(words)}, the limit is {MAX_WORDS})")
    return words


def did_you_mean(word: str, candidates: Iterable[str], *, limit: int = 3) -> list[str]:
    """Close matches for ``word``; also catches look-alikes (full-width letters and the like)."""
    pool = sorted(set(candidates))
    folded = unicodedata.normalize("NFKC", word).casefold()
    exact = [c for c in pool if c.casefold() == folded]
    close = difflib.get_close_matches(folded, pool, n=limit, cutoff=0.6)
    prefixed = [c for c in pool if folded and c.startswith(folded)]
    seen: dict[str, None] = {}
    for candidate in [*exact, *close, *prefixed]:
        seen.setdefault(candidate, None)
    return list(seen)[:limit]


def suggestion_hint(word: str, candidates: Iterable[str], fallback: str | None = None) -> str | None:
    """``did you mean 'x'?`` (or ``fallback`` when nothing is close)."""
    matches = did_you_mean(word, candidates)
    if matches:
        return "did you mean " + " or ".join(repr(m) for m in matches) + "?"
    return fallback


# -- conversion ---------------------------------------------------------------------------------

def convert(value: str, target: Any, *, what: str) -> Any:
    """Convert one word to ``target`` (int, float, bool, str, Path, an Enum class).

    ``what`` names the argument in the error message. Raises :class:`UsageError`.
    """
    if target is str:
        return value
    if target is bool:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(f"{what}: expected yes or no, got {quote_for_display(value)}",
                         hint="one of: yes, no, true, false, on, off, 1, 0")
    if target is int:
        if not _INT_RE.fullmatch(value):
            raise UsageError(f"{what}: expected a whole number, got {quote_for_display(value)}",
                             hint="ASCII digits, for example 10")
        return int(value)
    if target is float:
        if not _FLOAT_RE.fullmatch(value):
            raise UsageError(f"{what}: expected a number, got {quote_for_display(value)}",
                             hint="for example 2.5 or 1e-3")
        number = float(value)
        if not math.isfinite(number):
            raise UsageError(f"{what}: {quote_for_display(value)} is out of range")
        return number
    if target is Path:
        if not value:
            raise UsageError(f"{what}: expected a path, got an empty word")
        return Path(value)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return _convert_enum(value, target, what=what)
    raise TypeError(f"no converter for {target!r}")  # prevented when the command is declared


def enum_words(enum_class: type[enum.Enum]) -> list[str]:
    """The words an operator types for ``enum_class``: string values, else lower-case names."""
    return [m.value if isinstance(m.value, str) else m.name.lower() for m in enum_class]


def _convert_enum(value: str, enum_class: type[enum.Enum], *, what: str) -> enum.Enum:
    for member in enum_class:
        if value == member.name or value.lower() == member.name.lower():
            return member
        if isinstance(member.value, str) and value == member.value:
            return member
    words = enum_words(enum_class)
    raise UsageError(f"{what}: {quote_for_display(value)} is not one of {', '.join(words)}",
                     hint=suggestion_hint(value, words))


def check_choice(value: Any, word: str, choices: Sequence[Any], *, what: str) -> None:
    """Refuse ``value`` unless it is one of ``choices`` (compared as typed values)."""
    if value in choices:
        return
    shown = [str(c) for c in choices]
    listing = ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "")
    raise UsageError(f"{what}: {quote_for_display(word)} is not one of: {listing or '(none available)'}",
                     hint=suggestion_hint(word, shown))
