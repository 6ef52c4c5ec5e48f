"""Tracebacks of code defined in a notebook, in a real kernel against a real engine: the
frames of its cells come back with their lines and the cell they come from (``Cell In[N]``),
with no frame of durable_nb, wherever the error is shown."""

from __future__ import annotations

import pytest
from _support import EngineProcess
from test_magics import Kernel

pytestmark = pytest.mark.slow

HELPER = """\
helper_cell = len(In) - 1  # this cell's number

def helper(x):
    y = x + 1
    raise ValueError(f"bad input {y}")
"""

TASK = """\
task_cell = len(In) - 1

@dn.step
def checked(x):
    return helper(x)

@dn.task(id="kernel-tracebacks", retry=dn.Retry(max_attempts=1))
def job(x):
    return checked(x) * 2
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    eng = EngineProcess(tmp_path_factory.mktemp("tracebacks") / "store.duckdb",
                        ["--wait-grace", "0.3"])
    client = eng.start()
    k = Kernel.start({"DURABLE_NB_URL": client.url, "DURABLE_NB_TOKEN": client.token})
    try:
        k.ok("%load_ext durable_nb\nimport durable_nb as dn")
        k.ok(HELPER)
        k.ok(TASK)
        yield k
    finally:
        k.close()
        eng.stop()


def test_a_tasks_failure_shows_the_notebooks_cells_and_lines(kernel):
    h, t = kernel.value("helper_cell"), kernel.value("task_cell")
    out = kernel.run("run = job.trigger(1)\nrun.result(timeout=60)")
    assert out.status == "error"
    shown = "\n".join(out.traceback)
    assert f'File "Cell In[{h}]", line 5, in helper\n    raise ValueError(f"bad input {{y}}")' \
        in shown
    assert f'File "Cell In[{t}]", line 5, in checked\n    return helper(x)' in shown
    assert f'File "Cell In[{t}]", line 9, in job\n    return checked(x) * 2' in shown
    assert shown.rstrip().endswith("ValueError: bad input 2")
    assert "durable_nb/" not in shown and "<dynamic-code>" not in shown
    assert "ipykernel_" not in shown, "the cell's label, not the kernel's temporary file"
    stored = kernel.value("run.info()['error']['traceback']")  # what the widget and panel show
    assert f'File "Cell In[{h}]", line 5, in helper' in stored and "durable_nb/" not in stored
    step = kernel.value("run.steps[0]['traceback']")
    assert f'File "Cell In[{h}]", line 5, in helper' in step


def test_except_catches_the_tasks_exception_type(kernel):
    out = kernel.ok("try:\n    run.result()\nexcept ValueError as exc:\n"
                    "    print('caught', isinstance(exc, dn.RunFailed), exc.run_id == run.id)\n")
    assert out.stdout.strip() == "caught True True"


def test_a_durable_cell_shows_the_helpers_line_and_its_own_with_the_editors_numbers(kernel):
    h = kernel.value("helper_cell")
    out = kernel.run("%%durable --wait\n"
                     "a = 1\n"
                     "\n"
                     "b = helper(a)\n")
    assert out.status == "error"
    shown = "\n".join(out.traceback)
    assert 'File "<durable cell>", line 4, in <module>\n    b = helper(a)' in shown
    assert f'File "Cell In[{h}]", line 5, in helper\n    raise ValueError' in shown
    assert "durable_nb/" not in shown and "<dynamic-code>" not in shown
