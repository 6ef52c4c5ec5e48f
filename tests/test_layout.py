"""The package's layout, checked statically: which sub-package may import which, no import
of the package root from inside it, what the engine and the worker load, how long modules
and functions are, and the aliases kept for stored runs.

docs/architecture.md explains the layout; this file is what keeps it true.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "durable_nb"
PACKAGE = Path(__file__).resolve().parents[1] / ROOT

# Which sub-packages each one may import (its own modules always). The package root
# (durable_nb/__init__.py, __main__.py and the alias modules) may import anything.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "engine": {"store", "core"},
    "worker": {"core"},
    "cluster": {"worker", "core"},
    "server": {"engine", "store", "core"},
    "jupyter": {"server", "engine", "core"},
    "client": {"core", "worker"},
    "ipython": {"client", "widgets", "core"},
    "widgets": {"client", "core"},
    "cli": {"client", "server", "store", "core"},
    "testing": {"engine", "store", "server", "client", "worker", "core"},
}
# The only worker modules the client may import: the run context (calls made inside a
# run) and the cell runner (a %%durable cell is pickled as a call of run_cell).
CLIENT_WORKER_MODULES = {"durable_nb.worker.context", "durable_nb.worker.cells"}

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
# A function may be longer when its docstring says why ("Long because ...").
LONG_REASON = re.compile(r"\blong\b(?![-\w])", re.IGNORECASE)

# Loaded by the engine or a worker, these would cost start-up time and memory for nothing.
HEAVY = ("durable_nb.client", "durable_nb.widgets", "plotly", "anywidget",
         "opentelemetry")  # the engine loads OpenTelemetry only with otlp_endpoint

ALIASES = {
    "durable_nb._cells": "durable_nb.worker.cells",
    "durable_nb._context": "durable_nb.worker.context",
    "durable_nb._tasks": "durable_nb.client.tasks",
    "durable_nb._errors": "durable_nb.core.errors",
    "durable_nb._retry": "durable_nb.core.retry",
}


@dataclass(frozen=True)
class Module:
    name: str  # dotted: durable_nb.engine.engine
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def subpackage(self) -> str | None:
        """The sub-package the module belongs to; None for the package root's own files."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 2 or (self.is_package and len(parts) == 2) else None

    @property
    def rel(self) -> str:
        return str(self.path.relative_to(PACKAGE.parent))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> list[Module]:
    return [
        Module(_module_name(p), p, ast.parse(p.read_text(), filename=str(p)))
        for p in sorted(PACKAGE.rglob("*.py"))
    ]


MODULES = _modules()
MODULE_NAMES = {m.name for m in MODULES}


@dataclass(frozen=True)
class Import:
    module: Module
    line: int
    target: str  # the dotted module imported
    relative: bool
    names: tuple[str, ...]  # for `from X import a, b`; empty for `import X`

    def __str__(self) -> str:
        return f"{self.module.rel}:{self.line} imports {self.target}"


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: Module) -> list[Import]:
    """Every import statement of a module, at any depth (functions, TYPE_CHECKING blocks)."""
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, node.lineno, alias.name, False, ()))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(module, node)
            names = tuple(a.name for a in node.names)
            found.append(Import(module, node.lineno, target, node.level > 0, names))
    return found


def _targets(imp: Import) -> list[str]:
    """The durable_nb modules an import loads: `from pkg import mod` counts as pkg.mod."""
    if imp.target != ROOT and not imp.target.startswith(ROOT + "."):
        return []
    subs = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in MODULE_NAMES]
    return subs or [imp.target]


def _subpackage_of(target: str) -> str | None:
    parts = target.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_has_a_rule():
    subpackages = {m.subpackage for m in MODULES if m.subpackage}
    assert subpackages <= set(ALLOWED), f"no import rule for {subpackages - set(ALLOWED)}"


def test_imports_between_subpackages_follow_the_arrows():
    wrong = []
    for module in MODULES:
        source = module.subpackage
        if source is None:
            continue  # the package root may import anything
        for imp in _imports(module):
            for target in _targets(imp):
                dest = _subpackage_of(target)
                if dest is None or dest == source:
                    continue  # the root is test_nothing_imports_the_package_root's business
                if dest not in ALLOWED[source]:
                    wrong.append(f"{imp}: {source} -> {dest} is not an allowed arrow")
                elif (source, dest) == ("client", "worker") and target not in CLIENT_WORKER_MODULES:
                    wrong.append(f"{imp}: the client may use only {sorted(CLIENT_WORKER_MODULES)}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_package_root():
    wrong = []
    for module in MODULES:
        if module.subpackage is None:
            continue
        for imp in _imports(module):
            if imp.target == ROOT:
                wrong.append(f"{imp}: import what you need from its own module instead")
    assert not wrong, "\n".join(wrong)


def test_imports_inside_the_package_are_relative():
    wrong = [
        f"{imp}: write it as a relative import"
        for module in MODULES
        for imp in _imports(module)
        if not imp.relative and (imp.target == ROOT or imp.target.startswith(ROOT + "."))
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", ["durable_nb.engine.engine", "durable_nb.worker.main"])
def test_the_engine_and_the_worker_do_not_load_the_user_side(module):
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"import {module} failed:\n{done.stderr[-3000:]}"
    loaded = json.loads(done.stdout.splitlines()[-1])
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert not heavy, f"importing {module} loads {heavy}"


def test_no_module_is_too_long():
    long = [
        f"{m.rel}: {n} lines"
        for m in MODULES
        if (n := len(m.path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def _functions(module: Module):
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_is_too_long_without_a_reason():
    long = []
    for module in MODULES:
        for fn in _functions(module):
            n = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if n > MAX_FUNCTION_LINES and not LONG_REASON.search(ast.get_docstring(fn) or ""):
                long.append(f"{module.rel}:{fn.lineno} {fn.name}: {n} lines")
    assert not long, (
        f"functions over {MAX_FUNCTION_LINES} lines whose docstring does not say why they are"
        " long (\"Long because ...\"):\n" + "\n".join(long)
    )


@pytest.mark.parametrize("alias, module", sorted(ALIASES.items()))
def test_the_aliases_of_stored_runs_are_their_new_modules(alias, module):
    assert importlib.import_module(alias) is importlib.import_module(module)
    assert sys.modules[alias] is sys.modules[module]
