"""``RemoteShell``: the ``shellsvc`` subsystem protocol from the client side.

One subsystem channel on an SSH connection. Requests are sent at once and answered
concurrently (a completion returns while an eval runs); each call awaits its own
``reply``. Frames nobody asked for - ``event`` pushes, output of background work
(``output`` with ``id: null``) - go to :attr:`RemoteShell.on_event` and
:attr:`RemoteShell.on_output`. The frame format is :mod:`shellsvc.protocol`, the same
module the server uses.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncssh

from shellsvc.protocol import SUBSYSTEM, VERSION, FrameDecoder, ProtocolError, encode

__all__ = ["EvalResult", "RemoteError", "RemoteShell"]

log = logging.getLogger(__name__)

#: ``(stream, text)``: "stdout" or "stderr" output of a request.
OutputCallback = Callable[[str, str], None]
#: Asked for one line for ``input()`` in remote code; None means end of input.
InputCallback = Callable[[str], Awaitable[str | None]]


class RemoteError(Exception):
    """The server refused or failed a request (``code`` from the protocol's error codes)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EvalResult:
    """How an eval ended. ``exit_code``: 0 ok, 1 uncaught exception, n for ``SystemExit(n)``."""

    status: str  # ok | error | exit | interrupted | timeout
    exit_code: int
    value: str | None = None
    error: str | None = None
    duration: float = 0.0


class _Channel(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    def __init__(self, shell: RemoteShell) -> None:
        self._shell = shell

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        self._shell._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._shell._lost(exc)


class RemoteShell:
    """A session in a shellsvc server, over its SSH subsystem. Use :meth:`open`."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.hello: dict[str, Any] = {}
        #: Output that belongs to no request (threads/tasks the session started).
        self.on_output: OutputCallback = _drop_output
        #: Pushed events: ``(topic, event)``.
        self.on_event: Callable[[str, dict[str, Any]], None] = lambda topic, event: None
        #: Called once when the channel closes (with the reason, or None).
        self.on_close: Callable[[Exception | None], None] = lambda exc: None
        self._chan: asyncssh.SSHClientChannel[str] | None = None
        self._decoder = FrameDecoder()
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._outputs: dict[int, OutputCallback] = {}
        self._inputs: dict[int, InputCallback] = {}
        self._greeting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection, *, timeout: float = 15.0) -> RemoteShell:
        """Open the subsystem channel and exchange hellos."""
        shell = cls(conn)
        try:
            chan, _ = await conn.create_session(lambda: _Channel(shell), subsystem=SUBSYSTEM, encoding="utf-8")
        except asyncssh.ChannelOpenError as exc:
            raise RemoteError("unavailable", f"the server refused the {SUBSYSTEM} subsystem ({exc.reason}); "
                                             "is it a shellsvc server, and does your key allow it?") from None
        shell._chan = chan
        hello = await asyncio.wait_for(asyncio.shield(shell._greeting), timeout)
        if hello.get("version") != VERSION:
            shell.close()
            raise RemoteError("version", f"the server speaks protocol version {hello.get('version')}, "
                                         f"this client {VERSION}; use matching shellsvc versions")
        shell.hello = hello
        shell._send({"type": "hello", "version": VERSION, "client": "shellsvc-client"})
        return shell

    @property
    def role(self) -> str:
        return str(self.hello.get("role", ""))

    # -- requests -------------------------------------------------------------------------------
    async def request(self, kind: str, *, output: OutputCallback | None = None,
                      on_input: InputCallback | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises RemoteError if it failed."""
        if self.closed.done():
            raise RemoteError("unavailable", "the connection to the server is closed")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        if output is not None:
            self._outputs[request_id] = output
        if on_input is not None:
            self._inputs[request_id] = on_input
        try:
            self._send({"type": kind, "id": request_id, **fields})
            reply = await future
        finally:
            self._replies.pop(request_id, None)
            self._outputs.pop(request_id, None)
            self._inputs.pop(request_id, None)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RemoteError(str(error.get("code", "failed")), str(error.get("message", "request failed")))
        return reply

    async def eval(self, code: str, *, output: OutputCallback | None = None, on_input: InputCallback | None = None,
                   timeout: float | None = None) -> EvalResult:
        """Run ``code`` in the server; output is streamed to ``output(stream, text)``."""
        fields: dict[str, Any] = {"code": code}
        if timeout is not None:
            fields["timeout"] = timeout
        reply = await self.request("eval", output=output or self.on_output, on_input=on_input, **fields)
        return EvalResult(status=reply.get("status", "error"), exit_code=int(reply.get("exit_code", 1)),
                          value=reply.get("value"), error=reply.get("error"), duration=reply.get("duration", 0.0))

    async def complete(self, text: str, cursor: int | None = None) -> list[dict[str, Any]]:
        fields: dict[str, Any] = {"text": text}
        if cursor is not None:
            fields["cursor"] = cursor
        return list((await self.request("complete", **fields))["completions"])

    async def interrupt(self, target: int | None = None) -> bool:
        """Interrupt the running eval/command (or request ``target``); False if nothing ran."""
        try:
            fields: dict[str, Any] = {} if target is None else {"target": target}
            await self.request("interrupt", **fields)
        except RemoteError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    async def command(self, line: str, *, output: OutputCallback | None = None) -> dict[str, Any]:
        """Run a console command line (operators; admins too)."""
        return await self.request("command", output=output or self.on_output, line=line)

    async def subscribe(self, topics: list[str]) -> list[str]:
        return list((await self.request("subscribe", topics=topics))["topics"])

    async def plugins(self) -> list[dict[str, Any]]:
        return list((await self.request("plugins"))["plugins"])

    async def patches(self) -> dict[str, Any]:
        return await self.request("patches")

    async def apply_patch(self, name: str, *, output: OutputCallback | None = None) -> list[int]:
        """Apply the patch file ``name`` from the server's patches directory; returns patch ids."""
        return list((await self.request("apply_patch", output=output or self.on_output, name=name))["applied"])

    async def rollback_patch(self, ids: list[int]) -> list[int]:
        """Roll back patches, in the order given (pass newest first)."""
        return list((await self.request("rollback_patch", ids=ids))["rolled_back"])

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    # -- frames from the server ------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        assert self._chan is not None
        self._chan.write(encode(message))

    def _received(self, data: str) -> None:
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            log.error("shellsvc server sent an invalid frame: %s", exc)
            self._lost(exc)
            self.close()
            return
        for message in messages:
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        request_id = message.get("id")
        if kind == "output":
            callback = self._outputs.get(request_id, self.on_output) if request_id is not None else self.on_output
            callback(str(message.get("stream", "stdout")), str(message.get("data", "")))
        elif kind == "reply":
            future = self._replies.get(request_id) if request_id is not None else None
            if future is not None and not future.done():
                future.set_result(message)
            elif request_id is None:  # a fatal error for the whole channel
                error = message.get("error") or {}
                self._lost(RemoteError(str(error.get("code", "protocol")), str(error.get("message", ""))))
        elif kind == "event":
            self.on_event(str(message.get("topic")), dict(message.get("event") or {}))
        elif kind == "input_request":
            asyncio.ensure_future(self._answer_input(message))
        elif kind == "hello":
            if not self._greeting.done():
                self._greeting.set_result(message)
        else:
            log.debug("ignoring unknown frame type %r from the server", kind)

    async def _answer_input(self, message: dict[str, Any]) -> None:
        ask = self._inputs.get(message.get("id"))  # type: ignore[arg-type]
        line: str | None = None
        if ask is not None:
            try:
                line = await ask(str(message.get("prompt", "")))
            except (EOFError, asyncio.CancelledError):
                line = None
        frame: dict[str, Any] = {"type": "input", "prompt_id": message.get("prompt_id")}
        if line is None:
            frame["eof"] = True
        else:
            frame["data"] = line if line.endswith("\n") else line + "\n"
        if not self.closed.done():
            self._send(frame)

    def _lost(self, exc: Exception | None) -> None:
        if self.closed.done():
            return
        self.closed.set_result(exc)
        reason = exc if isinstance(exc, RemoteError) else RemoteError(
            "unavailable", f"the connection to the server was lost{f' ({exc})' if exc else ''}")
        for future in self._replies.values():
            if not future.done():
                future.set_exception(reason)
        if not self._greeting.done():
            self._greeting.set_exception(reason)
        self.on_close(exc)


def _drop_output(stream: str, text: str) -> None:
    log.debug("unclaimed %s output from the server: %r", stream, text[:200])
