"""The execution engine: per-user namespaces, off-loop execution, routed streams, interrupts."""

from .compiler import is_complete
from .engine import Engine
from .namespaces import NamespaceRegistry
from .scheduler import Scheduler
from .session import ExecSession, Outcome, SessionClosedError
from .streams import SessionIO

__all__ = ["Engine", "ExecSession", "NamespaceRegistry", "Outcome", "Scheduler", "SessionClosedError", "SessionIO", "is_complete"]
