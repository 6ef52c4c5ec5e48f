"""Shell escapes in a %%durable cell. IPython turns ``!cmd`` and ``x = !cmd`` into calls of
``get_ipython()``, which a worker does not have; the magic renames those calls to
``_durable_shell()``, and this stand-in runs the commands in the worker. Magics are refused
with a clear message, since they act on the kernel."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tokenize

from ..core.errors import DurableError

SHELL_NAME = "_durable_shell"
ROOT_ENV = "DURABLE_NB_ROOT_DIR"  # the Jupyter server's root_dir, when it exports one


class WorkerShell:
    """The part of IPython's shell that a cell can use inside a worker."""

    def system(self, cmd: str) -> int:
        """``!cmd``: run it; its output goes to the run's logs. Returns the exit code."""
        proc = subprocess.run(cmd, shell=True, capture_output=True,
                              stdin=subprocess.DEVNULL, text=True, errors="replace")
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> list[str] | str:
        """``x = !cmd``: its output (stdout and stderr) as a list of lines."""
        out = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, errors="replace").stdout
        return out.splitlines() if split else out

    def _refuse(self, name: str, *args, **kwargs):
        raise DurableError(
            f"%{name} is an IPython magic: magics act on the kernel, and this %%durable cell "
            "runs in a worker process. Run the magic in a normal cell.")

    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1):
        self._refuse(magic_name)

    def run_cell_magic(self, magic_name: str, line: str, cell: str):
        self._refuse(magic_name)


_SHELL = WorkerShell()


def shell() -> WorkerShell:
    """What ``get_ipython()`` returns inside a %%durable cell."""
    return _SHELL


def rename_get_ipython(source: str) -> str:
    """``source`` with every ``get_ipython`` name (not in strings) replaced by the stand-in."""
    spots: list[tuple[int, int]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.string == "get_ipython":
                spots.append(tok.start)
    except (tokenize.TokenError, SyntaxError):
        return source
    if not spots:
        return source
    lines = source.splitlines(keepends=True)
    for row, col in reversed(spots):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + SHELL_NAME + line[col + len("get_ipython"):]
    return "".join(lines)


def magics_in(source: str) -> list[tuple[int, str]]:
    """(line, name) of each IPython magic a cell calls (after ``rename_get_ipython``), so
    that the cell is refused before any of its statements runs."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("run_line_magic", "run_cell_magic")
                and isinstance(node.func.value, ast.Call)
                and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == SHELL_NAME
                and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value)))
    return sorted(found)


def cell_origin(shell: object) -> dict | None:
    """Where a cell run comes from: the notebook (relative to the Jupyter root when the
    server says where that is, else as the frontend gave it), the cell's id (sent by
    JupyterLab, Notebook 7 and nbclient in the execute request's metadata) and its
    execution count. None when the kernel knows none of them."""
    ns = getattr(shell, "user_ns", None) or {}
    session = ns.get("__session__")
    notebook = _relative(session) if isinstance(session, str) and session else None
    cell_id = None
    kernel = getattr(shell, "kernel", None)
    try:  # ipykernel >= 6: the parent message of the request being executed
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:
        parent = None
    parent = parent or getattr(shell, "parent_header", None) or {}
    meta = parent.get("metadata") if isinstance(parent, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("cellId"), str):
        cell_id = meta["cellId"][:1024] or None
    count = cell_number(shell)
    if notebook is None and cell_id is None and count is None:
        return None
    return {"notebook": notebook, "cell_id": cell_id, "execution_count": count}


def cell_number(shell: object) -> int | None:
    """The execution count of the cell running now, as the editor shows it ([5]). IPython 9
    counts the next cell while one runs; the running cell's ExecutionResult has its own."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    count = getattr(result, "execution_count", None)
    if not isinstance(count, int) or isinstance(count, bool):
        count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _relative(path: str) -> str:
    """``path`` relative to the Jupyter root when it lies inside it, with ``/`` separators."""
    root = os.environ.get(ROOT_ENV)
    if root and os.path.isabs(path):
        try:
            rel = os.path.relpath(path, root)
        except ValueError:  # another drive
            rel = ""
        if rel and not rel.startswith(".."):
            path = rel
    return path.replace(os.sep, "/")[:1024]
