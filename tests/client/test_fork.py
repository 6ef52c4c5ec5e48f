"""RunHandle.fork against a real engine and real worker processes: a task that fails at its
third step is edited (a new version of the same id) and forked; the steps before the failed
one are not executed again (counted with marker files), the failed step runs the new code,
and the fork completes, linked to its source. A fork survives an engine SIGKILL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _support import bump, count, wait_for

import durable_nb as dn
from durable_nb.core.errors import ApiError


@dn.step
def fetch(marks: str, doc: str) -> str:
    bump(marks, "fetch")
    return f"text of {doc}"


@dn.step
def clean(marks: str, text: str) -> str:
    bump(marks, "clean")
    return text.upper()


@dn.step
def summarize(marks: str, text: str) -> str:
    bump(marks, "summarize-v1")
    raise ValueError(f"bad record: {text!r}")


@dn.step(name="summarize")
def summarize_fixed(marks: str, text: str) -> str:
    bump(marks, "summarize-v2")
    while (Path(marks) / "hold").exists():  # the test holds the step here
        time.sleep(0.02)
    return text.split()[-1]


@dn.step
def publish(marks: str, summary: str) -> str:
    bump(marks, "publish")
    return f"published {summary}"


@dn.task(id="fork-report", retry=dn.Retry(max_attempts=1))
def report(marks: str, doc: str) -> str:
    text = clean(marks, fetch(marks, doc))
    return publish(marks, summarize(marks, text))


def edited_report():
    """The user edits the task: the same id, a fixed third step (a new version)."""
    @dn.task(id="fork-report", retry=dn.Retry(max_attempts=1))
    def report(marks: str, doc: str) -> str:
        text = clean(marks, fetch(marks, doc))
        return publish(marks, summarize_fixed(marks, text))

    return report


def _failed(marks: Path) -> dn.RunHandle:
    run = report.trigger(str(marks), "doc-7")
    with pytest.raises(dn.RunFailed, match="bad record"):
        run.result(timeout=60)
    assert [count(marks, n) for n in ("fetch", "clean", "summarize-v1")] == [1, 1, 1]
    return run


def test_a_fork_of_an_edited_task_reruns_only_the_failed_step_and_what_follows(engine, marks):
    run = _failed(marks)
    fixed = edited_report()
    fork = run.fork()  # default: from the failed step, with this process's current version
    assert fork.result(timeout=60) == "published DOC-7"
    assert [count(marks, n) for n in ("fetch", "clean", "summarize-v1", "summarize-v2",
                                      "publish")] == [1, 1, 1, 1, 1]
    info = fork.info()
    assert (info["fork_of"], info["fork_step"]) == (run.id, "summarize#1")
    assert info["task_hash"] == fixed.spec()["hash"] != run.info()["task_hash"]
    assert fork.fork_of == run and run.fork_of is None
    assert run.forks == [fork] and fork.forks == []
    steps = {s["step_key"]: s["status"] for s in fork.steps}
    assert steps == {"fetch#1": "COMPLETED", "clean#1": "COMPLETED",
                     "summarize#1": "COMPLETED", "publish#1": "COMPLETED"}
    reused = [s for s in fork.steps if s["step_key"] == "clean#1"][0]
    assert reused.output == "TEXT OF DOC-7", "a reused step keeps its recorded output"
    tree = fork.info()["fork_tree"]
    assert tree["root"] == run.id and [r["id"] for r in tree["runs"]] == [run.id, fork.id]
    from durable_nb.client.show import run_tree

    assert f"fork of run {run.id} from summarize#1" in run_tree(fork.info())
    assert f"fork {fork.id}  from summarize#1  COMPLETED" in run_tree(run.info())


def test_a_fork_from_a_named_step_with_a_chosen_version(engine, marks):
    run = _failed(marks)
    fixed = edited_report()
    again = run.fork(from_step="clean#1", task=report)  # the first version, on purpose
    with pytest.raises(dn.RunFailed, match="bad record"):
        again.result(timeout=60)
    assert [count(marks, n) for n in ("fetch", "clean", "summarize-v1")] == [1, 2, 2]
    assert again.info()["task_hash"] == run.info()["task_hash"]
    with pytest.raises(ApiError, match=r"no step 'nope#1'.*fetch#1, clean#1, summarize#1"):
        run.fork(from_step="nope#1")
    with pytest.raises(ValueError, match="step key such as"):
        run.fork(from_step=3)
    done = fixed.trigger(str(marks), "x")
    assert done.result(timeout=60) == "published X"
    with pytest.raises(ApiError, match="completed and has no failed step"):
        done.fork()


def test_a_fork_goes_on_after_an_engine_sigkill(engine, marks):
    run = _failed(marks)
    edited_report()
    (marks / "hold").touch()
    fork = run.fork()
    wait_for(lambda: count(marks, "summarize-v2") == 1, 60, "the fork to reach its step")
    engine.kill()
    (marks / "hold").unlink()
    engine.start()
    assert fork.result(timeout=60) == "published DOC-7"
    assert [count(marks, n) for n in ("fetch", "clean")] == [1, 1], "reused, never re-run"
    assert count(marks, "summarize-v2") == 2, "the step cut short runs again (at least once)"
