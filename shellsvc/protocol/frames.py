"""Frames: one JSON object per line.

JSON escapes every newline inside strings, so a frame never spans lines and a reader
only has to split on ``\\n``. Non-ASCII text is escaped too (``ensure_ascii``), which
keeps frames byte-for-byte identical whatever encoding the SSH channel was opened with.
A frame larger than :data:`MAX_FRAME` is a protocol error: a peer cannot make the other
side buffer without limit.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_FRAME", "PROTOCOL", "SUBSYSTEM", "VERSION", "FrameDecoder", "ProtocolError", "encode"]

#: The SSH subsystem name (``ssh -s host shellsvc``).
SUBSYSTEM = "shellsvc"
#: The protocol name announced in ``hello``.
PROTOCOL = "shellsvc"
#: The protocol version this code speaks; a peer announcing another one is refused.
VERSION = 1
#: Longest frame accepted, in characters (code sent for ``eval`` is bounded by it too).
MAX_FRAME = 16 * 1024 * 1024


class ProtocolError(ValueError):
    """The peer sent something that is not a valid frame; the channel is closed."""


def encode(message: dict[str, Any]) -> str:
    """One frame, newline included."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), default=str) + "\n"


class FrameDecoder:
    """Splits received text into decoded frames; feed it whatever the channel delivers."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._partial: list[str] = []
        self._partial_size = 0

    def feed(self, data: str) -> list[dict[str, Any]]:
        """The complete frames in ``data`` (plus what was left over from earlier calls).

        Raises :class:`ProtocolError` for a line that is not a JSON object with a string
        ``type``, or that is longer than ``max_frame``.
        """
        messages: list[dict[str, Any]] = []
        start = 0
        while True:
            end = data.find("\n", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self._partial:
                self._partial.append(piece)
                piece = "".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
            if len(piece) > self.max_frame:
                raise ProtocolError(f"frame of {len(piece)} characters exceeds the limit of {self.max_frame}")
            if piece.strip():
                messages.append(decode(piece))
        rest = data[start:]
        if rest:
            self._partial.append(rest)
            self._partial_size += len(rest)
            if self._partial_size > self.max_frame:
                raise ProtocolError(f"unterminated frame exceeds the limit of {self.max_frame} characters")
        return messages

    @property
    def pending(self) -> int:
        """Characters received after the last complete frame."""
        return self._partial_size


def decode(line: str) -> dict[str, Any]:
    """One frame's JSON object; raises :class:`ProtocolError` when it is not one."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"frame is not valid JSON ({exc}): {line[:80]!r}") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise ProtocolError(f"frame is nested too deeply to decode: {line[:80]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame must be a JSON object, got {type(message).__name__}: {line[:80]!r}")
    if not isinstance(message.get("type"), str):
        raise ProtocolError(f"frame has no string 'type' field: {line[:80]!r}")
    return message
