"""``Service``: the SSH server embedded in a running asyncio application.

    async with Service(namespace={"app": app}, config="shellsvc.toml") as svc:
        await app.serve_forever()

Starting creates the private state directory, the host key and the audit log, then
listens. Stopping closes the listener, disconnects every client, interrupts what their
sessions were running and frees them; the users' namespaces stay with the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from shellsvc.console import CommandRegistry, OperatorConsole, SessionBoard
from shellsvc.engine import Engine, NamespaceRegistry
from shellsvc.patching import PatchManager, default_manager, set_default_manager

from .audit import AuditLog
from .auth import ShellServer
from .config import ServiceConfig, load_config, parse_config
from .context import RoleHandler
from .execution import PythonHandler
from .hostkey import ensure_private_dir, load_or_create_host_key
from .limits import SessionCounter, SourcePenalties, StartupGate
from .names import AdminNames
from .passwords import DUMMY_HASH, PasswordHash
from .sessions import ChannelSession

if TYPE_CHECKING:
    from shellsvc.runtime import Runtime, RuntimeEvent

__all__ = ["Service"]

log = logging.getLogger(__name__)

ConfigArg = ServiceConfig | str | Path | Mapping[str, Any] | None


def _coerce_config(config: ConfigArg) -> ServiceConfig:
    if config is None:
        return ServiceConfig()
    if isinstance(config, ServiceConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    return parse_config(config)


def _dummy_hash_for(config: ServiceConfig) -> PasswordHash:
    """The hash failed logins of unknown users are checked against: as costly as the real ones."""
    hashes = [u.password_hash for u in config.users.values() if u.password_hash is not None]
    if not hashes:
        return DUMMY_HASH
    costliest = max(hashes, key=lambda h: (1 << h.log2_n) * h.r * h.p)
    return PasswordHash(costliest.log2_n, costliest.r, costliest.p, DUMMY_HASH.salt, bytes(len(costliest.digest)))


class Service:
    """An SSH service giving configured users a shell inside this process.

    ``namespace`` seeds each user's namespace: a mapping, a ``callable(user) -> mapping``
    or a ready :class:`~shellsvc.engine.NamespaceRegistry`. ``runtime`` (a
    :class:`shellsvc.Runtime`) is offered as ``runtime`` and ``plugins``, its plugins'
    commands and shell names are offered too, and its events are audited. ``config`` is a
    :class:`ServiceConfig`, a TOML path or a mapping.

    Operators get the console of ``commands`` (default: the built-ins; add the app's own
    with ``@registry.command``). Admins get Python, with ``cmd(...)`` for the same commands
    and the patch tools on :attr:`patches` (default: a :class:`~shellsvc.patching.PatchManager`
    journalling to the state directory, also installed as the process's default manager
    while the service runs). ``operator_console`` replaces the operator role's handler.
    """

    def __init__(self, namespace: Any = None, runtime: Runtime | None = None, config: ConfigArg = None, *,
                 engine: Engine | None = None, commands: CommandRegistry | None = None,
                 patches: PatchManager | None = None, operator_console: RoleHandler | None = None) -> None:
        self.config = _coerce_config(config)
        self.runtime = runtime
        self._namespace_seed = namespace
        self._engine = engine
        self._owns_engine = False
        self.patches: PatchManager | None = patches
        self._owns_patches = patches is None
        self._previous_default_patches: PatchManager | None = None
        self.started_at: float | None = None
        self.board = SessionBoard()
        #: The console behind the operator role and admins' ``cmd(...)``.
        self.console = OperatorConsole(commands, runtime=runtime, patches=patches, board=self.board)
        self.handlers: dict[str, RoleHandler] = {
            "admin": PythonHandler(),
            "operator": operator_console or self.console,
        }
        self.admin_names: AdminNames | None = None
        self._plugin_modules: dict[str, str] = {}
        limits = self.config.limits
        self.penalties = SourcePenalties(minimum=limits.penalty_min, maximum=limits.penalty_max,
                                         exempt=limits.penalty_exempt)
        self.startups = StartupGate(limits.max_unauthenticated)
        self.session_counter = SessionCounter(limits.max_sessions_per_user)
        self.connections: dict[int, ShellServer] = {}
        self.dummy_hash = _dummy_hash_for(self.config)
        self._sessions: set[ChannelSession] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._audit: AuditLog | None = None
        self._subscription: Any = None
        self.host_key: asyncssh.SSHKey | None = None
        self.port: int | None = None

    # -- properties ----------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the service is not started: use `async with Service(...)` or `await svc.start()`")
        return self._engine

    @property
    def audit(self) -> AuditLog:
        if self._audit is None:
            raise RuntimeError("the service is not started")
        return self._audit

    @property
    def host(self) -> str:
        return self.config.server.host

    @property
    def host_key_fingerprint(self) -> str:
        if self.host_key is None:
            raise RuntimeError("the service is not started")
        return self.host_key.get_fingerprint("sha256")

    def known_hosts_line(self) -> str:
        """An OpenSSH known_hosts line pinning this server's key (for ``UserKnownHostsFile``)."""
        if self.host_key is None or self.port is None:
            raise RuntimeError("the service is not started")
        host = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{host} {self.host_key.export_public_key().decode('ascii').strip()}\n"

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> Service:
        if self._acceptor is not None:
            raise RuntimeError("the service is already running")
        if self._audit is not None and not self._audit.closed:
            raise RuntimeError("the service is starting or running")
        loop = asyncio.get_running_loop()
        server = self.config.server
        limits = self.config.limits
        ensure_private_dir(server.state_dir)
        self.host_key = load_or_create_host_key(server.host_key_path)
        self._audit = AuditLog(server.audit_log_path)
        self.started_at = self.console.started_at = time.time()
        if self._owns_patches:
            self.patches = PatchManager(server.state_dir)
        assert self.patches is not None
        self.console.patches = self.patches
        if self._engine is None:
            self._owns_engine = True
            self._engine = Engine(self._make_namespaces(), loop=loop, max_running=limits.max_running_commands)
        elif self.runtime is not None:
            self._engine.namespaces.add_names(self._runtime_names())
        self.admin_names = AdminNames(self._engine.namespaces, patches=self.patches, runtime=self.runtime,
                                      console_for=self._admin_console, loop=loop)
        if not self.config.users:
            log.warning("no users configured in %s: nobody can log in", self.config.source)
        try:
            self._acceptor = await asyncssh.listen(
                server.host, server.port,
                server_factory=lambda: ShellServer(self),
                session_factory=None,
                server_host_keys=[self.host_key],
                login_timeout=limits.login_grace_time,
                keepalive_interval=limits.keepalive_interval,
                keepalive_count_max=limits.keepalive_count_max,
                public_key_auth=True, password_auth=True, kbdint_auth=False, host_based_auth=False,
                gss_host=None, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
                sftp_factory=None, line_editor=False, rdns_lookup=False,
                encoding="utf-8", errors="replace", config=None,
            )
        except OSError as exc:
            self._audit.close()
            raise OSError(exc.errno, f"cannot listen on {server.host}:{server.port}: {exc.strerror}") from exc
        self.port = self._acceptor.get_port()
        self._previous_default_patches = set_default_manager(self.patches)
        if self.runtime is not None:
            self._subscription = self.runtime.subscribe(self._on_runtime_event)
            self._remember_plugin_modules()
            self.admin_names.sync_plugins()
        self.audit.write("service_start", host=server.host, port=self.port,
                         host_key_fingerprint=self.host_key_fingerprint, config=self.config.source,
                         users=sorted(self.config.users))
        log.info("shellsvc listening on %s:%d, host key %s", server.host, self.port, self.host_key_fingerprint)
        if server.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("shellsvc is listening on %s: reachable from other hosts", server.host)
        return self

    async def stop(self) -> None:
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
        acceptor.close()
        for server in list(self.connections.values()):
            if server.conn is not None:
                server.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "shellsvc is shutting down")
        await acceptor.wait_closed()
        # Teardown callbacks (session tasks, connection_lost) run on the loop: let them
        # finish - they still write to the audit log - but do not wait forever.
        deadline = asyncio.get_running_loop().time() + 2.0
        while (self._sessions or self.connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for handler in self.handlers.values():
            aclose = getattr(handler, "aclose", None)
            if aclose is not None:
                await aclose()
        if self._owns_engine and self._engine is not None:
            await self._engine.aclose()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._previous_default_patches is not None and default_manager() is self.patches:
            set_default_manager(self._previous_default_patches)
        self._previous_default_patches = None
        self.audit.write("service_stop", port=self.port)
        self.audit.close()  # kept: a straggling callback's event is logged as dropped, not raised

    async def __aenter__(self) -> Service:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_closed(self) -> None:
        """Wait until the listener is closed (by :meth:`stop` from elsewhere)."""
        if self._acceptor is not None:
            await self._acceptor.wait_closed()

    # -- used by connections -------------------------------------------------------------------
    def open_channel_session(self, server: ShellServer) -> ChannelSession:
        user = server.user
        assert user is not None
        if not self.session_counter.try_open(user.name):
            self.audit.write("session_refused", user=user.name, conn=server.conn_id,
                             reason="max_sessions_per_user", limit=self.session_counter.maximum)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"too many open sessions for {user.name} (limit {self.session_counter.maximum})")
        if user.role == "admin" and self.admin_names is not None:
            self.admin_names.prepare(user.name)
        session = ChannelSession(self, server, self.handlers[user.role])
        self._sessions.add(session)
        return session

    def release_session(self, session: ChannelSession) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self.session_counter.close(session.user)

    # -- internals -----------------------------------------------------------------------------
    def _make_namespaces(self) -> NamespaceRegistry:
        seed = self._namespace_seed
        if isinstance(seed, NamespaceRegistry):
            registry = seed
        else:
            registry = NamespaceRegistry(seed)
        if self.runtime is not None:
            registry.add_names(self._runtime_names())
        return registry

    def _runtime_names(self) -> dict[str, Any]:
        assert self.runtime is not None
        return {"runtime": self.runtime, "plugins": self.runtime.plugins}

    def _admin_console(self, user: str) -> Any:
        """The console behind ``cmd(...)`` in an admin's namespace."""
        return self.console.console(user, "admin", session=f"{user}/python", engine=self._engine, audit=self._audit)

    def _on_runtime_event(self, event: RuntimeEvent) -> None:
        """Audit a plugin event, retire patches of replaced code, refresh admins' plugin names."""
        if self._audit is not None:
            self._audit.write("runtime_" + event.kind, plugin=event.name,
                              path=str(event.path) if event.path else None, generation=event.generation,
                              error=str(event.error) if event.error else None)
        if event.kind in ("reloaded", "unloaded") and event.name in self._plugin_modules:
            self._supersede_patches(event.name, self._plugin_modules[event.name], event.kind)
        self._remember_plugin_modules()
        if self.admin_names is not None:
            self.admin_names.sync_plugins()

    def _remember_plugin_modules(self) -> None:
        """Plugin name -> module, as it was before the next event (an unloaded handle is gone)."""
        if self.runtime is not None:
            self._plugin_modules = {h.name: h.module for h in self.runtime.handles()}

    def _supersede_patches(self, plugin: str, module: str, kind: str) -> None:
        """The plugin's old module no longer runs: its patches must not be re-applied over the new code."""
        if self.patches is None:
            return
        retired = self.patches.supersede(module, reason=f"plugin {plugin} {kind}")
        if retired and self._audit is not None:
            self._audit.write("patches_superseded", plugin=plugin, module=module, ids=retired, reason=kind)

    def __repr__(self) -> str:
        state = f"listening on {self.host}:{self.port}" if self._acceptor else "stopped"
        return f"<Service {state} users={sorted(self.config.users)}>"
