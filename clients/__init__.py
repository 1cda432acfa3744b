"""``shellsvc-client``: a prompt_toolkit client for shellsvc over its SSH subsystem.

Interactive (local editing, server-side completion, events printed above the prompt),
scripting (``-c``/``-f``/stdin with the code's exit status), patch upload over SFTP, and
fan-out to many instances with a canary. See docs/client.md.

As a library::

    conn = await open_connection(parse_target("admin@app1"), ConnectOptions())
    shell = await RemoteShell.open(conn)
    result = await shell.eval("len(app.users)", output=lambda stream, text: print(text, end=""))
"""

from __future__ import annotations

from .connection import ConnectError, ConnectOptions, open_connection
from .fanout import Action, HostResult, fan_out, format_table, results_json
from .hostkeys import HostKeyError, HostKeyMismatch, HostKeyUnknown
from .remote import EvalResult, RemoteError, RemoteShell
from .target import DEFAULT_PORT, Target, parse_hosts, parse_target
from .upload import UploadError, upload_patch

__all__ = [
    "DEFAULT_PORT",
    "Action",
    "ConnectError",
    "ConnectOptions",
    "EvalResult",
    "HostKeyError",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "HostResult",
    "RemoteError",
    "RemoteShell",
    "Target",
    "UploadError",
    "fan_out",
    "format_table",
    "open_connection",
    "parse_hosts",
    "parse_target",
    "results_json",
    "upload_patch",
]
