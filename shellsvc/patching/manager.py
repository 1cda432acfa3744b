"""The patch manager: applies hot swaps with a journal, health checks, conflicts and rollback.

One :class:`PatchManager` per service, given that service's state directory: the journal
is ``<state_dir>/patches.jsonl`` and admins' own patch modules are read from
``<state_dir>/patches/`` (or the directories passed as ``patch_dirs``). The module-level
:func:`hotswap`, :func:`rollback`, :func:`patches` and :func:`commit` use a default
manager that keeps its journal in memory until :func:`set_default_manager` installs one
with a state directory.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import getpass
import inspect
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shellsvc.engine.identity import current_user  # who patches: set by the engine per session
from shellsvc.pubsub import Subscribers

from .commit import commit_source
from .errors import PatchConflict, PatchError, PatchHealthError, PatchNotFound, PatchRefused
from .events import Callback, PatchEvent, PatchSubscription
from .hotswap import Plan, plan_patch
from .journal import PatchJournal, PatchRecord
from .resolve import PatchResolver, default_resolver, set_default_resolver

__all__ = [
    "PatchManager",
    "ReapplyReport",
    "commit",
    "current_user",
    "default_manager",
    "hotswap",
    "patches",
    "rollback",
    "set_default_manager",
]

log = logging.getLogger(__name__)


HealthCheck = Callable[[], Any]

# What is being patched right now, across all managers: Plan.keys item -> description.
_busy: dict[tuple[Any, ...], str] = {}
_busy_lock = threading.Lock()


def _user(user: str | None) -> str:
    if user:
        return user
    from_context = current_user.get()
    if from_context:
        return from_context
    return _os_user()


@functools.lru_cache(maxsize=1)
def _os_user() -> str:
    """The process's login name (looked up once: a passwd lookup costs as much as a small swap)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry / no login name in a container
        return "unknown"


@contextmanager
def _exclusive(plan: Plan, what: str) -> Iterator[None]:
    """Hold everything ``plan`` touches for one operation; a concurrent one gets :class:`PatchConflict`."""
    keys = plan.keys
    with _busy_lock:
        holders = {_busy[key] for key in keys if key in _busy}
        if holders:
            raise PatchConflict(
                f"{plan.description} is being changed right now ({'; '.join(sorted(holders))}); retry when it finishes"
            )
        for key in keys:
            _busy[key] = what
    try:
        yield
    finally:
        with _busy_lock:
            for key in keys:
                _busy.pop(key, None)


def health_check_result(check: HealthCheck) -> Any:
    """Call ``check`` and return its result, awaited if it is async (in a loop of its own:
    the caller is a worker thread; on the event loop's thread an async check is refused)."""
    result = check()
    if inspect.isawaitable(result):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_await(result))
        if hasattr(result, "close"):
            result.close()
        raise PatchError("an async health check cannot run on the event loop thread; call patch() from a worker thread")
    return result


def run_health_check(check: HealthCheck) -> None:
    """Raise if the check raises or returns a false value; await it if it is async."""
    result = health_check_result(check)
    if result is False or (result is not True and result is not None and not result):
        raise PatchError(f"health check returned {result!r}")


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass
class ReapplyReport:
    """Outcome of re-applying the journal after a restart."""

    applied: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # id -> reason (e.g. target no longer resolves)
    skipped: dict[int, str] = field(default_factory=dict)  # committed, no source recorded, module not imported yet
    superseded: dict[int, str] = field(default_factory=dict)  # the target's source changed since: retired

    def __str__(self) -> str:
        parts = [f"re-applied {len(self.applied)} patch(es)"]
        parts += [f"#{pid} failed: {why}" for pid, why in self.failed.items()]
        parts += [f"#{pid} skipped: {why}" for pid, why in self.skipped.items()]
        parts += [f"#{pid} superseded: {why}" for pid, why in self.superseded.items()]
        return "; ".join(parts)


