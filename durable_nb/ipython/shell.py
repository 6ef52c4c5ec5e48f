"""Shell escapes in a %%durable cell. IPython turns ``!cmd`` and ``x = !cmd`` into calls of
``get_ipython()``, which a worker does not have; the magic renames those calls to
``_durable_shell()``, and this stand-in runs the commands in the worker. Magics are refused
with a clear message, since they act on the kernel."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize

from ..core.errors import DurableError

SHELL_NAME = "_durable_shell"


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
