"""Text rendering for the CLI: the runs table and one run as a tree of attempts, steps and
waits."""

from durable_nb.client.show import fmt_secs, run_tree, runs_table


def test_durations_read_naturally():
    assert [fmt_secs(s) for s in (None, 0.0123, 1.5, 119.0, 600)] == [
        "-", "12 ms", "1.50 s", "119.00 s", "10.0 min"]


def test_the_runs_table_aligns_its_columns():
    runs = [{"id": "run_1", "task_id": "t", "status": "COMPLETED", "created_at": 0,
             "duration": 1.5, "attempts": 1},
            {"id": "run_22", "task_id": None, "status": "QUEUED", "created_at": 0}]
    lines = runs_table(runs).splitlines()
    assert lines[0].split() == ["RUN", "TASK", "STATUS", "CREATED", "DURATION", "ATTEMPTS"]
    assert lines[1].split()[:3] == ["run_1", "t", "COMPLETED"]
    assert lines[2].split() == ["run_22", "QUEUED", "-", "-", "0"]  # no task, time, duration
    assert lines[0].index("STATUS") == lines[1].index("COMPLETED") == lines[2].index("QUEUED")
    assert runs_table([]) == "no runs"


def _step(key, status, start, end, attempt=1, error=None):
    return {"step_key": key, "status": status, "started_at": start, "ended_at": end,
            "attempt": attempt, "error_type": error and "KeyError", "error_message": error}


def test_a_run_tree_puts_steps_and_waits_under_their_attempt():
    run = {"id": "run_1", "task_id": "t", "status": "FAILED", "attempts": 2, "duration": 9,
           "attempt_list": [
               {"number": 1, "started_at": 0, "ended_at": 3, "outcome": "CRASHED",
                "worker_pid": 11, "error_type": "WorkerCrashed", "error_message": "killed"},
               {"number": 2, "started_at": 5, "ended_at": 9, "outcome": "FAILED",
                "worker_pid": 12, "error_type": None, "error_message": None}],
           "steps": [_step("fetch#1", "COMPLETED", 1, 2), _step("trigger:x#1", "COMPLETED", 1, 1),
                     _step("save#1", "ERRORED", 6, 7, error="'k'")],
           "waits": [{"kind": "approval", "name": "ship", "created_at": 8, "resolved_at": 8.5,
                      "outcome": "approved", "resolved_by": "ann", "comment": "ok",
                      "preview": "{'n': 1}"}],
           "children": [{"id": "run_c", "task_id": "child", "status": "COMPLETED"}],
           "error": {"type": "KeyError", "message": "'k'", "traceback": "Traceback\nKeyError"}}
    assert run_tree(run).splitlines() == [
        "run_1  t  FAILED  (2 attempts, 9.00 s)",
        "├─ attempt 1  CRASHED  3.00 s  worker pid 11",
        "│    WorkerCrashed: killed",
        "│  └─ step fetch#1  COMPLETED  (try 1)  1.00 s",
        "├─ attempt 2  FAILED  4.00 s  worker pid 12",
        "│  ├─ step save#1  ERRORED  (try 1)  1.00 s",
        "│  │    KeyError: 'k'",
        "│  └─ approval ship  approved by ann \"ok\"",
        "│       data: {'n': 1}",
        "└─ child run_c  child  COMPLETED",
        "error: KeyError: 'k'",
        "  Traceback",
        "  KeyError",
    ]


def test_an_attempt_on_a_dask_worker_names_its_address():
    run = {"id": "run_1", "task_id": "t", "status": "COMPLETED", "attempts": 2, "duration": 9,
           "attempt_list": [
               {"number": 1, "started_at": 0, "ended_at": 3, "outcome": "CRASHED",
                "worker_pid": 11, "worker": "tcp://10.0.0.3:40123",
                "error_type": "WorkerCrashed", "error_message": "lost"},
               {"number": 2, "started_at": 5, "ended_at": 9, "outcome": "COMPLETED",
                "worker_pid": 12, "worker": None, "error_type": None}],
           "steps": [], "waits": []}
    lines = run_tree(run).splitlines()
    assert lines[1] == "├─ attempt 1  CRASHED  3.00 s  worker tcp://10.0.0.3:40123 (pid 11)"
    assert lines[3] == "└─ attempt 2  COMPLETED  4.00 s  worker pid 12"


def test_durable_nb_show_names_the_dask_worker_of_each_attempt(tmp_path):
    """A database whose attempts ran on Dask workers: `RunHandle.attempts` and
    `durable-nb show` name each worker, from a real engine process."""
    from _dask_attempts import WORKERS, dask_runs
    from _support import EngineProcess, run_cli

    import durable_nb as dn

    db = tmp_path / "store.duckdb"
    run_id = dask_runs(db)["two"]
    engine = EngineProcess(db, [])
    engine.start()
    try:
        attempts = dn.get_run(run_id).attempts
        assert [(a["worker"], a["worker_pid"]) for a in attempts] == list(WORKERS)
        out = run_cli("show", run_id, "--db", str(db))
    finally:
        engine.stop()
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "attempt " in ln]
    assert "FAILED" in lines[0] and lines[0].endswith("worker tcp://10.0.0.3:40123 (pid 4101)")
    assert "COMPLETED" in lines[1]
    assert lines[1].endswith("worker tcp://10.0.0.4:40777 (pid 4202)")