class PatchManager:
    """Applies, lists, rolls back and commits patches; journals every step.

    ``state_dir`` holds the journal (``patches.jsonl``, mode 0600); without it the journal
    lives in memory only. ``patch_dirs`` are the directories whose ``*.py`` files provide
    admins' own patches by short or dotted name (see :class:`PatchResolver`); by default
    ``<state_dir>/patches``, created with mode 0700. ``resolver`` overrides both. The
    service makes one manager and passes it to :func:`set_default_manager` so that
    plugin-method keywords and :func:`percall` resolve names in the same directories.
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        patch_dirs: list[str | Path] | None = None,
        resolver: PatchResolver | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.journal = PatchJournal(self.state_dir) if self.state_dir is not None else None
        if resolver is None:
            if patch_dirs is None:
                patch_dirs = [self._default_patch_dir()] if self.state_dir is not None else []
            resolver = PatchResolver(patch_dirs)
        self.resolver = resolver
        self._lock = threading.RLock()
        self._records: dict[int, PatchRecord] = self.journal.records() if self.journal else {}
        self._plans: dict[int, Plan] = {}  # patches applied in this process, by id
        self._next_id = max(self._records, default=0) + 1
        self._subscribers = Subscribers()

    @property
    def patch_dirs(self) -> list[Path]:
        """Where admins drop their own patch modules (``*.py`` with an ``__all__``)."""
        return self.resolver.dirs

    def _default_patch_dir(self) -> Path:
        assert self.state_dir is not None
        path = self.state_dir / "patches"
        if not path.is_dir():
            path.mkdir(parents=True, mode=0o700, exist_ok=True)
            log.info("created the admin patch directory %s", path)
        return path

    # -- events --------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> PatchSubscription:
        """Call ``callback(event)`` with a :class:`PatchEvent` after every change, from any path.

        Applied, rolled back (also a journal entry retired), committed, superseded, a
        failed health check (already rolled back), re-applied after a restart. The callback
        runs on the thread that made the change, after it is complete and outside the
        manager's locks: hand work to your own thread or loop (``call_soon_threadsafe``).
        An exception in it is logged, never raised to whoever patched. ``close()`` the
        returned subscription to stop.
        """
        return self._subscribers.add(callback)

    def _emit(self, kind: str, records: list[PatchRecord], user: str | None, **details: Any) -> None:
        self._subscribers.emit(PatchEvent(
            kind, tuple(r.id for r in records), tuple(r.target for r in records), user, **details,
        ))

    # -- applying ------------------------------------------------------------------

    def patch(
        self,
        target: Any,
        replacement: Any,
        *,
        user: str | None = None,
        health_check: HealthCheck | None = None,
        note: str | None = None,
    ) -> PatchRecord:
        """Hot-swap ``target`` with ``replacement`` (source text, a function, or for classes a class).

        Everything is compiled and checked first (a refusal changes nothing). If
        ``health_check`` raises or returns false, the patch is rolled back and
        :class:`PatchHealthError` raised. A concurrent patch of the same target raises
        :class:`PatchConflict`.
        """
        plan = plan_patch(target, replacement)
        who = _user(user)
        failure: Exception | None = None
        with _exclusive(plan, f"patch by {who}"):
            with self._lock:
                patch_id = self._next_id
                self._next_id += 1
            plan.apply()
            if health_check is not None:
                try:
                    run_health_check(health_check)
                except Exception as exc:  # reported below, once the target is free again
                    plan.revert()
                    failure = exc
                except BaseException:  # interrupted (Ctrl-C in the shell): never leave it half-done
                    plan.revert()
                    raise
            if failure is None:
                record = PatchRecord(
                    id=patch_id,
                    target=plan.description,
                    path=plan.path,
                    kind=plan.kind,
                    before_source=plan.before_source,
                    after_source=plan.after_source,
                    user=who,
                    time=time.time(),
                    note=note,
                )
                with self._lock:
                    self._records[patch_id] = record
                    self._plans[patch_id] = plan
                if self.journal is not None:
                    self.journal.append(record.to_event())
        if failure is not None:
            log.warning("patch of %s failed its health check (%s); rolled back", plan.description, failure)
            self._subscribers.emit(PatchEvent(
                "health_check_failed", (patch_id,), (plan.description,), who, reason=str(failure), note=note,
            ))
            raise PatchHealthError(
                f"patch of {plan.description} failed its health check ({failure}); it was rolled back, nothing changed"
            ) from failure
        log.info("patch #%d applied to %s by %s", patch_id, plan.description, who)
        self._emit("applied", [record], who, note=note)
        return record

    def rollback(self, patch_id: int, *, user: str | None = None) -> PatchRecord:
        """Restore exactly what patch ``patch_id`` replaced (the original code objects)."""
        record = self.get(patch_id)
        if not record.active:
            raise PatchError(f"patch #{patch_id} is already {record.status}")
        who = _user(user)
        plan = self._plans.get(patch_id)
        if plan is None:
            # Known from the journal but never applied in this process: just retire it.
            reason = "not applied in this process; marked rolled back so it is not re-applied"
            self._retire(record, who, reason)
            self._emit("rolled_back", [record], who, reason=reason)
            return record
        with _exclusive(plan, f"rollback of #{patch_id} by {who}"):
            with self._lock:
                if self._plans.get(patch_id) is not plan:
                    raise PatchError(f"patch #{patch_id} is already {record.status}")
                later = self._later(patch_id, plan)
                if later:
                    raise PatchConflict(
                        f"patch #{patch_id} of {record.target} has later patches on top "
                        f"({', '.join('#%d' % p for p in later)}); roll those back first"
                    )
                plan.revert()
                del self._plans[patch_id]
            self._retire(record, who, None)
        if record.committed_to:
            log.warning("patch #%d was committed to %s; the file keeps the change (backup: %s)", patch_id, record.committed_to, record.backup)
        log.info("patch #%d of %s rolled back by %s", patch_id, record.target, who)
        self._emit("rolled_back", [record], who)
        return record

    def supersede(self, module: str, *, reason: str = "module reloaded") -> list[int]:
        """Retire the active patches of ``module`` (and its submodules); returns their ids.

        For the plugin runtime, after it reloads or unloads a module: the new version is
        loaded from its file, so patches made to the old one no longer run - and must not
        be re-applied over the new code after a restart. Nothing is reverted (the old
        objects belong to the version that was replaced). Commit a patch first to keep it.
        """
        with self._lock:
            retired = [
                record for record in self.patches(active_only=True)
                if (owner := (record.path or "").partition(":")[0]) == module or owner.startswith(module + ".")
            ]
            self._supersede_records(retired, reason)
        if retired:
            log.info("patches %s of %s superseded (%s)", ", ".join(f"#{r.id}" for r in retired), module, reason)
            self._emit("superseded", retired, None, reason=reason)
        return [r.id for r in retired]

    def _supersede_records(self, records: list[PatchRecord], reason: str) -> None:
        with self._lock:
            for record in records:
                self._plans.pop(record.id, None)
                record.status = "superseded"
                event = {"op": "supersede", "id": record.id, "reason": reason, "time": time.time()}
                record.history.append(event)
                if self.journal is not None:
                    self.journal.append(event)

    def _later(self, patch_id: int, plan: Plan) -> list[int]:
        """Applied patches newer than ``patch_id`` that touch something it touched."""
        keys = plan.keys
        return sorted(pid for pid, other in self._plans.items() if pid > patch_id and other.keys & keys)

    def _retire(self, record: PatchRecord, who: str, reason: str | None) -> None:
        record.status = "rolled back"
        event = {"op": "rollback", "id": record.id, "user": who, "time": time.time()}
        if reason:
            event["reason"] = reason
        record.history.append(event)
        if self.journal is not None:
            self.journal.append(event)

    # -- inspecting ----------------------------------------------------------------

    def get(self, patch_id: int) -> PatchRecord:
        try:
            return self._records[patch_id]
        except KeyError:
            known = ", ".join(f"#{p}" for p in sorted(self._records)) or "none"
            raise PatchNotFound(f"no patch #{patch_id} (known: {known})") from None

    def patches(self, *, active_only: bool = False) -> list[PatchRecord]:
        """Every patch this manager knows (journal included), oldest first."""
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.id)
        return [r for r in records if r.active] if active_only else records

    def applied(self, patch_id: int) -> bool:
        """Whether patch ``patch_id`` is applied in this process."""
        return patch_id in self._plans

    def format_list(self) -> str:
        """A table for the REPL/console ``patches list`` command."""
        rows = [r.summary() + ("" if not r.active or self.applied(r.id) else "  (not applied in this process)") for r in self.patches()]
        return "\n".join(rows) if rows else "no patches"

    # -- persistence ---------------------------------------------------------------

    def commit(self, patch_id: int, *, user: str | None = None) -> Path:
        """Write patch ``patch_id`` into its module's source file (a backup is kept next to it)."""
        record = self.get(patch_id)
        if not record.active:
            raise PatchError(f"patch #{patch_id} is {record.status}; only an active patch can be committed")
        if record.path is None or record.after_source is None:
            raise PatchRefused(f"patch #{patch_id} of {record.target} has no {'source' if record.path else 'importable location'} to commit")
        plan = self._plans.get(patch_id)
        if plan is not None:
            later = self._later(patch_id, plan)
            if later:
                raise PatchConflict(
                    f"patch #{patch_id} of {record.target} has later patches on top ({', '.join('#%d' % p for p in later)}), "
                    "so the file would not hold the running code; commit the latest one or roll those back first"
                )
        module_name, _, qualname = record.path.partition(":")
        path, backup = commit_source(module_name, qualname, record.kind, record.after_source, patch_id)
        record.committed_to, record.backup = str(path), str(backup)
        event = {"op": "commit", "id": patch_id, "file": str(path), "backup": str(backup), "user": _user(user), "time": time.time()}
        record.history.append(event)
        if self.journal is not None:
            self.journal.append(event)
        log.info("patch #%d committed to %s (backup %s)", patch_id, path, backup)
        self._emit("committed", [record], event["user"], committed_to=str(path))
        return path

    def reapply(self, *, import_modules: bool = False) -> ReapplyReport:
        """Re-apply the journal's active, uncommitted patches (after a restart), oldest first.

        Call it once the application's modules and plugins are loaded. A patch whose
        module is not imported yet is skipped (importing it early could run its import
        side effects out of order) unless ``import_modules``; calling again later applies
        what is still missing, nothing twice. A patch whose target's source changed since
        the patch was made (the file was edited - a deploy) is not put over the new code:
        it is marked superseded, like patches of a reloaded plugin. Replacement code runs
        (default values, decorators): in an async service, call this from a worker thread.
        """
        report = ReapplyReport()
        for record in self.patches(active_only=True):
            if self.applied(record.id):
                continue
            if record.committed_to:
                report.skipped[record.id] = f"committed to {record.committed_to}"
                continue
            if record.path is None or record.after_source is None:
                report.skipped[record.id] = "no importable target or no replacement source was recorded"
                continue
            module_name = record.path.partition(":")[0]
            if not import_modules and module_name not in sys.modules:
                report.skipped[record.id] = f"module {module_name} is not imported yet; call reapply() again once it is"
                continue
            try:
                plan = plan_patch(record.path, record.after_source)
                if _edited_since(record, plan.before_source):
                    reason = f"the source of {record.target} changed since the patch was made; not re-applied over it"
                    self._supersede_records([record], reason)
                    report.superseded[record.id] = reason
                    log.warning("patch #%d: %s", record.id, reason)
                    self._emit("superseded", [record], None, reason=reason)
                    continue
                with _exclusive(plan, f"re-apply of #{record.id}"):
                    plan.apply()
                    with self._lock:
                        self._plans[record.id] = plan
            except Exception as exc:  # reported to the caller, one entry per patch
                report.failed[record.id] = f"{type(exc).__name__}: {exc}"
                log.warning("could not re-apply patch #%d to %s: %s", record.id, record.path, exc)
                continue
            report.applied.append(record.id)
            self._emit("reapplied", [record], record.user, reason="re-applied from the journal", note=record.note)
        return report


