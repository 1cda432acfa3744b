"""OpenSSH ``authorized_keys`` files, with the options this service honours.

asyncssh parses the key and matches ``from=`` patterns; this module adds what it
leaves out: ``restrict`` (implemented: no PTY unless ``pty`` is also given, and
forwarding is refused by this service anyway) and a clear error for options that
would otherwise be silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

__all__ = ["AuthorizedKeys", "AuthorizedKeysError", "KeyGrant", "SUPPORTED_OPTIONS"]

#: Options honoured (or, for forwarding, moot: this service refuses all forwarding).
SUPPORTED_OPTIONS = frozenset({
    "command", "from", "restrict", "pty", "no-pty",
    "no-port-forwarding", "port-forwarding", "permitopen", "permitlisten",
    "no-agent-forwarding", "agent-forwarding", "no-x11-forwarding", "x11-forwarding",
    "no-user-rc", "user-rc", "environment", "no-touch-required",
})


class AuthorizedKeysError(ValueError):
    """An authorized_keys line that cannot be honoured; the message names file and line."""


@dataclass(frozen=True)
class KeyGrant:
    """What a matched key entry allows for this connection."""

    fingerprint: str
    line: int
    allow_pty: bool
    forced_command: str | None


@dataclass
class _Entry:
    line: int
    matcher: asyncssh.SSHAuthorizedKeys
    option_names: frozenset[str] = field(default_factory=frozenset)


def _option_names(options: str) -> list[str]:
    """Names in an options field (``a,b="x,y",c``), honouring double quotes and ``\\"``."""
    names: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    in_value = False
    for char in options:
        if escaped:
            escaped = False
            continue
        if char == "\\" and in_quotes:
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "," and not in_quotes:
            names.append("".join(current))
            current, in_value = [], False
        elif char == "=" and not in_quotes:
            in_value = True
        elif not in_value:
            current.append(char)
    if in_quotes:
        raise ValueError("unterminated quote in options")
    names.append("".join(current))
    return [name.strip().lower() for name in names]


def _split_options(line: str) -> str | None:
    """The options field of a line, or None when the line starts with the key type."""
    first = line.split(None, 1)[0]
    if first.startswith(("ssh-", "ecdsa-", "sk-", "x509v3-")):
        return None
    # Options end at the first unquoted whitespace.
    in_quotes = escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and in_quotes:
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char.isspace() and not in_quotes:
            return line[:index]
    return line


class AuthorizedKeys:
    """The parsed keys of one user; :meth:`match` decides whether an offered key is allowed."""

    def __init__(self, entries: list[_Entry], source: str) -> None:
        self._entries = entries
        self.source = source

    @classmethod
    def from_text(cls, text: str, source: str = "<authorized_keys>") -> AuthorizedKeys:
        entries: list[_Entry] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}, line {number}"
            if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
                raise AuthorizedKeysError(
                    f"{where}: this is a private key; name the public key instead (usually the same "
                    f"file name ending in .pub), and keep the private key off the server")
            try:
                options = _split_options(line)
                names = frozenset(_option_names(options)) if options else frozenset()
            except ValueError as exc:
                raise AuthorizedKeysError(f"{where}: {exc}") from None
            unsupported = sorted(names - SUPPORTED_OPTIONS)
            if unsupported:
                raise AuthorizedKeysError(
                    f"{where}: option(s) {', '.join(unsupported)} not supported by shellsvc "
                    f"(supported: {', '.join(sorted(SUPPORTED_OPTIONS))}); remove them or the line")
            try:
                matcher = asyncssh.import_authorized_keys(line)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise AuthorizedKeysError(f"{where}: not a valid OpenSSH public key line ({exc})") from None
            entries.append(_Entry(number, matcher, names))
        return cls(entries, source)

    @classmethod
    def from_file(cls, path: Path) -> AuthorizedKeys:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthorizedKeysError(f"{path}: cannot read authorized_keys file ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise AuthorizedKeysError(f"{path}: authorized_keys file is not UTF-8 text ({exc})") from None
        return cls.from_text(text, str(path))

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, key: asyncssh.SSHKey, peer_host: str, peer_addr: str) -> KeyGrant | None:
        """The grant of the first entry whose key and ``from=`` patterns match, else None."""
        for entry in self._entries:
            options = entry.matcher.validate(key, peer_host, peer_addr)
            if options is None:
                continue
            if "no-pty" in entry.option_names:
                allow_pty = False
            elif "restrict" in entry.option_names:
                allow_pty = "pty" in entry.option_names
            else:
                allow_pty = True
            command = options.get("command")
            return KeyGrant(
                fingerprint=key.get_fingerprint("sha256"),
                line=entry.line,
                allow_pty=allow_pty,
                forced_command=command if isinstance(command, str) else None,
            )
        return None
