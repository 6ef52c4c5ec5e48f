"""``%durable debug RUN`` in a real kernel against a real engine: a failed step's exception
rises again in the kernel from the notebook's own line, with the arguments the run
recorded, and ``%debug`` (driven through the kernel's stdin) shows those values; a cell's
failing statement runs on its checkpoint's variables; ``%durable resume`` then completes
the run once the cause is fixed."""

from __future__ import annotations

import json

import pytest
from test_magics import ANSI, Kernel, run_id

TASK = """\
step_cell = len(In) - 1
import json, os

@dn.step
def load(path):
    with open(path) as f:
        return json.load(f)

@dn.step
def summarize(record):
    words = record["text"].split()
    if not words and not os.path.exists(os.path.join(scratch, "allow-empty")):
        raise ValueError(f"record {record['id']} has no text")
    return len(words)

@dn.task(id="debug-summaries", retry=dn.Retry(max_attempts=1))
def summaries(path):
    records = load(path)
    return [summarize(r) for r in records]
"""
RAISE_LINE = 13  # of TASK: the `raise ValueError` line

RECORDS = [{"id": 1, "text": "a b"}, {"id": 2, "text": "c d e"}, {"id": 3, "text": ""}]


@pytest.fixture(scope="module")
def defined(kernel, tmp_path_factory):
    """The task defined in the kernel; a file of records whose third one is empty."""
    folder = tmp_path_factory.mktemp("debug")
    (folder / "records.json").write_text(json.dumps(RECORDS))
    kernel.ok(f"scratch = {str(folder)!r}")
    kernel.ok(TASK)
    return folder


def failed_run(kernel: Kernel, code: str) -> str:
    """Start a run in the kernel (``code`` is an expression giving its handle) and wait
    until it has failed; its id."""
    out = kernel.ok(f"r = {code}\nprint(r.id, r.wait(60))")
    rid, status = out.stdout.split()
    assert status == "FAILED", out.text
    return rid


def pdb_session(kernel: Kernel, commands: list[str], timeout: float = 30.0):
    """``%debug`` with ``commands`` typed at its prompts (the kernel's stdin channel)."""
    msg_id = kernel.submit("%debug")
    for cmd in commands:
        msg = kernel.kc.get_stdin_msg(timeout=timeout)
        assert msg["content"]["prompt"].strip().startswith("ipdb>"), msg["content"]
        kernel.kc.input(cmd)
    return kernel.wait(msg_id, timeout)


def last_frame(traceback: list[str]) -> str:
    frames = [t for t in traceback if "Cell In[" in t or t.lstrip().startswith("File ")]
    assert frames, traceback
    return frames[-1]


def test_debug_raises_the_failed_step_at_its_line_with_the_recorded_arguments(kernel, defined):
    cell = kernel.value("step_cell")
    rid = failed_run(kernel, "summaries.trigger(os.path.join(scratch, 'records.json'))")
    out = kernel.run(f"%durable debug {rid}")
    assert out.status == "error" and out.ename == "ValueError", out.text
    assert out.evalue == "record 3 has no text"
    assert f"re-raising step summarize#3 of {rid} with its recorded arguments" in out.stdout
    assert f"`%durable resume {rid}`" in out.stdout
    shown = "\n".join(out.traceback)
    frame = last_frame(out.traceback)
    assert f"Cell In[{cell}], line {RAISE_LINE}" in frame, shown
    assert 'raise ValueError(f"record {record[\'id\']} has no text")' in frame
    assert "durable_nb/" not in shown and "interactiveshell.py" not in shown, shown
    assert kernel.value("_durable_args") == ({"id": 3, "text": ""},)
    assert kernel.value("_durable_kwargs") == {}

    post = pdb_session(kernel, ["p record", "p words", "q"])
    assert "{'id': 3, 'text': ''}" in post.stdout and "[]" in post.stdout, post.text
    assert f"({RAISE_LINE})summarize()" in ANSI.sub("", post.stdout), "pdb is at that line"

    (defined / "allow-empty").write_text("")  # the fix: empty records count as 0 words
    try:
        done = kernel.ok(f"%durable resume {rid} --wait", timeout=90)
    finally:
        (defined / "allow-empty").unlink()
    assert f"resumed run {rid}" in done.stdout
    assert kernel.value(f"dn.get_run({rid!r}).result(timeout=10)") == [2, 3, 0]


def test_a_step_that_completed_is_called_again_with_step(kernel, defined):
    rid = failed_run(kernel, "summaries.trigger(os.path.join(scratch, 'records.json'))")
    out = kernel.ok(f"%durable debug {rid} --step summarize#2")
    assert "step summarize#2 returned without raising here" in out.stdout
    assert out.results == ["3"]
    assert kernel.value("_durable_args") == ({"id": 2, "text": "c d e"},)