def _edited_since(record: PatchRecord, current: str | None) -> bool:
    """Whether the target now runs neither what the patch replaced nor the patch (formatting aside)."""
    if record.before_source is None or current is None:
        return False  # nothing to compare: trust the journal
    shape = _shape(current)
    return shape != _shape(record.before_source) and (record.after_source is None or shape != _shape(record.after_source))


def _shape(text: str) -> str:
    try:
        return ast.dump(ast.parse(textwrap.dedent(text)))
    except SyntaxError:
        return "\n".join(line.rstrip() for line in text.strip().splitlines())


_default_manager = PatchManager(resolver=default_resolver())
_default_lock = threading.Lock()


def default_manager() -> PatchManager:
    """The manager the module-level :func:`hotswap`, :func:`rollback`... use."""
    return _default_manager


def set_default_manager(manager: PatchManager) -> PatchManager:
    """Make ``manager`` the one the module-level functions use; returns the previous one.

    Its resolver becomes the process-wide default too, so names given to plugin methods
    and :func:`percall` (``decorator="my_patch"``) are found in its patch directories.
    """
    global _default_manager
    with _default_lock:
        previous, _default_manager = _default_manager, manager
        set_default_resolver(manager.resolver)
    return previous


def hotswap(target: Any, replacement: Any, *, user: str | None = None, health_check: HealthCheck | None = None, note: str | None = None) -> PatchRecord:
    """Hot-swap ``target`` in place (see :meth:`PatchManager.patch`)."""
    return _default_manager.patch(target, replacement, user=user, health_check=health_check, note=note)


def rollback(patch_id: int, *, user: str | None = None) -> PatchRecord:
    return _default_manager.rollback(patch_id, user=user)


def patches(*, active_only: bool = False) -> list[PatchRecord]:
    return _default_manager.patches(active_only=active_only)


def commit(patch_id: int, *, user: str | None = None) -> Path:
    return _default_manager.commit(patch_id, user=user)
