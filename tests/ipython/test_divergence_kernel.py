"""A replay divergence of a task defined in a notebook names the user's line as IPython
names it (`Cell In[N], line L`); a %%durable cell's, its line in the cell."""

from __future__ import annotations

import re

from test_magics import run_id


def test_a_notebook_tasks_divergence_names_its_cell_and_line(kernel, scratch):
    kernel.ok(
        "import os, signal, pathlib\n"
        "@dn.step\n"
        "def save(value):\n"
        "    return value\n"
        "@dn.step\n"
        "def crash_once(marks):\n"
        "    p = pathlib.Path(marks, 'crash')\n"
        "    if not p.exists():\n"
        "        p.write_text('x')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "@dn.task(id='kernel-divergence')\n"
        "def changing(path, marks):\n"
        "    value = pathlib.Path(path).read_text()\n"
        "    save(value)\n"
        "    pathlib.Path(path).write_text(value + '!')\n"
        "    crash_once(marks)\n")
    (scratch / "value.txt").write_text("v")
    out = kernel.run(f"changing.trigger({str(scratch / 'value.txt')!r}, "
                     f"{str(scratch)!r}).result(timeout=60)", timeout=90)
    assert out.status == "error" and out.ename.startswith("RunFailed")
    assert re.search(r'File "Cell In\[\d+\]", line 14, in changing: save\(value\)', out.evalue)
    assert "save('v!')" in out.evalue and "save('v')" in out.evalue


def test_a_cell_that_calls_its_steps_differently_after_a_crash_fails(kernel, scratch):
    kernel.ok("@dn.step\ndef fetch(n):\n    return n\n")
    cell = kernel.submit(
        "%%durable --name diverging\n"
        "import os, signal, time\n"
        "if True:  # one statement: it runs again after the crash, and so does its step\n"
        "    got = fetch(time.time_ns())\n"
        "    if not os.path.exists(os.path.join(scratch, 'crashed')):\n"
        "        open(os.path.join(scratch, 'crashed'), 'w').close()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n")
    out = kernel.wait(cell)
    rid = run_id(out.results[0])
    kernel.until(cell, "FAILED", timeout=60)
    error = kernel.value(f"dn.get_run({rid!r})._poll()['error']['message']")
    assert "replay divergence: step 'fetch#1'" in error
    assert 'File "<durable cell>", line 4, in <module>: got = fetch(time.time_ns())' in error
