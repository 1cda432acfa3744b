"""The messages of protocol version 1 and the checks both sides apply to them.

Client to server, every request but ``hello`` and ``input`` carries an integer ``id``
the client chooses; the server answers each with exactly one ``reply`` frame carrying
the same ``id`` (``ok`` true with the result's fields, or ``ok`` false with an
``error`` object). ``eval`` and ``command`` stream ``output`` frames before their reply.
Server to client, unprompted: ``hello`` (first), ``event`` (subscribed topics),
``output`` with ``id: null`` (threads and tasks a session started, printing later) and
``input_request`` (code waiting in ``input()``). docs/client.md has the reference.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "valid_patch_name",
    "ADMIN_REQUESTS",
    "ERROR_CODES",
    "OPERATOR_REQUESTS",
    "REQUEST_FIELDS",
    "TOPICS",
    "RequestError",
    "check_request",
    "error_reply",
    "is_integer",
]

_NUMBER = (int, float)

#: Request type -> {field: (accepted types, required)}. ``id`` is checked separately.
REQUEST_FIELDS: dict[str, dict[str, tuple[Any, bool]]] = {
    "hello": {"version": (int, True), "client": (str, False)},
    "ping": {},
    "eval": {"code": (str, True), "timeout": (_NUMBER, False)},
    "complete": {"text": (str, True), "cursor": (int, False)},
    "interrupt": {"target": (int, False)},
    "input": {"prompt_id": (int, True), "data": (str, False), "eof": (bool, False)},
    "subscribe": {"topics": (list, True)},
    "unsubscribe": {"topics": (list, True)},
    "command": {"line": (str, True)},
    "plugins": {},
    "patches": {},
    "apply_patch": {"name": (str, True)},
    "rollback_patch": {"ids": (list, True)},
}

#: Requests without an ``id`` (they get no reply unless they are refused).
_NO_ID = frozenset({"hello", "input"})

#: What each role may send. Operators never reach Python: no eval, no patches.
OPERATOR_REQUESTS = frozenset({"hello", "ping", "complete", "interrupt", "subscribe", "unsubscribe", "command"})
ADMIN_REQUESTS = frozenset(REQUEST_FIELDS)

#: Topics of ``event`` frames a client can subscribe to.
TOPICS = ("runtime", "patches")

#: ``error.code`` values of a failed reply.
ERROR_CODES = {
    "protocol": "the frame could not be understood; the server closes the channel",
    "version": "the client speaks a protocol version the server does not",
    "hello_required": "the first frame must be hello",
    "unknown_request": "no such request type",
    "bad_request": "a field is missing or has the wrong type",
    "forbidden": "the user's role may not make this request",
    "not_found": "the named thing (patch file, patch id, running request) does not exist",
    "conflict": "the request clashes with the current state (e.g. a patch with later patches on top)",
    "failed": "the request was valid but did not succeed; the message says why",
    "unavailable": "the service has no such component (no runtime, no patch manager)",
}


#: A patch file name (``apply_patch``, uploads): a plain name, no directories, not hidden.
_PATCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


def valid_patch_name(name: str) -> bool:
    """Whether ``name`` may name a file in the patches directory."""
    return bool(_PATCH_NAME.fullmatch(name))


class RequestError(Exception):
    """A request the server refuses; becomes a failed ``reply`` (``code`` in ERROR_CODES)."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


def check_request(message: dict[str, Any]) -> dict[str, Any]:
    """Validate a client frame's type, ``id`` and fields; returns it or raises RequestError."""
    kind = message["type"]
    fields = REQUEST_FIELDS.get(kind)
    if fields is None:
        shown = kind if len(kind) <= 64 else kind[:64] + "..."  # never echo a 16 MiB type back
        raise RequestError("unknown_request", f"unknown request type {shown!r}; known: {', '.join(sorted(REQUEST_FIELDS))}")
    if kind not in _NO_ID and not is_integer(message.get("id")):
        raise RequestError("bad_request", f"{kind}: 'id' must be an integer")
    for name, (types, required) in fields.items():
        value = message.get(name)
        if value is None:
            if required:
                raise RequestError("bad_request", f"{kind}: missing field {name!r}")
            continue
        if isinstance(value, bool) and types is not bool or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise RequestError("bad_request", f"{kind}: field {name!r} must be {expected}, got {type(value).__name__}")
        if types is _NUMBER and not (math.isfinite(value) and value > 0):  # JSON may carry NaN and Infinity
            raise RequestError("bad_request", f"{kind}: field {name!r} must be a positive finite number, got {value!r}")
    return message


def error_reply(request_id: Any, code: str, message: str) -> dict[str, Any]:
    """The ``reply`` frame for a refused or failed request."""
    return {"type": "reply", "id": request_id, "ok": False, "error": {"code": code, "message": message}}


def is_integer(value: Any) -> bool:
    """An int that is not a bool (JSON ``true`` must not pass as request id 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
