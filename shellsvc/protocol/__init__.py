"""The ``shellsvc`` SSH subsystem protocol, shared by the server and the client.

Framed, versioned JSON lines: one JSON object per ``\\n``-terminated line, every object
with a ``type``. See docs/client.md for the full reference. The pieces:

* :mod:`.frames` - encoding, the incremental :class:`FrameDecoder`, limits, version;
* :mod:`.messages` - the message types, their fields, and :func:`check_request`.
"""

from __future__ import annotations

from .frames import MAX_FRAME, PROTOCOL, SUBSYSTEM, VERSION, FrameDecoder, ProtocolError, encode
from .messages import (
    ADMIN_REQUESTS,
    ERROR_CODES,
    OPERATOR_REQUESTS,
    REQUEST_FIELDS,
    TOPICS,
    RequestError,
    check_request,
    error_reply,
    is_integer,
    valid_patch_name,
)

__all__ = [
    "ADMIN_REQUESTS",
    "ERROR_CODES",
    "MAX_FRAME",
    "OPERATOR_REQUESTS",
    "PROTOCOL",
    "REQUEST_FIELDS",
    "SUBSYSTEM",
    "TOPICS",
    "VERSION",
    "FrameDecoder",
    "ProtocolError",
    "RequestError",
    "check_request",
    "encode",
    "error_reply",
    "is_integer",
    "valid_patch_name",
]
