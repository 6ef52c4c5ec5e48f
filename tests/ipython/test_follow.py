"""The text a kernel prints about a run: short error types, the user's own frames, the end
line, and a run described against a real engine."""

import durable_nb as dn
from durable_nb.ipython.follow import PREFIX, describe, end_line, error_lines, say, short_type, what


def test_short_type_strips_only_our_own_modules():
    assert short_type("durable_nb.core.errors.NotPicklable") == "NotPicklable"
    assert short_type("pandas.errors.ParserError") == "pandas.errors.ParserError"
    assert short_type(None) == "Error"


def test_error_lines_fall_back_to_type_and_message():
    assert error_lines({"type": "durable_nb.core.errors.AbortRun", "message": "stop"}) == [
        "AbortRun: stop"]
    assert error_lines(None) == ["Error: "]


def test_what_and_end_line():
    s = {"id": "run_1", "kind": "cell", "task_id": "ingest", "status": "COMPLETED",
         "duration": 0.25, "attempts": 2}
    assert what(s) == "cell 'ingest'"
    assert end_line(s) == "run run_1 (cell 'ingest') COMPLETED in 250 ms after 2 attempts"
    assert end_line({"id": "r", "status": "FAILED"}) == "run r (task '?') FAILED"


def test_say_prefixes_its_line(capsys):
    say("hello")
    say("oops", err=True)
    out = capsys.readouterr()
    assert out.out == f"{PREFIX} hello\n" and out.err == f"{PREFIX} oops\n"


@dn.task(id="follow-waits")
def waits_for_approval():
    return dn.approval("ship", data={"n": 1}).approved


def test_describe_a_waiting_run_says_how_to_act_on_it(engine):
    from _support import wait_for

    run = waits_for_approval.trigger()
    wait_for(lambda: run.status == "WAITING", 60, "the run waiting")
    text = describe(run)
    assert text.startswith(f"durable run {run.id}  task 'follow-waits'  WAITING")
    assert f"waiting for approval 'ship': %durable approve {run.id}" in text
    assert f"%durable cancel {run.id}" in text
    run.approve("ship")
    assert run.result(timeout=60) is True
    assert f"%durable cancel {run.id}" not in describe(run)
