"""The server side of the ``shellsvc`` SSH subsystem (the protocol in :mod:`shellsvc.protocol`).

One :class:`SubsystemSession` per channel. It takes the channel's input from the moment
the session starts, answers requests concurrently (a completion is answered while an
eval runs), and runs evals one at a time, in order, on the admin's own
:class:`~shellsvc.engine.ExecSession` - so the REPL's guarantees hold: user code runs in
a worker thread, Ctrl-C (an ``interrupt`` request or an SSH signal) interrupts it, and
each eval is audited through :func:`run_audited` exactly like an exec request.
Operators get the console: ``command`` and its completion, never ``eval``.

Every request is audited (``subsystem_request``; refusals with ``denied``), before it is
acted on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncssh

from shellsvc import __version__
from shellsvc.engine import ExecSession, SessionIO
from shellsvc.engine.bridge import on_loop_thread
from shellsvc.engine.streams import install as install_streams
from shellsvc.engine.streams import use_io
from shellsvc.patching import PatchConflict, PatchError, PatchNotFound, current_user
from shellsvc.protocol import (
    ADMIN_REQUESTS,
    OPERATOR_REQUESTS,
    PROTOCOL,
    TOPICS,
    VERSION,
    FrameDecoder,
    ProtocolError,
    RequestError,
    check_request,
    encode,
    error_reply,
    is_integer,
)

from .channelio import may_overshoot, unsent_bytes, wait_from_thread
from .context import SessionContext
from .execution import open_exec_session, run_audited
from .upload import PatchFileError, apply_patch_file, patch_directory

if TYPE_CHECKING:
    from shellsvc.console import Console
    from shellsvc.runtime import RuntimeEvent

    from .service import Service

__all__ = ["FrameWriter", "PushHub", "SubsystemSession", "hub_for"]

log = logging.getLogger(__name__)

#: Output written by worker threads but not yet sent before they wait for the client.
HIGH_WATER = 256 * 1024
#: Most completions sent for one request.
MAX_COMPLETIONS = 500

_CURRENT = object()


# -- push events -----------------------------------------------------------------------------------

Listener = Callable[[str, dict[str, Any]], None]


class PushHub:
    """Fans the service's runtime and patch events out to subscribed subsystem channels.

    It subscribes to the runtime and to the patch manager only while at least one channel
    listens. Patch events come from every path (REPL ``patch()``, console, protocol) and
    from any thread; ``SubsystemSession._push`` hands them to the loop.
    """

    def __init__(self, service: Service) -> None:
        self._service = service
        self._listeners: list[Listener] = []
        self._subscription: Any = None
        self._patch_subscription: Any = None

    def add(self, listener: Listener) -> None:
        if listener in self._listeners:
            return
        self._listeners.append(listener)
        runtime = self._service.runtime
        if self._subscription is None and runtime is not None:
            self._subscription = runtime.subscribe(self._runtime_event)
        manager = getattr(self._service, "patches", None)
        if self._patch_subscription is None and manager is not None:
            self._patch_subscription = manager.subscribe(self._patch_event)

    def remove(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners:
            for subscription in (self._subscription, self._patch_subscription):
                if subscription is not None:
                    subscription.close()
            self._subscription = self._patch_subscription = None

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(topic, event)
            except Exception:  # noqa: BLE001 - one broken channel must not starve the others
                log.exception("subsystem: delivering a %s event failed", topic)

    def _runtime_event(self, event: RuntimeEvent) -> None:
        self.publish("runtime", {
            "kind": event.kind, "plugin": event.name, "path": str(event.path) if event.path else None,
            "generation": event.generation, "error": str(event.error) if event.error else None,
            "file": event.file, "line": event.line, "time": event.time, "text": str(event),
        })

    def _patch_event(self, event: Any) -> None:
        self.publish("patches", event.to_dict())


_hubs: weakref.WeakKeyDictionary[Service, PushHub] = weakref.WeakKeyDictionary()


def hub_for(service: Service) -> PushHub:
    """The service's hub (one per service, made on first use)."""
    hub = _hubs.get(service)
    if hub is None:
        hub = _hubs[service] = PushHub(service)
    return hub


