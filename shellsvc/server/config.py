"""The service's TOML configuration, validated up front with errors naming file and key.

Relative paths are resolved against the directory of the config file (or ``base_dir``
for configs built from a dict), so a config works the same from any working directory.
Nothing has a default credential: a user without ``authorized_keys`` or
``password_hash`` is a configuration error.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .authorized_keys import AuthorizedKeys, AuthorizedKeysError
from .passwords import PasswordHash, PasswordHashError, parse_password_hash

__all__ = ["ConfigError", "LimitsConfig", "ServerConfig", "ServiceConfig", "UserConfig", "load_config",
           "parse_config", "ROLES"]

ROLES = ("admin", "operator")


class ConfigError(ValueError):
    """A configuration problem; ``str()`` reads ``FILE: KEY: what is wrong``."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


@dataclass(frozen=True)
class LimitsConfig:
    """sshd-style limits. Field names follow the OpenSSH options they mirror."""

    max_auth_tries: int = 3               # MaxAuthTries (rejected public keys count)
    login_grace_time: float = 30.0        # LoginGraceTime, seconds
    max_unauthenticated: int = 10         # MaxStartups (hard cap)
    max_sessions_per_user: int = 10       # MaxSessions, but across all of a user's connections
    auth_failure_delay: float = 0.3       # every failed attempt is answered no sooner than this
    keepalive_interval: float = 30.0      # ClientAliveInterval
    keepalive_count_max: int = 3          # ClientAliveCountMax
    penalty_authfail: float = 5.0         # PerSourcePenalties authfail
    penalty_noauth: float = 1.0           # PerSourcePenalties noauth (grace timeout)
    penalty_min: float = 15.0             # PerSourcePenalties min: refuse once this much accrued
    penalty_max: float = 600.0            # PerSourcePenalties max
    penalty_exempt: tuple[str, ...] = ()  # PerSourcePenaltyExemptList (CIDR networks)
    command_timeout: float | None = None  # exec requests only; None = no limit
    max_running_commands: int | None = None  # engine-wide cap on commands executing at once


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8022
    state_dir: Path = Path(".shellsvc")
    plugins: tuple[Path, ...] = ()
    host_key: Path | None = None          # default: <state_dir>/ssh_host_ed25519_key
    audit_log: Path | None = None         # default: <state_dir>/audit.log

    @property
    def host_key_path(self) -> Path:
        return self.host_key or self.state_dir / "ssh_host_ed25519_key"

    @property
    def audit_log_path(self) -> Path:
        return self.audit_log or self.state_dir / "audit.log"


@dataclass(frozen=True)
class UserConfig:
    name: str
    role: str
    authorized_keys: AuthorizedKeys | None = None
    authorized_keys_path: Path | None = None
    password_hash: PasswordHash | None = None


@dataclass(frozen=True)
class ServiceConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    users: Mapping[str, UserConfig] = field(default_factory=dict)
    source: str = "<config>"

    def with_user(self, user: UserConfig) -> ServiceConfig:
        """A copy with ``user`` added or replaced (used by ``shellsvc demo``)."""
        users = dict(self.users)
        users[user.name] = user
        return replace(self, users=users)


