"""The SSH service: authentication, roles, sshd-grade limits, PTY REPL, exec, audit, config.

See docs/server.md. ``Service`` embeds the server in a running asyncio application.
"""

from __future__ import annotations

from .audit import AuditLog, AuditLogError
from .authorized_keys import AuthorizedKeys, AuthorizedKeysError
from .config import ConfigError, LimitsConfig, ServerConfig, ServiceConfig, UserConfig, load_config, parse_config
from .context import RoleHandler, SessionContext
from .hostkey import HostKeyError, load_or_create_host_key
from .passwords import hash_password, verify_password
from .service import Service

__all__ = [
    "AuditLog",
    "AuditLogError",
    "AuthorizedKeys",
    "AuthorizedKeysError",
    "ConfigError",
    "HostKeyError",
    "LimitsConfig",
    "RoleHandler",
    "ServerConfig",
    "Service",
    "ServiceConfig",
    "SessionContext",
    "UserConfig",
    "hash_password",
    "load_config",
    "load_or_create_host_key",
    "parse_config",
    "verify_password",
]
