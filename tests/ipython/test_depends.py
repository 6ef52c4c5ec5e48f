"""Cells that read what a pending %%durable cell assigns wait for it; others run at once.
Real kernels (jupyter_client) and whole notebooks under nbclient (Run All, Restart & Run All)
against a real standalone engine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_magics import run_id

WAITING = re.compile(r"\[durable\] waiting for run (run_[0-9a-f]{20}) \(([^)]*)\) which assigns "
                     r"(.*)")


def held(name: str, body: str, gate: str = "go") -> str:
    """A %%durable cell (no --wait) that holds until the file ``gate`` exists in scratch."""
    return (f"%%durable --name {name}\n"
            "import os, time\n"
            f"while not os.path.exists(os.path.join(scratch, {gate!r})):\n"
            "    time.sleep(0.02)\n" + body)


def waiting_lines(text: str) -> list[re.Match]:
    return [m for m in map(WAITING.match, text.splitlines()) if m]


# ---------------------------------------------------------------------- one kernel

def test_only_cells_that_read_what_a_pending_run_assigns_wait(kernel, scratch):
    rid = run_id(kernel.ok(held("dep-a", "alpha = 1\nbeta = alpha + 1\n")).results[0])
    # independent cells run at once, while the run holds
    assert kernel.ok("independent = 5\nprint(independent)", timeout=15).stdout == "5\n"
    assert kernel.ok("def f(gamma):\n    return gamma\nprint(f(3))", timeout=15).stdout == "3\n"
    assert "__durable_wait__" not in kernel.ok("%who").stdout
    cell = kernel.submit("print('sum', alpha + beta)")
    kernel.until(cell, "waiting for run")
    (scratch / "go").write_text("")
    out = kernel.wait(cell)
    assert out.status == "ok", out.text
    assert out.stdout.endswith("sum 3\n")
    [line] = waiting_lines(out.stdout)
    assert line.groups() == (rid, "dep-a", "alpha, beta")
    again = kernel.ok("print(alpha)")
    assert again.stdout == "1\n", "its variables are in, the run is no longer pending"


def test_a_finished_run_still_counts_until_its_variables_are_in(kernel, scratch):
    (scratch / "go").write_text("")
    rid = run_id(kernel.ok(held("dep-done", "late = 'from the run'\n")).results[0])
    # (not `time.sleep`: the run imports time, so a cell reading `time` waits for it too)
    assert kernel.value(f"dn.get_run({rid!r}).wait(30)") == "COMPLETED"
    out = kernel.ok("print(late)")
    assert out.stdout.splitlines() == [
        f"[durable] run {rid} (dep-done) has finished; its variables come first: late",
        "from the run"]


def test_a_durable_cell_waits_before_taking_its_inputs(kernel, scratch):
    first = run_id(kernel.ok(held("dep-first", "base = 20\n")).results[0])
    cell = kernel.submit("%%durable --name dep-second\nresult = base + 1\n")
    kernel.until(cell, "waiting for run")
    (scratch / "go").write_text("")
    out = kernel.wait(cell)
    assert out.status == "ok", out.text
    [line] = waiting_lines(out.stdout)
    assert line.group(1) == first
    second = run_id(out.results[0])
    out = kernel.ok("print(result)")
    assert out.stdout.splitlines()[-1] == "21"
    assert out.stdout.count("[durable]") == 1 and second in out.stdout


def test_a_cell_waits_for_each_run_it_reads_from_in_the_order_they_started(kernel, scratch):
    first = run_id(kernel.ok(held("dep-one", "one = 1\n", gate="go-one")).results[0])
    kernel.ok(held("dep-unrelated", "unrelated = 0\n", gate="never"))
    second = run_id(kernel.ok(held("dep-two", "two = 2\n", gate="go-two")).results[0])
    cell = kernel.submit("print(two + one)")
    kernel.until(cell, "waiting for run")
    (scratch / "go-two").write_text("")
    (scratch / "go-one").write_text("")
    out = kernel.wait(cell)
    assert out.stdout.splitlines()[-1] == "3"
    assert [m.group(1) for m in waiting_lines(out.stdout)] + [
        line.split()[2] for line in out.stdout.splitlines() if "has finished" in line] \
        == [first, second], "one line for each, the older run first; not the unrelated one"
    (scratch / "never").write_text("")


def test_a_later_cell_that_assigns_a_name_keeps_its_value(kernel, scratch):
    kernel.ok("seed = 'kernel'")
    kernel.ok(held("dep-shadow", "label = 'run'\nmeasured = len(seed)\n"))
    kernel.ok("label = 'later cell'\nseed = 'changed later'")  # no wait: it only assigns
    (scratch / "go").write_text("")
    out = kernel.ok("print(measured, label, seed)")
    assert out.stdout.splitlines()[-1] == "6 later cell changed later", \
        "the run's variables do not undo what later cells assigned"


def test_attach_brings_the_variables_and_ends_the_wait(kernel, scratch):
    (scratch / "go").write_text("")
    rid = run_id(kernel.ok(held("dep-attach", "attached = 7\n")).results[0])
    kernel.ok(f"%durable attach {rid} --wait")
    kernel.ok("attached = 8")
    out = kernel.ok("print(attached)")
    assert out.stdout == "8\n", "nothing is pending any more"


def test_an_interrupt_stops_the_waiting_and_not_the_run(kernel, scratch):
    rid = run_id(kernel.ok(held("dep-interrupt", "answer = 42\n")).results[0])
    cell = kernel.submit("print(answer)")
    kernel.until(cell, "waiting for run")
    kernel.km.interrupt_kernel()
    out = kernel.wait(cell)
    assert out.status == "error" and out.ename == "KeyboardInterrupt"
    assert out.traceback == [f"KeyboardInterrupt: stopped waiting for run {rid} "
                             "(dep-interrupt); it goes on. Run this cell again to wait for it."]
    assert kernel.value(f"dn.get_run({rid!r}).status") == "EXECUTING"
    (scratch / "go").write_text("")
    out = kernel.ok("print(answer)")
    assert out.stdout.splitlines()[-1] == "42"


def test_a_failed_run_stops_the_dependent_cell_with_a_short_error(kernel, scratch):
    rid = run_id(kernel.ok(held("dep-fail", "ratio = 1 / 0\n")).results[0])
    (scratch / "go").write_text("")
    out = kernel.run("print('ran'); print(ratio)")
    assert out.status == "error" and out.ename == "DependencyFailed"
    assert "ran" not in out.stdout
    assert out.traceback == [
        f"DependencyFailed: run {rid} (dep-fail), which assigns ratio, ended FAILED: "
        "ZeroDivisionError: division by zero",
        f"This cell did not run. `%durable resume {rid}` continues that run after its last "
        f"checkpoint (then run this cell again); `%durable attach {rid}` shows it."]
    again = kernel.run("print(ratio)")
    assert again.ename == "DependencyFailed", "the run stays pending: it can be resumed"
    kernel.ok("%%durable --wait --name dep-fixed\nratio = 0.5\n")
    assert kernel.ok("print(ratio)").stdout == "0.5\n", "a new run of the cell replaces it"


# ---------------------------------------------------------------------- whole notebooks

RUN_ALL = [
    "%load_ext durable_nb",
    "%%durable\n"
    "import time\n"
    "total = 0\n"
    "for i in range(1, 6):\n"
    "    time.sleep(0.3)\n"
    "    total += i\n"
    "finished_at = time.time()\n",
    "import time\nx = 1\nindependent_at = time.time()",
    "print(total * 2)",
    "%%durable\ntripled = total * 3\n",
    "print(tripled, independent_at < finished_at)",
]


def _execute(cells: list[str], engine_env: dict, cwd: Path):
    """Run the notebook top to bottom in a fresh kernel, as Run All does."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(env={**env, **engine_env})
    finally:
        texts = ["".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                         for o in c.outputs) for c in nb.cells]
    return nb, texts


