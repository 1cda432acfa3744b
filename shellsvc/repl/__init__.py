"""The prompt_toolkit Python REPL, for the local terminal and for SSH channels."""

from .app import open_history, run_repl
from .completion import NamespaceCompleter
from .embed import embed

__all__ = ["NamespaceCompleter", "embed", "open_history", "run_repl"]
