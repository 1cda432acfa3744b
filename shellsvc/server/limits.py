"""Connection-level limits asyncssh does not have: OpenSSH's MaxStartups, MaxSessions
and PerSourcePenalties, kept as plain bookkeeping so they are easy to test and reason about.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["SessionCounter", "SourcePenalties", "StartupGate", "source_of"]


def source_of(address: str) -> str:
    """The penalty bucket of a peer: the IPv4 address, or the IPv6 /64 (as sshd does)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Penalty:
    seconds: float
    expires: float


class SourcePenalties:
    """Per-source penalty, accrued by failed or abandoned logins.

    Each event adds seconds to the source's penalty (capped at ``maximum``); the penalty
    decays in real time. While the accrued penalty is at least ``minimum``, new
    connections from the source are refused, like sshd's ``PerSourcePenalties``.
    """

    def __init__(self, *, minimum: float, maximum: float, exempt: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._exempt = [ipaddress.ip_network(net, strict=False) for net in exempt]
        self._clock = clock
        self._penalties: dict[str, _Penalty] = {}

    def _is_exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in net for net in self._exempt)

    def add(self, address: str, seconds: float) -> None:
        if seconds <= 0 or self._is_exempt(address):
            return
        now = self._clock()
        key = source_of(address)
        current = self._penalties.get(key)
        remaining = max(0.0, current.expires - now) if current else 0.0
        total = min(self.maximum, remaining + seconds)
        self._penalties[key] = _Penalty(total, now + total)
        self._prune(now)

    def blocked_for(self, address: str) -> float:
        """Seconds the source stays refused (0 when it may connect)."""
        penalty = self._penalties.get(source_of(address))
        if penalty is None:
            return 0.0
        remaining = penalty.expires - self._clock()
        if remaining <= 0:
            return 0.0
        return remaining if penalty.seconds >= self.minimum else 0.0

    def _prune(self, now: float) -> None:
        if len(self._penalties) > 4096:
            for key in [k for k, p in self._penalties.items() if p.expires <= now]:
                del self._penalties[key]


class StartupGate:
    """Hard cap on connections that have not authenticated yet (sshd's MaxStartups)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.pending = 0

    def try_enter(self) -> bool:
        if self.pending >= self.maximum:
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending = max(0, self.pending - 1)


class SessionCounter:
    """Open sessions per user, capped across all of that user's connections."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._open: dict[str, int] = {}

    def try_open(self, user: str) -> bool:
        count = self._open.get(user, 0)
        if count >= self.maximum:
            return False
        self._open[user] = count + 1
        return True

    def close(self, user: str) -> None:
        count = self._open.get(user, 0) - 1
        if count > 0:
            self._open[user] = count
        else:
            self._open.pop(user, None)

    def count(self, user: str) -> int:
        return self._open.get(user, 0)
