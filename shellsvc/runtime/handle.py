"""Registry entries: one ``PluginHandle`` per plugin, stable across reloads."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PluginError

__all__ = ["PluginHandle", "PluginState"]


class PluginState(str, enum.Enum):
    """``loaded`` -> ``started`` -> ``stopped``; ``failed`` when ``start``/``stop`` raised."""

    LOADED = "loaded"
    STARTED = "started"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(eq=False)
class PluginHandle:
    """What the runtime knows about one plugin.

    The handle object survives reloads: ``plugin`` always points at the version that is
    serving, ``generation`` counts successful (re)loads, ``error`` keeps the last failure
    (a failed reload leaves ``state`` and ``plugin`` untouched but records its error here).
    """

    name: str
    path: Path  #: the source: plugin file, package directory or extension file
    kind: str  #: "module", "package" or "extension"
    module: str  #: the namespaced module name in ``sys.modules``
    plugin: Any  #: the live plugin instance (the module itself for an extension)
    files: dict[Path, str]  #: sha256 of every source file of this version
    state: PluginState = PluginState.LOADED
    loaded_at: float = field(default_factory=time.time)
    generation: int = 1
    error: PluginError | None = None

    @property
    def version(self) -> str:
        return str(getattr(self.plugin, "version", getattr(self.plugin, "__version__", "")) or "")

    @property
    def sha256(self) -> str:
        """sha256 of the source (of the single file, or of the package's main ``__init__.py``)."""
        main = self.path / "__init__.py" if self.kind == "package" else self.path
        return self.files.get(main, "")

    def __repr__(self) -> str:
        version = f" v{self.version}" if self.version else ""
        error = f" error={self.error}" if self.error else ""
        return (
            f"<PluginHandle {self.name!r}{version} {self.state} gen={self.generation} "
            f"{self.kind}={str(self.path)!r} sha256={self.sha256[:12]}{error}>"
        )
