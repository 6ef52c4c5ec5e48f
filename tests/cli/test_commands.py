"""The `durable-nb` command, as a user runs it."""

from _support import run_cli

import durable_nb as dn


def test_unknown_run_gives_a_clear_error(fresh_db):
    out = run_cli("show", "run_missing", env=fresh_db)
    assert out.returncode == 1
    assert "no run with id 'run_missing'" in out.stderr
    assert "Traceback" not in out.stderr


def test_stop_without_engine(tmp_path):
    out = run_cli("stop", env={"DURABLE_NB_DB": str(tmp_path / "none.duckdb")})
    assert out.returncode == 0 and "no engine is running" in out.stdout


@dn.task(id="cli-sleepy")
def _sleepy() -> str:
    dn.sleep(0.2)
    return "slept"


def test_resume_continues_a_canceled_run(engine):
    run = _sleepy.trigger()
    run.cancel()
    assert run.wait(timeout=30) == "CANCELED"
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    out = run_cli("resume", run.id, env=env)
    assert out.returncode == 0, out.stderr
    assert f"resumed run {run.id}" in out.stdout
    assert run.result(timeout=60) == "slept"
    out = run_cli("resume", run.id, env=env)
    assert out.returncode == 1 and "only a" in out.stderr and "Traceback" not in out.stderr


@dn.step
def _shout(word: str, times: int = 1) -> str:
    return (word.upper() + "!") * times


@dn.task(id="cli-io")
def _io_task() -> str:
    return _shout("hey", times=2)


def test_show_io_prints_each_step_s_arguments_and_output(engine):
    run = _io_task.trigger()
    assert run.result(timeout=60) == "HEY!HEY!"
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    out = run_cli("show", run.id, "--io", env=env)
    assert out.returncode == 0, out.stderr
    io = out.stdout.split("steps' inputs and outputs:")[1]
    assert "step _shout#1" in io and "try 1  COMPLETED" in io
    assert "arg 0: 'hey'  [str]" in io and "times=2  [int]" in io
    assert "output: 'HEY!HEY!'  [str]" in io
    plain = run_cli("show", run.id, env=env)
    assert "inputs and outputs" not in plain.stdout
