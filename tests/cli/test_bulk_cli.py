"""`durable-nb cancel|replay|resume` on a selection (--status, --task, --since, --tag), as a
user runs them against a real engine: the matching runs are listed, acted on, and each
outcome and a summary printed."""

from __future__ import annotations

from _support import run_cli, wait_for

import durable_nb as dn


@dn.task(id="bulk-wait")
def waits(key: str) -> str:
    return dn.wait_for_event(key, timeout="1h")


@dn.task(id="bulk-other")
def other(key: str) -> str:
    return dn.wait_for_event(key, timeout="1h")


@dn.task(id="bulk-fail", retry=dn.Retry(max_attempts=1))
def fails(x: int) -> int:
    raise ValueError(f"no {x}")


def _env(engine) -> dict:
    return {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}


def test_cancel_a_selection_lists_it_then_cancels_each(engine):
    mine = [waits.trigger(f"bk-{i}", tags=["batch"]) for i in range(3)]
    untagged = waits.trigger("bk-untagged")
    theirs = other.trigger("bk-other", tags=["batch"])
    for r in (*mine, untagged, theirs):
        wait_for(lambda r=r: r.status == "WAITING", 60, f"{r.id} to wait")
    out = run_cli("cancel", "--task", "bulk-wait", "--tag", "batch", "--since", "1h",
                  env=_env(engine))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "3 runs match --task bulk-wait --since 1h --tag batch:" in text
    assert all(f"canceled {r.id}" in text for r in mine)
    assert "cancel: 3 canceled, 0 failed, of 3 runs" in text
    assert [r.wait(30) for r in mine] == ["CANCELED"] * 3
    assert untagged.status == theirs.status == "WAITING"
    again = run_cli("cancel", "--task", "bulk-wait", "--tag", "batch", "--status", "WAITING",
                    env=_env(engine))
    assert again.returncode == 0, again.stderr
    assert "no runs match --status WAITING --task bulk-wait --tag batch; nothing to cancel" \
        in again.stdout


def test_replay_and_resume_the_failed_runs_of_a_task(engine):
    runs = [fails.trigger(i) for i in range(2)]
    for r in runs:
        assert r.wait(60) == "FAILED"
    out = run_cli("replay", "--status", "FAILED", "--task", "bulk-fail", env=_env(engine))
    assert out.returncode == 0, out.stderr
    assert all(f"replayed {r.id} as run_" in out.stdout for r in runs)
    assert "replay: 2 replayed, 0 failed, of 2 runs" in out.stdout
    assert len(dn.runs(task="bulk-fail")) == 4
    wait_for(lambda: len(dn.runs(task="bulk-fail", status="FAILED")) == 4, 60,
             "the replays to fail too")
    out = run_cli("resume", "--status", "FAILED", "--task", "bulk-fail", env=_env(engine))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("resumed  run_") == 4
    assert "resume: 4 resumed, 0 failed, of 4 runs" in out.stdout


def test_a_run_failing_in_a_selection_is_reported_and_the_exit_status_says_so(engine):
    done = waits.trigger("bk-done")
    wait_for(lambda: done.status == "WAITING", 60, "the run to wait")
    dn.send_event("bk-done", 1)
    assert done.result(timeout=60) == 1
    out = run_cli("resume", "--task", "bulk-wait", "--status", "COMPLETED", env=_env(engine))
    assert out.returncode == 1
    assert f"failed   {done.id}: run {done.id} is COMPLETED" in out.stdout
    assert "resume: 0 resumed, 1 failed, of 1 runs" in out.stdout


BAD = [
    (("cancel", "run_x", "--status", "FAILED"), "give one RUN or a selection (--status "
     "FAILED), not both"),
    (("replay",), "give the RUN to act on, or a selection of runs"),
    (("cancel", "--since", "a while"), "not a duration"),
    (("resume", "--status", "DONE"), "unknown status 'DONE'"),
]


def test_bad_selections_are_refused_with_a_clear_error(engine):
    for args, says in BAD:
        out = run_cli(*args, env=_env(engine))
        assert out.returncode == 1 and says in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
