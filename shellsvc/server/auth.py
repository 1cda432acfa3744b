"""Per-connection authentication and admission: who may log in, and how often they may try.

asyncssh provides the protocol; this class adds what sshd promises on top of it:
MaxAuthTries counting rejected public keys as well as passwords, a failure delay that
does not depend on whether the user exists, per-source penalties, a cap on
unauthenticated connections, and a login grace time (asyncssh's ``login_timeout``).
Roles come only from the server config, never from anything the client sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import asyncssh

from .authorized_keys import KeyGrant
from .config import UserConfig
from .passwords import verify_password

if TYPE_CHECKING:
    from .service import Service

__all__ = ["ShellServer"]

log = logging.getLogger(__name__)

_connection_ids = itertools.count(1)
_JITTER_SECRET = os.urandom(16)


def _user_specific_delay(username: str, floor: float) -> float:
    """Failure delay: a floor plus a stable per-name jitter (like sshd's user_specific_delay).

    Stable per name, so repeating attempts and averaging does not wash it out, and the
    same for existing and unknown names.
    """
    digest = hmac.new(_JITTER_SECRET, username.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return floor * (1.0 + (int.from_bytes(digest[:2], "big") / 65535.0) * 0.25)


class ShellServer(asyncssh.SSHServer):
    """One instance per TCP connection (asyncssh's ``server_factory``)."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.conn: asyncssh.SSHServerConnection | None = None
        self.conn_id = next(_connection_ids)
        self.peer_addr = "?"
        self.peer_port = 0
        self.username: str | None = None
        self.user: UserConfig | None = None
        self.grant: KeyGrant | None = None
        self.auth_method: str | None = None
        self.failures = 0
        self.authenticated = False
        self.refused = False
        self._in_startup_gate = False
        self._opened_at = time.monotonic()

    # -- connection lifecycle --------------------------------------------------------------
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer_addr, self.peer_port = str(peer[0]), int(peer[1])
        service = self._service
        blocked = service.penalties.blocked_for(self.peer_addr)
        if blocked:
            self._refuse("penalty", f"Too many failed logins from {self.peer_addr}; "
                                    f"try again in {blocked:.0f} s", retry_after=round(blocked, 1))
            return
        if not service.startups.try_enter():
            self._refuse("max_unauthenticated", "Too many unauthenticated connections; try again later")
            return
        self._in_startup_gate = True
        service.connections[self.conn_id] = self
        service.audit.write("connect", conn=self.conn_id, peer=self._peer())

    def _refuse(self, reason: str, message: str, **fields: Any) -> None:
        self.refused = True
        self._service.audit.write("connection_refused", conn=self.conn_id, peer=self._peer(), reason=reason,
                                  **fields)
        log.warning("refused connection from %s: %s", self._peer(), message)
        conn = self.conn
        assert conn is not None
        # After connection_made returns asyncssh sends its version string; disconnect after that.
        asyncio.get_running_loop().call_soon(conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS, message)

    def connection_lost(self, exc: Exception | None) -> None:
        service = self._service
        service.connections.pop(self.conn_id, None)
        if self._in_startup_gate:
            self._in_startup_gate = False
            service.startups.leave()
        if self.refused:
            return
        reason = str(exc) if exc else "closed"
        if not self.authenticated:
            limits = service.config.limits
            timed_out = exc is not None and "login timeout" in str(exc).lower()
            if timed_out:
                reason = "login grace time expired"
                service.audit.write("login_timeout", conn=self.conn_id, peer=self._peer(),
                                    user=self.username, grace=limits.login_grace_time)
            service.penalties.add(self.peer_addr,
                                  limits.penalty_authfail if self.failures else limits.penalty_noauth)
        service.audit.write("disconnect", conn=self.conn_id, peer=self._peer(), user=self.username,
                            authenticated=self.authenticated, reason=reason,
                            duration=round(time.monotonic() - self._opened_at, 3))

    # -- authentication ---------------------------------------------------------------------
    def begin_auth(self, username: str) -> bool:
        self.username = username
        self.user = self._service.config.users.get(username)
        return True  # always authenticate; there is no anonymous access

    def _exhausted(self) -> bool:
        return self.failures >= self._service.config.limits.max_auth_tries

    def password_auth_supported(self) -> bool:
        return not self._exhausted()

    def public_key_auth_supported(self) -> bool:
        return not self._exhausted()

    def kbdint_auth_supported(self) -> bool:
        return False

    async def validate_password(self, username: str, password: str) -> bool:
        started = time.monotonic()
        user = self._service.config.users.get(username)
        stored = user.password_hash if user is not None and user.password_hash is not None else None
        loop = asyncio.get_running_loop()
        # Same scrypt work whether or not the user exists or has a password.
        matched = await loop.run_in_executor(None, verify_password, password, stored or self._service.dummy_hash)
        if matched and stored is not None and not self._exhausted():
            self.auth_method, self.grant = "password", None
            return True
        await self._fail(username, "password", None, started)
        return False

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh asks this for the key query and again for the signed request; the
        # signature itself is verified by asyncssh after we return True.
        started = time.monotonic()
        user = self._service.config.users.get(username)
        grant = None
        if user is not None and user.authorized_keys is not None and not self._exhausted():
            grant = user.authorized_keys.match(key, self.peer_addr, self.peer_addr)
        if grant is not None:
            self.auth_method, self.grant = "publickey", grant
            return True
        await self._fail(username, "publickey", key.get_fingerprint("sha256"), started)
        return False

    async def _fail(self, username: str, method: str, fingerprint: str | None, started: float) -> None:
        self.failures += 1
        limits = self._service.config.limits
        self._service.audit.write("auth_failure", conn=self.conn_id, peer=self._peer(), user=username,
                                  method=method, key_fingerprint=fingerprint, attempt=self.failures)
        delay = _user_specific_delay(username, limits.auth_failure_delay) - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        if self._exhausted() and self.conn is not None:
            self._service.audit.write("auth_too_many_failures", conn=self.conn_id, peer=self._peer(),
                                      user=username, failures=self.failures)
            # Runs after asyncssh has sent this attempt's failure reply.
            asyncio.get_running_loop().call_soon(
                self.conn.disconnect, asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                "Too many authentication failures")

    def auth_completed(self) -> None:
        user = self._service.config.users.get(self.username or "")
        if user is None:  # cannot happen: validation only succeeds for configured users
            raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "unknown user")
        self.user = user
        self.authenticated = True
        if self._in_startup_gate:
            self._in_startup_gate = False
            self._service.startups.leave()
        self._service.audit.write(
            "auth_success", conn=self.conn_id, peer=self._peer(), user=user.name, role=user.role,
            method=self.auth_method, key_fingerprint=self.grant.fingerprint if self.grant else None,
            forced_command=self.grant.forced_command if self.grant else None)

    # -- channels ---------------------------------------------------------------------------
    def session_requested(self) -> asyncssh.SSHServerSession[str]:
        return self._service.open_channel_session(self)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        self._refuse_forwarding("direct-tcpip", f"{dest_host}:{dest_port}")
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._refuse_forwarding("tcpip-forward", f"{listen_host}:{listen_port}")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        self._refuse_forwarding("direct-streamlocal", dest_path)
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self._refuse_forwarding("streamlocal-forward", listen_path)
        return False

    def _refuse_forwarding(self, kind: str, target: str) -> None:
        self._service.audit.write("forwarding_refused", conn=self.conn_id, peer=self._peer(), user=self.username,
                                  kind=kind, target=target)

    def _peer(self) -> str:
        return f"{self.peer_addr}:{self.peer_port}"