def test_mistakes_are_refused_with_what_to_do(kernel, defined):
    rid = failed_run(kernel, "summaries.trigger(os.path.join(scratch, 'records.json'))")
    out = kernel.run(f"%durable debug {rid} --step nope#1")
    assert out.status == "error" and out.ename == "UsageError"
    assert "has no step 'nope#1'; its steps: load#1, summarize#1, summarize#2, summarize#3" \
        in out.evalue
    (defined / "none.json").write_text("[]")
    done = kernel.ok("ok = summaries.trigger(os.path.join(scratch, 'none.json'))\nok.wait(60)")
    assert done.results == ["'COMPLETED'"]
    out = kernel.run("%durable debug ok")
    assert out.ename == "UsageError", out.text
    assert "COMPLETED and has no failed step; `--step KEY` calls a recorded step again " \
           "(its steps: load#1)" in out.evalue


def test_a_kernel_without_the_task_loads_the_runs_code(kernel, defined, engine_env):
    cell = kernel.value("step_cell")
    rid = failed_run(kernel, "summaries.trigger(os.path.join(scratch, 'records.json'))")
    kernel.ok("zero = 0")
    first = run_id(kernel.ok("%%durable --name first-fails\nratio = 1 / zero\n").results[0])
    assert kernel.value(f"dn.get_run({first!r}).wait(60)") == "FAILED"
    fresh = Kernel.start(engine_env)
    try:
        out = fresh.run(f"%load_ext durable_nb\n%durable debug {first}")
        assert out.ename == "ZeroDivisionError", out.text
        assert "variables before its first statement (the notebook variables it read) " \
               "(zero); running statement 1 (line 2) here" in out.stdout
        frame = last_frame(out.traceback)
        assert f"<durable cell {first}>" in frame and ":2" in frame, out.traceback
        assert "ratio = 1 / zero" in "\n".join(out.traceback)
        assert fresh.value("zero") == 0
        out = fresh.run(f"%durable debug {rid}")
        assert out.ename == "ValueError" and out.evalue == "record 3 has no text", out.text
        frame = last_frame(out.traceback)
        assert f"Cell In[{cell}], line {RAISE_LINE}" in frame, out.traceback
        assert "durable_nb/" not in "\n".join(out.traceback)
        post = pdb_session(fresh, ["p record['id']", "q"])
        assert "\n3\n" in post.stdout, post.text
    finally:
        fresh.close()


BODY = """\
body_cell = len(In) - 1

@dn.step
def double(n):
    with open(os.path.join(scratch, "doubled"), "a") as f:
        f.write("x")
    return 2 * n

@dn.task(id="debug-body", retry=dn.Retry(max_attempts=1))
def ratio(n):
    total = double(n)
    return 10 / (total - 2 * n)
"""


def test_a_failure_between_steps_runs_the_task_here_with_its_recorded_steps(kernel, defined):
    kernel.ok(BODY)
    cell = kernel.value("body_cell")
    rid = failed_run(kernel, "ratio.trigger(21)")
    out = kernel.run(f"%durable debug {rid}")
    assert out.ename == "ZeroDivisionError", out.text
    assert "failed in its task's own code, not in a step" in out.stdout
    frame = last_frame(out.traceback)
    assert f"Cell In[{cell}], line 12" in frame and "return 10 / (total - 2 * n)" in frame
    assert (defined / "doubled").read_text() == "x", "the recorded step was not run again"
    post = pdb_session(kernel, ["p total", "q"])
    assert "\n42\n" in post.stdout, post.text

    kernel.ok(BODY.replace("(total - 2 * n)", "(total - n)"))  # the fix, a new version
    out = kernel.run(f"%durable resume {rid} --wait")
    assert out.ename == "RunFailed", "the resumed run ran its own code and failed again"
    assert "ZeroDivisionError: division by zero" in out.text
    assert f"task 'debug-body' in this kernel (ratio) has changed since run {rid} started; " \
           "the resume runs the run's own code" in out.stdout, out.text
    assert f"dn.get_run({rid!r}).fork(task=ratio)" in out.stdout


CELL = """\
%%durable --name debug-cell
import os
rows = [3, 1, 0]
total = sum(rows)
share = total // int(open(os.path.join(scratch, "divisor")).read())
"""


def test_a_cell_run_restores_its_checkpoint_and_raises_at_the_failing_statement(kernel,
                                                                                 defined):
    (defined / "divisor").write_text("0")
    out = kernel.ok(CELL)
    cell = kernel.value("len(In) - 2")
    rid = run_id(out.results[0])
    assert kernel.value(f"dn.get_run({rid!r}).wait(60)") == "FAILED"
    assert kernel.value("'rows' in dir()") is False
    out = kernel.run(f"%durable debug {rid}")
    assert out.ename == "ZeroDivisionError", out.text
    assert f"restored run {rid}'s variables after statement 3 of 4" in out.stdout
    assert "running statement 4 (line 5) here" in out.stdout
    frame = last_frame(out.traceback)
    assert f"Cell In[{cell}], line 5" in frame, out.traceback
    assert "share = total // int(" in frame
    assert kernel.value("(rows, total)") == ([3, 1, 0], 4)
    post = pdb_session(kernel, ["p total", "p rows", "q"])
    assert "\n4\n" in post.stdout and "[3, 1, 0]" in post.stdout, post.text

    (defined / "divisor").write_text("2")
    done = kernel.ok(f"%durable resume {rid} --wait", timeout=90)
    assert "variables in the namespace" in done.stdout, done.text
    assert kernel.value("share") == 2
