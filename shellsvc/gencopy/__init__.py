"""Copy, deepcopy and pickle running generators.

``@resumable`` compiles a generator function into a native twin whose whole state lives in
its frame's locals; ``capture(gen)`` converts a suspended native generator into such a twin.
Importing this package registers ``copy``/``pickle`` support for those generators (and
only those).  See ``docs/gencopy.md``.
"""

from __future__ import annotations

from .capture import capture
from .decorator import resumable
from .errors import GencopyError, GeneratorStateError, SourceChangedError, UnsupportedGeneratorError
from .shell import copy_generator, load_generator, save_generator, shell_names
from .state import generator_state, install_copy_hooks, is_resumable_generator, snapshot

install_copy_hooks()

__all__ = [
    "resumable",
    "capture",
    "snapshot",
    "generator_state",
    "is_resumable_generator",
    "copy_generator",
    "save_generator",
    "load_generator",
    "shell_names",
    "GencopyError",
    "UnsupportedGeneratorError",
    "GeneratorStateError",
    "SourceChangedError",
]
