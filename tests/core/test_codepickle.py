"""Pickled code keeps its file name and carries the source of notebook cells, so that a
function defined in a notebook fails in another process with its lines."""

from __future__ import annotations

import linecache
import subprocess
import sys
import textwrap

import cloudpickle

from durable_nb.core import codepickle

CELL = "/tmp/ipykernel_31337/5eed.py"  # as ipykernel names a cell's code
SOURCE = textwrap.dedent("""\
    def helper(x):
        y = [v + 1 for v in x]
        raise ValueError(f"bad input {y}")
    """)


def _cell_function():
    """``helper`` compiled as a kernel compiles a cell: its lines only in ``linecache``."""
    linecache.cache[CELL] = (len(SOURCE), None, SOURCE.splitlines(True), CELL)
    codepickle._LABELS[CELL] = "Cell In[3]"  # what IPython's compiler would answer
    ns: dict = {"__name__": "__main__"}
    exec(compile(SOURCE, CELL, "exec"), ns)
    return ns["helper"]


def _traceback_elsewhere(data: bytes) -> str:
    """The traceback of calling the unpickled function in a new process."""
    code = ("import pickle, sys, traceback\nf = pickle.loads(sys.stdin.buffer.read())\n"
            "from durable_nb.core.tracebacks import user_traceback\n"
            "try:\n    f([1])\nexcept ValueError:\n    tb = traceback.format_exc()\n"
            "print(tb, 'CLEAN', user_traceback(tb), sep='\\n')\n")
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                         timeout=60, check=True)
    return out.stdout.decode()


def test_a_cells_function_fails_elsewhere_with_its_lines_and_its_cells_label():
    helper = _cell_function()
    assert '"<dynamic-code>", line 3, in helper\n' in _traceback_elsewhere(
        cloudpickle.dumps(helper)), "what cloudpickle alone gives"
    raw, clean = _traceback_elsewhere(codepickle.dumps(helper)).split("CLEAN\n")
    assert f'File "{CELL}", line 3, in helper\n    raise ValueError(f"bad input {{y}}")' in raw
    assert 'File "Cell In[3]", line 3, in helper\n    raise ValueError' in clean
    assert CELL not in clean and clean.rstrip().endswith("ValueError: bad input [2]")


def test_the_pickle_is_the_same_each_time_and_a_cells_text_is_in_it_once():
    helper = _cell_function()
    data = codepickle.dumps(helper)
    assert data == codepickle.dumps(helper), "a task's hash depends on its code only"
    assert data.count(b"bad input {y}") == 1, "the comprehension's code shares the cell's text"


def test_code_from_a_file_keeps_its_name_without_carrying_the_file():
    def local(x):  # pickled by value: a closure of this test
        return x

    data = codepickle.dumps(local)
    assert __file__.encode() in data and b"<dynamic-code>" not in data
    assert b"pickled by value" not in data  # the file's text stays where it is


def test_a_process_that_has_a_cells_lines_keeps_them():
    name = "/tmp/ipykernel_31337/feed.py"
    linecache.cache[name] = (3, None, ["x = 1\n"], name)
    codepickle.register_cell(name, "Cell In[9]", "other = 2\n")
    assert linecache.getlines(name) == ["x = 1\n"] and codepickle.cell_label(name) == "Cell In[9]"
    codepickle.register_cell("/tmp/ipykernel_31337/new.py", None, "a = 1\nb = 2\n")
    assert linecache.getline("/tmp/ipykernel_31337/new.py", 2) == "b = 2\n"
