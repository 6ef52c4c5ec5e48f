"""Cells that depend on a pending ``%%durable`` cell wait for it (Run All without ``--wait``).

A ``%%durable`` cell started without ``--wait`` returns at once while its run goes on in a
worker. The kernel keeps a ``Registry`` of such runs and the names each one assigns. Before
a later cell runs, an AST transformer (``WaitFirst``) looks at the names the cell reads
(``names_needed``): when a pending run assigns one of them, it puts a call of
``__durable_wait__`` before the cell's first statement. That call prints one line naming the run, waits for it to end and
puts its variables into the namespace, so the cell then runs on the finished values. The
wait is part of the cell's execution, so a kernel interrupt or a failed run stops the cell
the way any exception does (and Run All stops there); a ``pre_run_cell`` callback could not
do that, since IPython runs the cell anyway when one raises. Cells that read none of those
names are left as they are and run at once.

An entry stays until its variables have been brought in (by a dependent cell, or by
``%durable attach``), also when its run finished in the background meanwhile. A name that
a later cell assigns itself is no longer taken from the pending run (it is "shadowed"), so
bringing the run's variables in never undoes what later cells did."""

from __future__ import annotations

import ast
import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client.cells import fetch_variables
from ..client.tasks import RunHandle
from ..core.errors import DurableError
from ..core.source import names_assigned, names_needed
from ..core.status import TERMINAL, RunStatus
from .follow import drop_connection, say, short_type, shown
from .shell import SHELL_NAME

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

WAIT_NAME = "__durable_wait__"
SHOWN_NAMES = 6


class DependencyFailed(DurableError):
    """A cell reads a variable that a pending %%durable cell assigns, and that run failed."""


@dataclass
class Pending:
    """A %%durable cell's run that later cells may depend on."""

    run: RunHandle
    assigns: set[str]
    label: str
    shadowed: set[str] = field(default_factory=set)  # assigned again by a later cell

    @property
    def live(self) -> set[str]:
        """The names a later cell still gets from this run."""
        return self.assigns - self.shadowed


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    more = " ..." if len(names) > SHOWN_NAMES else ""
    return ", ".join(names[:SHOWN_NAMES]) + more


class Registry:
    """The pending %%durable runs of one kernel, in the order they were started."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []

    def add(self, run: RunHandle, assigns: Collection[str], label: str) -> None:
        self.discard(run.id)
        self.pending.append(Pending(run, set(assigns), label))

    def discard(self, run_id: str) -> None:
        """Forget a run (its variables are in the namespace now)."""
        self.pending = [p for p in self.pending if p.run.id != run_id]

    def blocking(self, reads: Collection[str]) -> list[Pending]:
        """The pending runs that assign a name of ``reads``, oldest first."""
        return [p for p in self.pending if p.live & set(reads)]

    def shadow(self, names: Collection[str], keep: Collection[Pending] = ()) -> None:
        """A later cell assigns ``names``: pending runs (but ``keep``) no longer give them."""
        for p in self.pending:
            if not any(p is k for k in keep):
                p.shadowed |= set(names)

    def wait_for(self, shell: InteractiveShell, reads: Collection[str]) -> None:
        """Wait for each pending run that assigns a name of ``reads`` (oldest first) and
        put its variables into ``shell``'s namespace; raise when one of them failed."""
        for entry in self.blocking(reads):
            self._settle(shell, entry, entry.live & set(reads))

    def _settle(self, shell: InteractiveShell, entry: Pending, names: set[str]) -> None:
        run, label = entry.run, f"run {entry.run.id} ({entry.label})"
        try:
            summary = run._poll()
            if summary["status"] == RunStatus.COMPLETED:
                say(f"{label} has finished; its variables come first: {_listing(names)}")
            elif summary["status"] not in TERMINAL:
                say(f"waiting for {label} which assigns {_listing(names)}")
                run.wait()
                summary = run._summary or run._poll()
        except KeyboardInterrupt:
            drop_connection(run)
            raise shown(KeyboardInterrupt(), [
                f"KeyboardInterrupt: stopped waiting for {label}; it goes on. Run this cell "
                "again to wait for it."]) from None
        if summary["status"] != RunStatus.COMPLETED:
            raise _failed(entry, summary, names)
        values = fetch_variables(run)
        values.pop(SHELL_NAME, None)
        shell.push({k: v for k, v in values.items() if k not in entry.shadowed})
        self.discard(run.id)


def _failed(entry: Pending, summary: dict, names: set[str]) -> BaseException:
    """The short error of a cell whose pending run ended otherwise than COMPLETED."""
    rid, error = entry.run.id, summary.get("error") or {}
    why = f": {short_type(error.get('type'))}: {error.get('message', '')}" if error else ""
    first = (f"DependencyFailed: run {rid} ({entry.label}), which assigns {_listing(names)}, "
             f"ended {summary['status']}{why}")
    second = (f"This cell did not run. `%durable resume {rid}` continues that run after its "
              f"last checkpoint (then run this cell again); `%durable attach {rid}` shows it.")
    return shown(DependencyFailed(first.split(": ", 1)[1]), [first, second])


_REGISTRIES: weakref.WeakKeyDictionary[Any, Registry] = weakref.WeakKeyDictionary()


def registry(shell: InteractiveShell) -> Registry:
    """The registry of ``shell`` (one per kernel)."""
    if shell not in _REGISTRIES:
        _REGISTRIES[shell] = Registry()
    return _REGISTRIES[shell]


class WaitFirst(ast.NodeTransformer):
    """An IPython AST transformer: a cell that reads names a pending run assigns starts
    with ``__durable_wait__([names])``; other cells are returned unchanged."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    def visit(self, node: ast.AST) -> ast.AST:
        try:
            return self._prepend(node)
        except Exception:  # noqa: BLE001 - IPython would unregister a failing transformer
            return node

    def _prepend(self, node: ast.AST) -> ast.AST:
        pending = registry(self.shell)
        if not pending.pending or not isinstance(node, ast.Module):
            return node
        reads = names_needed(node)
        waits = pending.blocking(reads)
        pending.shadow(names_assigned(node), keep=waits)
        if not waits:
            return node
        wanted = sorted(reads & set().union(*(p.live for p in waits)))
        install(self.shell)
        call = ast.Expr(ast.Call(ast.Name(WAIT_NAME, ast.Load()),
                                 [ast.List([ast.Constant(n) for n in wanted], ast.Load())], []))
        ast.fix_missing_locations(ast.Module([call], []))
        at = 0  # after `from __future__ import ...`, which must come first
        while (at < len(node.body) and isinstance(node.body[at], ast.ImportFrom)
               and getattr(node.body[at], "module", None) == "__future__"):
            at += 1
        node.body.insert(at, call)
        return node


def install(shell: InteractiveShell) -> None:
    """Give ``shell`` the wait function (hidden from %who) and, once, the transformer."""
    def wait(names: list[str]) -> None:
        try:
            registry(shell).wait_for(shell, names)
        except DurableError as exc:  # shown as its message, not a traceback through here
            if not hasattr(exc, "_render_traceback_"):
                shown(exc, [f"{type(exc).__name__}: {exc}"])
            raise

    if not callable(shell.user_ns.get(WAIT_NAME)):
        shell.user_ns[WAIT_NAME] = wait
        shell.user_ns_hidden[WAIT_NAME] = wait
    if not any(isinstance(t, WaitFirst) for t in shell.ast_transformers):
        shell.ast_transformers.append(WaitFirst(shell))