# -- output ----------------------------------------------------------------------------------------

class FrameWriter:
    """Sends frames on one channel: ``output`` text from any thread, other frames from the loop.

    Output is buffered and coalesced into one frame per run of the same request and
    stream, once per loop iteration. Worker threads wait while too much is unsent (in
    this buffer or in the channel's), so a print loop is throttled to what the client
    reads. Frames sent with :meth:`send` go out after all output written before them.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[str], loop: asyncio.AbstractEventLoop, *,
                 high_water: int = HIGH_WATER) -> None:
        self._chan = chan
        self._loop = loop
        self._high_water = high_water
        self._cond = threading.Condition()
        self._pending: list[tuple[int | None, str, str]] = []
        self._size = 0
        self._scheduled = False
        self.closed = False
        #: The request output is attributed to when the writer does not name one (the running eval).
        self.request_id: int | None = None

    def output(self, stream: str, text: str, request_id: Any = _CURRENT) -> None:
        """Queue ``text`` for ``stream`` ("stdout"/"stderr"); thread-safe."""
        if self.closed or not text:
            return
        on_loop = on_loop_thread(self._loop)
        with self._cond:
            if not on_loop:
                # Short waits, so an interrupt (an async exception) can land in this thread.
                while not self.closed and (self._size > self._high_water or self._backlogged()):
                    if may_overshoot(self._size + unsent_bytes(self._chan)):
                        break  # an interrupted command's traceback must not wait for the client
                    self._cond.wait(0.05)
                if self.closed:
                    return
            rid = self.request_id if request_id is _CURRENT else request_id
            self._pending.append((rid, stream, text))
            self._size += len(text)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            if on_loop:
                self._loop.call_soon(self.flush)
            else:
                self._loop.call_soon_threadsafe(self.flush)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self.close()

    def _backlogged(self) -> bool:
        return unsent_bytes(self._chan) > self._high_water

    def flush(self) -> None:
        """Send the buffered output now (loop thread)."""
        data = self._take()
        if data:
            self._write(data)

    def _take(self) -> str:
        """The buffered output as frames, and the buffer emptied."""
        with self._cond:
            pending, self._pending = self._pending, []
            self._size = 0
            self._scheduled = False
            self._cond.notify_all()
        return "".join(
            encode({"type": "output", "id": rid, "stream": stream, "data": "".join(item[2] for item in run)})
            for (rid, stream), run in itertools.groupby(pending, key=lambda item: (item[0], item[1])))

    def send(self, message: dict[str, Any]) -> None:
        """Send one frame after the output buffered so far (loop thread), in one write."""
        self._write(self._take() + encode(message))

    def _write(self, data: str) -> None:
        if self.closed:
            return
        try:
            self._chan.write(data)
        except (OSError, asyncssh.Error):
            self.close()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._pending.clear()
            self._size = 0
            self._cond.notify_all()


# -- the session -----------------------------------------------------------------------------------

class SubsystemSession:
    """The protocol on one session channel. Construct it when the session starts - it
    greets the client and takes the channel's input from then on - then await :meth:`run`."""

    def __init__(self, ctx: SessionContext, service: Service) -> None:
        self.ctx = ctx
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.writer = FrameWriter(ctx.chan, self.loop)
        self.allowed = ADMIN_REQUESTS if ctx.role == "admin" else OPERATOR_REQUESTS
        self._decoder = FrameDecoder()
        self._greeted = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._interrupted: set[int] = set()
        self._topics: set[str] = set()
        self._done = asyncio.Event()
        self._status = 0
        self._eval_lock = asyncio.Lock()
        self._running_eval: int | None = None
        self._prompts: dict[int, concurrent.futures.Future[str | None]] = {}
        self._prompt_ids = itertools.count(1)
        self._console: Console | None = None
        self._exec: ExecSession | None = None  # opened by the first eval
        self._completer: Any = None
        self.writer.send({
            "type": "hello", "protocol": PROTOCOL, "version": VERSION, "server": f"shellsvc/{__version__}",
            "user": ctx.user, "role": ctx.role, "session": ctx.label, "pid": os.getpid(),
            "python": sys.version.split()[0], "requests": sorted(self.allowed), "topics": list(TOPICS),
        })
        ctx.input_sink = self._received

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> int:
        """Serve until the client closes its side (EOF) or breaks the protocol."""
        ctx = self.ctx
        eof = asyncio.ensure_future(ctx.stdin.read_all())  # input goes to us; this only waits for EOF
        done = asyncio.ensure_future(self._done.wait())
        try:
            with contextlib.ExitStack() as stack:
                if ctx.role != "admin":  # console sessions are listed on the board (admins': by the engine)
                    stack.enter_context(self.service.board.opened(ctx.user, ctx.role, ctx.label, "subsystem", ctx.peer))
                await asyncio.wait([eof, done], return_when=asyncio.FIRST_COMPLETED)
                if self._tasks and not self._done.is_set():
                    await asyncio.gather(*self._tasks.values(), return_exceptions=True)  # EOF: finish what was asked
            return self._status
        finally:
            eof.cancel()
            done.cancel()
            ctx.input_sink = None
            hub_for(self.service).remove(self._push)
            for task in list(self._tasks.values()):
                task.cancel()
            for future in self._prompts.values():
                future.cancel()
            if self._exec is not None:
                await self._exec.close()
            self.writer.flush()
            self.writer.close()

    def _fail(self, code: str, message: str) -> None:
        """A fatal protocol error: tell the client, then end the session."""
        self.ctx.audit.write("subsystem_error", user=self.ctx.user, session=self.ctx.label, code=code,
                             message=message)
        self.writer.send(error_reply(None, code, message))
        self._status = 2
        self._done.set()

    # -- input -------------------------------------------------------------------------------
    def _received(self, data: str) -> None:
        if self._done.is_set():
            return
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._fail("protocol", str(exc))
            return
        for message in messages:
            if self._done.is_set():
                return
            try:
                self._dispatch(message)
            except Exception:  # a bug here must end this channel, not the whole connection
                log.exception("subsystem %s: internal error handling a %r frame", self.ctx.label, message.get("type"))
                self._fail("protocol", "internal server error handling the last frame; see the server log")

    def _dispatch(self, message: dict[str, Any]) -> None:
        raw_id = message.get("id")
        request_id = raw_id if is_integer(raw_id) else None
        kind = message["type"]
        try:
            check_request(message)
            if not self._greeted and kind != "hello":
                raise RequestError("hello_required", f"send hello (version {VERSION}) before {kind}")
            if kind not in self.allowed:
                hint = "; operators run console commands: send command" if kind in ADMIN_REQUESTS else ""
                raise RequestError("forbidden", f"{kind}: not permitted for role {self.ctx.role}{hint}")
            if request_id is not None and request_id in self._tasks:
                raise RequestError("bad_request", f"request id {request_id} is still in use")
        except RequestError as exc:
            self._audit(kind, request_id, message, denied=True, reason=exc.code)
            self.writer.send(error_reply(request_id, exc.code, exc.message))
            if exc.code == "hello_required":
                self._done.set()
                self._status = 2
            return
        if kind != "input":  # answers to input() are data for the running code, like stdin
            self._audit(kind, request_id, message)
        handler = getattr(self, "_do_" + kind)
        if kind in ("hello", "input", "interrupt", "subscribe", "unsubscribe", "ping"):
            try:
                result = handler(message)
            except RequestError as exc:
                self.writer.send(error_reply(request_id, exc.code, exc.message))
                return
            if request_id is not None and result is not None:
                self.writer.send({"type": "reply", "id": request_id, "ok": True, **result})
            return
        assert request_id is not None
        work = handler(message)
        task = self.loop.create_task(self._answer(request_id, work),
                                     name=f"shellsvc-subsystem-{self.ctx.label}-{request_id}-{kind}")
        task.add_done_callback(lambda done: self._cancelled_early(request_id, work, done))
        self._tasks[request_id] = task

    def _cancelled_early(self, request_id: int, work: Any, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran ``_answer``: answer for it."""
        if not task.cancelled():
            return
        work.close()
        self._tasks.pop(request_id, None)
        if request_id in self._interrupted:
            self._interrupted.discard(request_id)
            self.writer.send(_interrupted_reply(request_id))

    async def _answer(self, request_id: int, work: Awaitable[dict[str, Any]]) -> None:
        try:
            result = await work
            reply = {"type": "reply", "id": request_id, "ok": True, **result}
        except RequestError as exc:
            reply = error_reply(request_id, exc.code, exc.message)
        except asyncio.CancelledError:
            if request_id not in self._interrupted:
                raise
            reply = _interrupted_reply(request_id)
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
            log.exception("subsystem %s: request %d failed", self.ctx.label, request_id)
            reply = error_reply(request_id, "failed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._tasks.pop(request_id, None)
            self._interrupted.discard(request_id)
        self.writer.send(reply)

    def _audit(self, kind: str, request_id: int | None, message: dict[str, Any], **extra: Any) -> None:
        fields: dict[str, Any] = {}
        text = message.get({"eval": "code", "complete": "text", "command": "line"}.get(kind, ""))
        if kind in ("eval", "complete"):
            fields["length"] = len(text) if isinstance(text, str) else None
        elif kind == "command":
            fields["line"] = str(text)[:4096]
        elif kind in ("apply_patch", "rollback_patch", "subscribe", "unsubscribe", "interrupt"):
            for key in ("name", "ids", "topics", "target"):
                if key in message:
                    fields[key] = message[key]
        self.ctx.audit.write("subsystem_request", user=self.ctx.user, session=self.ctx.label, role=self.ctx.role,
                             request=kind[:64], id=request_id, **fields, **extra)

    # -- immediate requests ----------------------------------------------------------------------
    def _do_hello(self, message: dict[str, Any]) -> None:
        if message["version"] != VERSION:
            self._fail("version", f"client speaks protocol version {message['version']}; this server speaks {VERSION}")
            return
        self._greeted = True

    def _do_ping(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"time": time.time()}

    def _do_input(self, message: dict[str, Any]) -> None:
        future = self._prompts.pop(message["prompt_id"], None)
        if future is None or future.done():
            return  # the code stopped waiting (interrupted); a late answer is dropped
        future.set_result(None if message.get("eof") else message.get("data") or "")

    def _do_interrupt(self, message: dict[str, Any]) -> dict[str, Any]:
        target = message.get("target")
        if target is None:
            target = self._running_eval
        if target is None:  # no eval is running: the oldest eval or command still waiting or running
            target = next((rid for rid, task in self._tasks.items()
                           if task.get_name().endswith(("-eval", "-command"))), None)
        if target is not None and target == self._running_eval and self._exec is not None:
            self._exec.interrupt()
            return {"interrupted": target}
        task = self._tasks.get(target) if target is not None else None
        if task is None or target is None:
            raise RequestError("not_found", "nothing is running" if target is None else f"no running request {target}")
        self._interrupted.add(target)
        task.cancel()
        return {"interrupted": target}

    def _do_subscribe(self, message: dict[str, Any]) -> dict[str, Any]:
        topics = self._topics_of(message)
        self._topics.update(topics)
        hub_for(self.service).add(self._push)
        return {"topics": sorted(self._topics)}

    def _do_unsubscribe(self, message: dict[str, Any]) -> dict[str, Any]:
        self._topics.difference_update(self._topics_of(message))
        if not self._topics:
            hub_for(self.service).remove(self._push)
        return {"topics": sorted(self._topics)}

    @staticmethod
    def _topics_of(message: dict[str, Any]) -> set[str]:
        topics = message["topics"]
        unknown = [t for t in topics if t not in TOPICS]
        if unknown:
            raise RequestError("bad_request", f"unknown topic(s) {unknown}; topics are: {', '.join(TOPICS)}")
        return set(topics)

    def _push(self, topic: str, event: dict[str, Any]) -> None:
        if topic not in self._topics or self.writer.closed:
            return
        frame = {"type": "event", "topic": topic, "event": event}
        if on_loop_thread(self.loop):
            self.writer.send(frame)
        else:
            self.loop.call_soon_threadsafe(self.writer.send, frame)

    # -- Python (admins) ---------------------------------------------------------------------------
    async def _do_eval(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = message["id"]
        async with self._eval_lock:  # FIFO: evals run in the order they were sent
            if self._exec is not None and self._exec.closed:  # the last eval called exit(): start afresh
                await self._exec.close()
                self._exec = None
            if self._exec is None:
                self._exec = open_exec_session(self.ctx, SessionIO(
                    write_out=lambda text: self.writer.output("stdout", text),
                    write_err=lambda text: self.writer.output("stderr", text),
                    readline=self._readline))
            self._running_eval = self.writer.request_id = request_id
            try:
                outcome = await run_audited(self.ctx, self._exec, message["code"], timeout=message.get("timeout"))
            finally:  # output was tagged with this id as it was written; the reply goes out after it
                self._running_eval = self.writer.request_id = None
        return {"status": outcome.status, "exit_code": outcome.exit_code, "value": outcome.value_repr,
                "error": outcome.error, "duration": round(outcome.duration, 6)}

    def _readline(self, prompt: str) -> str:
        """``input()`` in an eval (worker thread): ask the client, wait interruptibly."""
        future: concurrent.futures.Future[str | None] = concurrent.futures.Future()
        prompt_id = next(self._prompt_ids)
        request_id = self.writer.request_id

        def ask() -> None:
            self._prompts[prompt_id] = future
            self.writer.send({"type": "input_request", "id": request_id, "prompt_id": prompt_id, "prompt": prompt})

        self.loop.call_soon_threadsafe(ask)
        try:
            line = wait_from_thread(future)  # type: ignore[arg-type]
        except concurrent.futures.CancelledError:
            line = None
        finally:
            self.loop.call_soon_threadsafe(self._prompts.pop, prompt_id, None)
        if line is None:
            raise EOFError("end of input (the client sent EOF)")
        return line

    async def _do_complete(self, message: dict[str, Any]) -> dict[str, Any]:
        from prompt_toolkit.completion import CompleteEvent
        from prompt_toolkit.document import Document

        text = message["text"]
        cursor = message.get("cursor")
        cursor = len(text) if cursor is None else max(0, min(cursor, len(text)))
        document = Document(text, cursor)
        completer = self._completer_for_role()
        items = []
        for attempt in range(3):  # the namespace can change under us (a worker thread assigns)
            try:
                items = list(itertools.islice(completer.get_completions(document, CompleteEvent(completion_requested=True)),
                                              MAX_COMPLETIONS))
                break
            except RuntimeError:
                if attempt == 2:
                    raise RequestError("failed", "the namespace kept changing while completing; try again") from None
        return {"completions": [_completion(c) for c in items]}

    def _completer_for_role(self) -> Any:
        if self._completer is None:
            if self.ctx.role == "admin":
                from shellsvc.repl import NamespaceCompleter

                namespace = self.ctx.engine.namespaces.get(self.ctx.user)  # the user's, shared by their sessions
                self._completer = NamespaceCompleter(lambda: namespace)
            else:
                from shellsvc.console import ConsoleCompleter

                self._completer = ConsoleCompleter(self._console_for_role())
        return self._completer

    # -- console commands (both roles) ---------------------------------------------------------
    def _console_for_role(self) -> Console:
        if self._console is None:
            ctx = self.ctx
            handler = self.service.handlers.get(ctx.role)
            source = handler if ctx.role != "admin" and hasattr(handler, "console") else self.service.console
            self._console = source.console(ctx.user, ctx.role, session=ctx.label, engine=ctx.engine,  # type: ignore[union-attr]
                                           audit=ctx.audit)
        return self._console

    async def _do_command(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = message["id"]
        result = await self._console_for_role().execute(message["line"])
        self.writer.output("stdout", result.output, request_id)
        self.writer.output("stderr", result.error, request_id)
        return {"exit_status": result.exit_status, "denied": result.denied, "exit_requested": result.exit_requested}

    # -- plugins and patches (admins) ------------------------------------------------------------
    async def _do_plugins(self, message: dict[str, Any]) -> dict[str, Any]:
        runtime = self.service.runtime
        if runtime is None:
            raise RequestError("unavailable", "this service has no plugin runtime")
        return {"plugins": [{
            "name": h.name, "state": str(h.state), "generation": h.generation, "kind": h.kind, "path": str(h.path),
            "version": h.version, "loaded_at": h.loaded_at, "error": str(h.error) if h.error else None,
        } for h in runtime.handles()]}

    def _manager(self) -> Any:
        manager = getattr(self.service, "patches", None)
        if manager is None:
            raise RequestError("unavailable", "this service has no patch manager (start it first)")
        return manager

    async def _do_patches(self, message: dict[str, Any]) -> dict[str, Any]:
        manager = self._manager()
        return {"patches": [_record(r, manager) for r in manager.patches()],
                "files": patch_directory(self.service).files()}

    async def _do_apply_patch(self, message: dict[str, Any]) -> dict[str, Any]:
        manager = self._manager()
        request_id, name = message["id"], message["name"]
        try:
            path = patch_directory(self.service).file(name)
        except PatchFileError as exc:
            raise RequestError("not_found", str(exc)) from None
        records = await self._in_thread(request_id, apply_patch_file, manager, path, user=self.ctx.user)
        self.ctx.audit.write("patch_file_applied", user=self.ctx.user, session=self.ctx.label, file=name,
                             ids=[r.id for r in records])
        return {"applied": [r.id for r in records], "patches": [_record(r, manager) for r in records]}

    async def _do_rollback_patch(self, message: dict[str, Any]) -> dict[str, Any]:
        manager = self._manager()
        ids = message["ids"]
        if not all(is_integer(i) for i in ids):
            raise RequestError("bad_request", "rollback_patch: ids must be a list of integers")
        done: list[int] = []
        for patch_id in ids:  # in the order given: newest first when undoing a file
            try:
                record = await self._in_thread(message["id"], manager.rollback, patch_id, user=self.ctx.user)
            except PatchNotFound as exc:
                raise RequestError("not_found", f"{exc} (rolled back so far: {done or 'none'})") from None
            except PatchConflict as exc:
                raise RequestError("conflict", f"{exc} (rolled back so far: {done or 'none'})") from None
            done.append(record.id)
        return {"rolled_back": done}

    async def _in_thread(self, request_id: int, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` in a worker thread with its prints going to request ``request_id``.

        Patch files are the admin's code: they never run on the loop thread.
        """
        io = SessionIO(write_out=lambda text: self.writer.output("stdout", text, request_id),
                       write_err=lambda text: self.writer.output("stderr", text, request_id))
        context = contextvars.copy_context()
        context.run(current_user.set, self.ctx.user)
        install_streams()

        def call() -> Any:
            with use_io(io):
                return func(*args, **kwargs)

        try:
            return await self.loop.run_in_executor(None, context.run, call)
        except (PatchNotFound, PatchConflict):
            raise  # the caller maps these to not_found / conflict
        except PatchError as exc:
            raise RequestError("failed", str(exc)) from None


def _completion(completion: Any) -> dict[str, Any]:
    """A completion on the wire; ``display``/``meta`` only when they add something."""
    item: dict[str, Any] = {"text": completion.text, "start": completion.start_position}
    display = completion.display_text
    if display != completion.text:
        item["display"] = display
    meta = completion.display_meta_text
    if meta:
        item["meta"] = meta
    return item


def _interrupted_reply(request_id: int) -> dict[str, Any]:
    """The reply to an eval or command interrupted before it finished starting."""
    return {"type": "reply", "id": request_id, "ok": True, "status": "interrupted", "exit_code": 130,
            "exit_status": 130}


def _record(record: Any, manager: Any) -> dict[str, Any]:
    return {"id": record.id, "target": record.target, "status": record.status, "user": record.user,
            "time": record.time, "note": record.note, "applied": manager.applied(record.id),
            "committed_to": record.committed_to}
