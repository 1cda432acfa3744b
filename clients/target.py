"""Where to connect: ``[user@]host[:port]`` strings, as ``ssh`` and ``scp`` accept them."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

__all__ = ["DEFAULT_PORT", "Target", "parse_hosts", "parse_target"]

#: shellsvc's default listening port (``[server] port`` in its config).
DEFAULT_PORT = 8022


@dataclass(frozen=True)
class Target:
    user: str
    host: str
    port: int

    @property
    def known_hosts_name(self) -> str:
        """The host as a known_hosts file names it: ``host`` on port 22, else ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_target(text: str, *, user: str | None = None, port: int | None = None) -> Target:
    """``[user@]host[:port]``; ``[v6addr]:port`` for IPv6. Explicit parts win over defaults."""
    spec = text.strip()
    if not spec:
        raise ValueError("empty host")
    login, at, rest = spec.rpartition("@")
    host, host_port = rest, None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: unbalanced '[' in host")
        host, tail = rest[1:close], rest[close + 1:]
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            host_port = tail[1:]
    elif rest.count(":") == 1:
        host, host_port = rest.split(":")
    if not host:
        raise ValueError(f"{text!r}: no host name")
    if host_port is not None:
        if not host_port.isdigit() or not 0 < int(host_port) < 65536:
            raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    resolved_port = int(host_port) if host_port is not None else (port or DEFAULT_PORT)
    return Target(user=(login if at else None) or user or getpass.getuser(), host=host, port=resolved_port)


def parse_hosts(text: str, *, user: str | None = None, port: int | None = None) -> list[Target]:
    """A comma-separated ``--hosts`` list; duplicates are an error (a host would run twice)."""
    targets = [parse_target(part, user=user, port=port) for part in text.split(",") if part.strip()]
    if not targets:
        raise ValueError("--hosts needs at least one host")
    seen: set[Target] = set()
    for target in targets:
        if target in seen:
            raise ValueError(f"{target} is listed twice in --hosts")
        seen.add(target)
    return targets
