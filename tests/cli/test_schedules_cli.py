"""`durable-nb schedules list | pause | resume | delete` and `durable-nb show` of a
scheduled run, as a user runs them against a real engine."""

from __future__ import annotations

from _support import run_cli, wait_for

import durable_nb as dn


@dn.task(id="cli-scheduled")
def scheduled() -> str:
    return "ok"


def test_schedules_commands(engine):
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    out = run_cli("schedules", "list", env=env)
    assert out.returncode == 0 and out.stdout.strip() == "no schedules", out.stderr
    s = dn.schedule(scheduled, every="1s", id="cli every")
    dn.schedule(scheduled, cron="30 6 * * *", timezone="Asia/Tokyo", id="morning")
    run = wait_for(lambda: s.runs(), 20, "a scheduled run")[0]
    run.result(timeout=30)

    out = run_cli("schedules", "list", env=env)
    assert out.returncode == 0, out.stderr
    head, *rows = out.stdout.splitlines()
    assert head.split()[:4] == ["SCHEDULE", "TASK", "WHEN", "TIMEZONE"]
    assert rows[0].startswith("cli every  cli-scheduled  every 1s") and "active" in rows[0]
    assert "cron 30 6 * * *" in rows[1] and "Asia/Tokyo" in rows[1]

    out = run_cli("schedules", "pause", "cli every", env=env)
    assert out.returncode == 0 and "paused schedule cli every" in out.stdout, out.stderr
    assert s.refresh().paused
    assert "paused" in run_cli("schedules", "list", env=env).stdout.splitlines()[1]
    out = run_cli("schedules", "resume", "cli every", env=env)
    assert out.returncode == 0 and "resumed schedule cli every: next tick" in out.stdout
    assert not s.refresh().paused

    out = run_cli("show", run.id, env=env)
    assert out.returncode == 0, out.stderr
    assert "fired by schedule cli every for its tick of" in out.stdout

    out = run_cli("schedules", "delete", "cli every", env=env)
    assert out.returncode == 0 and "deleted schedule cli every" in out.stdout
    assert [x.id for x in dn.schedules()] == ["morning"]
    out = run_cli("schedules", "pause", "cli every", env=env)
    assert out.returncode == 1 and "no schedule 'cli every'" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("schedules", "stop", "morning", env=env)
    assert out.returncode == 2 and "invalid choice" in out.stderr
