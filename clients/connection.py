"""Opening the SSH connection: user keys or a password, and a verified host key.

The host key policy is :mod:`clients.hostkeys`; ``ask`` is how the user is asked to
accept an unknown key (None: never - unknown keys are refused).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from .hostkeys import HostKeyError, HostKeyUnknown, add_known_host, default_known_hosts, describe_key, explain, load_known_hosts
from .target import Target

__all__ = ["ConnectOptions", "ConnectError", "open_connection"]

log = logging.getLogger(__name__)

#: Asked "trust this key?" with the prompt text; returns whether the user said yes.
AskTrust = Callable[[str], Awaitable[bool]]


class ConnectError(Exception):
    """The connection could not be made or authenticated; the message says why."""


@dataclass
class ConnectOptions:
    identities: Sequence[Path] = ()          #: -i KEY (none: the agent and ~/.ssh/id_*)
    known_hosts: Path = field(default_factory=default_known_hosts)
    ask_trust: AskTrust | None = None        #: None: refuse unknown host keys
    ask_password: Callable[[str], Awaitable[str | None]] | None = None
    connect_timeout: float = 15.0


class _Client(asyncssh.SSHClient):
    """Remembers the host key asyncssh did not trust; asks for a password if allowed."""

    def __init__(self, target: Target, options: ConnectOptions) -> None:
        self._target = target
        self._options = options
        self.offered: tuple[asyncssh.SSHKey, str, str, int] | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = (key, host, addr, port)
        return False

    def password_auth_requested(self) -> Any:
        ask = self._options.ask_password
        if ask is None:
            return None
        return ask(f"{self._target.user}@{self._target.host}'s password: ")


async def open_connection(target: Target, options: ConnectOptions) -> asyncssh.SSHClientConnection:
    """Connect and authenticate; raises HostKeyError or ConnectError with a clear message."""
    for attempt in range(2):
        clients: list[_Client] = []

        def factory() -> _Client:
            client = _Client(target, options)
            clients.append(client)
            return client

        try:
            conn, _ = await asyncio.wait_for(asyncssh.create_connection(
                factory, target.host, target.port, username=target.user,
                known_hosts=load_known_hosts(options.known_hosts),
                client_keys=[str(p) for p in options.identities] or (),
                password=None, kbdint_auth=False, agent_forwarding=False,
                x11_forwarding=False, encoding="utf-8"), options.connect_timeout)
            return conn
        except asyncssh.HostKeyNotVerifiable:
            offered = clients[-1].offered if clients else None
            if offered is None:
                raise HostKeyError(f"the host key of {target.known_hosts_name} could not be verified") from None
            error = explain(target, *offered, options.known_hosts)
            if not isinstance(error, HostKeyUnknown) or options.ask_trust is None or attempt:
                raise error from None
            key = offered[0]
            question = (f"The authenticity of host {target.known_hosts_name} can't be established.\n"
                        f"{describe_key(key)}.\n"
                        f"Trust it and add it to {options.known_hosts} (yes/no)? ")
            if not await options.ask_trust(question):
                raise error from None
            add_known_host(options.known_hosts, target, key)
        except asyncssh.PermissionDenied as exc:
            raise ConnectError(f"{target}: authentication failed ({exc.reason}); check the user name and the key "
                               f"(-i KEY) or password the server has configured for it") from None
        except asyncssh.DisconnectError as exc:
            raise ConnectError(f"{target}: the server closed the connection: {exc.reason}") from None
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, ConnectionRefusedError):
                reason = ("connection refused: is shellsvc running and listening there? "
                          "(set the port with -p PORT or host:PORT)")
            elif isinstance(exc, TimeoutError):
                reason = "timed out"
            else:
                reason = exc.strerror or str(exc)
            raise ConnectError(f"cannot connect to {target.host} port {target.port}: {reason}") from None
    raise AssertionError("unreachable")


async def ask_password_on_terminal(prompt: str) -> str | None:
    """Read a password without echo (in a thread: getpass blocks)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, getpass.getpass, prompt)
    except (EOFError, KeyboardInterrupt):
        return None