def load_config(path: str | Path) -> ServiceConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "", "config file not found") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 text, as TOML must be ({exc}); save it as UTF-8") from None
    except RecursionError:
        raise ConfigError(source, "", "invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than int() converts
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    return parse_config(data, source=source, base_dir=path.resolve().parent)


def parse_config(data: Mapping[str, Any], *, source: str = "<dict>", base_dir: Path | None = None) -> ServiceConfig:
    """Validate an already-parsed config mapping (same schema as the TOML file)."""
    base = base_dir or Path.cwd()
    _check_keys(data, {"server", "limits", "users"}, "", source)
    server = _parse_server(_table(data, "server", source), source, base)
    limits = _parse_limits(_table(data, "limits", source), source)
    users_table = _table(data, "users", source)
    users: dict[str, UserConfig] = {}
    for name, table in users_table.items():
        if not isinstance(name, str):
            raise ConfigError(source, f"users.{name!r}", "user names must be strings")
        if not isinstance(table, Mapping):
            raise ConfigError(source, f"users.{name}", "must be a table ([users.NAME])")
        users[name] = _parse_user(name, table, source, base)
    return ServiceConfig(server=server, limits=limits, users=users, source=source)


# -- helpers ----------------------------------------------------------------------------

def _table(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, f"must be a table ([{key}]), got {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], prefix: str, source: str) -> None:
    for key in table:
        if not isinstance(key, str):  # possible in a mapping handed to parse_config, not in TOML
            raise ConfigError(source, f"{prefix}{key!r}", "keys must be strings")
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
            raise ConfigError(source, f"{prefix}{key}", f"unknown key{hint}")


def _path(value: Any, key: str, source: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(source, key, f"must be a non-empty path string, got {value!r}")
    if "\0" in value:
        raise ConfigError(source, key, f"a path cannot contain a NUL character, got {value!r}")
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # ~user of a user that does not exist
        raise ConfigError(source, key, f"cannot expand {value!r}: {exc}") from None
    return path if path.is_absolute() else base / path


def _number(value: Any, key: str, source: str, *, integer: bool, minimum: float = 0) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(source, key, f"must be {kind}, got {value!r}")
    if not integer and not _finite(value):  # TOML has nan and inf; seconds must fit a float
        raise ConfigError(source, key, f"must be a finite number of seconds, got {value!r:.40}")
    if value < minimum:
        raise ConfigError(source, key, f"must be >= {minimum}, got {value!r}")
    return value


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _parse_server(table: Mapping[str, Any], source: str, base: Path) -> ServerConfig:
    allowed = {f.name for f in fields(ServerConfig)}
    _check_keys(table, allowed, "server.", source)
    values: dict[str, Any] = {}
    if "host" in table:
        host = table["host"]
        if not isinstance(host, str) or not host:
            raise ConfigError(source, "server.host", f"must be a host name or address string, got {host!r}")
        values["host"] = host
    if "port" in table:
        port = _number(table["port"], "server.port", source, integer=True)
        if port > 65535:
            raise ConfigError(source, "server.port", f"must be 0-65535 (0 = ephemeral), got {port}")
        values["port"] = port
    values["state_dir"] = _path(table.get("state_dir", ".shellsvc"), "server.state_dir", source, base)
    plugins = table.get("plugins", [])
    if not isinstance(plugins, list):
        raise ConfigError(source, "server.plugins", f"must be a list of directory paths, got {plugins!r}")
    values["plugins"] = tuple(_path(p, f"server.plugins[{i}]", source, base) for i, p in enumerate(plugins))
    for key in ("host_key", "audit_log"):
        if key in table:
            values[key] = _path(table[key], f"server.{key}", source, base)
    return ServerConfig(**values)


def _parse_limits(table: Mapping[str, Any], source: str) -> LimitsConfig:
    defaults = LimitsConfig()
    allowed = {f.name for f in fields(LimitsConfig)}
    _check_keys(table, allowed, "limits.", source)
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"limits.{key}"
        if key == "penalty_exempt":
            if not isinstance(value, list):
                raise ConfigError(source, name, f"must be a list of networks, got {value!r}")
            for item in value:
                try:  # strings only: ip_network(1) would be 0.0.0.1/32
                    valid = isinstance(item, str) and bool(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    valid = False
                if not valid:
                    raise ConfigError(source, name, f"{item!r} is not an IP network (e.g. '10.0.0.0/8')")
            values[key] = tuple(value)
        elif key == "command_timeout":
            values[key] = _number(value, name, source, integer=False, minimum=0) or None
        elif key == "max_running_commands":
            values[key] = _number(value, name, source, integer=True, minimum=1)
        else:
            integer = isinstance(getattr(defaults, key), int)
            minimum = 1 if key in ("max_auth_tries", "max_unauthenticated", "max_sessions_per_user") else 0
            values[key] = _number(value, name, source, integer=integer, minimum=minimum)
    return LimitsConfig(**values)


def _parse_user(name: str, table: Mapping[str, Any], source: str, base: Path) -> UserConfig:
    prefix = f"users.{name}"
    _check_keys(table, {"role", "authorized_keys", "password_hash"}, prefix + ".", source)
    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(source, prefix, "user names may contain only letters, digits, '.', '_' and '-'")
    role = table.get("role")
    if role not in ROLES:
        raise ConfigError(source, f"{prefix}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    keys = keys_path = None
    if "authorized_keys" in table:
        keys_path = _path(table["authorized_keys"], f"{prefix}.authorized_keys", source, base)
        try:
            keys = AuthorizedKeys.from_file(keys_path)
        except AuthorizedKeysError as exc:
            raise ConfigError(source, f"{prefix}.authorized_keys", str(exc)) from None
        if not len(keys):
            raise ConfigError(source, f"{prefix}.authorized_keys", f"{keys_path} contains no keys")
    password = None
    if "password_hash" in table:
        value = table["password_hash"]
        if not isinstance(value, str):
            raise ConfigError(source, f"{prefix}.password_hash", "must be a string produced by `shellsvc passwd`")
        try:
            password = parse_password_hash(value)
        except PasswordHashError as exc:
            raise ConfigError(source, f"{prefix}.password_hash", str(exc)) from None
    if keys is None and password is None:
        raise ConfigError(source, prefix,
                          "has no credential: set authorized_keys and/or password_hash (there are no defaults)")
    return UserConfig(name=name, role=role, authorized_keys=keys, authorized_keys_path=keys_path,
                      password_hash=password)