@pytest.mark.slow
@pytest.mark.parametrize("attempt", ["run all", "restart and run all"])
def test_run_all_waits_only_where_a_cell_reads_a_pending_runs_variables(engine_env, tmp_path,
                                                                        attempt):
    nb, out = _execute(RUN_ALL, engine_env, tmp_path)
    rid = run_id(out[1])
    assert "[durable]" not in out[2], "the independent cell did not wait"
    assert out[3].endswith("30\n")
    [line] = waiting_lines(out[3])
    assert line.group(1) == rid and line.group(3) == "total"
    assert line.group(2).startswith("cell ["), "the run is named after its cell"
    assert out[3].count("[durable]") == 1, "exactly one line about the wait"
    assert out[5].splitlines()[-1] == "45 True", "x = 1 ran before the run ended"
    for cell in nb.cells:
        assert all(o.output_type != "error" for o in cell.outputs)


@pytest.mark.slow
def test_run_all_stops_at_a_cell_whose_pending_run_failed(engine_env, tmp_path):
    from nbclient.exceptions import CellExecutionError

    cells = ["%load_ext durable_nb",
             "%%durable\nimport time\ntime.sleep(0.5)\nratio = 1 / 0\n",
             "print(ratio)",
             "print('not reached')"]
    with pytest.raises(CellExecutionError) as caught:
        _execute(cells, engine_env, tmp_path)
    text = str(caught.value)
    assert "DependencyFailed: run run_" in text and "ended FAILED" in text
    assert "ZeroDivisionError: division by zero" in text and "%durable resume run_" in text
    assert "durable_nb/" not in text, "no traceback through durable_nb"
