"""``%%durable --schedule`` in a real kernel against a real engine: the cell becomes a
schedule whose runs use the source and the notebook variables as they were when it was
scheduled; running the cell again replaces it; mistakes are one-line usage errors."""

from __future__ import annotations

import pytest
from _support import wait_for

from durable_nb.client.client import Client


@pytest.fixture
def api(engine_env, kernel):
    c = Client(engine_env["DURABLE_NB_URL"], engine_env["DURABLE_NB_TOKEN"])
    yield c
    for s in c.request("GET", "/schedules")["schedules"]:
        c.request("DELETE", "/schedules/" + s["id"].replace("#", "%23"))


def test_a_scheduled_cell_runs_with_the_inputs_it_had_when_scheduled(kernel, api):
    kernel.ok("base = 41")
    out = kernel.ok('%%durable --schedule "1s" --name magic-every --overlap allow\n'
                    "answer = base + 1\nprint('answer', answer)\n")
    assert "scheduled this cell as 'magic-every', every 1s: next run at" in out.stdout
    assert kernel.value("'answer' in dir()") is False, "the cell did not run in the kernel"
    kernel.ok("base = 1000")  # the schedule keeps the value it captured
    runs = wait_for(lambda: api.request("GET", "/schedules/magic-every/runs")["runs"], 30,
                    "a run of the scheduled cell")
    run = runs[-1]
    assert run["kind"] == "cell" and run["task_id"] == "magic-every"
    done = api.request("GET", f"/runs/{run['id']}/result", query={"timeout": 30})
    assert done["status"] == "COMPLETED"
    lines = [x["line"] for x in api.request("GET", f"/runs/{run['id']}/logs")["logs"]]
    assert "answer 42" in lines
    cp = api.request("GET", f"/runs/{run['id']}/checkpoint")
    assert "answer" in cp["variables"]


def test_running_the_cell_again_replaces_its_schedule(kernel, api):
    cell = '%%durable --schedule "0 6 * * 1" --timezone Europe/Berlin\nreport = 1\n'
    out = kernel.ok(cell)
    assert "cron '0 6 * * 1' (Europe/Berlin): next run at" in out.stdout
    (first,) = api.request("GET", "/schedules")["schedules"]
    assert first["id"].startswith("cell#") and first["kind"] == "cell"
    kernel.ok(cell)
    (again,) = api.request("GET", "/schedules")["schedules"]
    assert again["id"] == first["id"] and again["timezone"] == "Europe/Berlin"


def test_schedule_mistakes_are_usage_errors(kernel, api):
    out = kernel.run('%%durable --schedule "61 * * * *"\nx = 1\n')
    assert out.ename == "UsageError" and "bad cron expression" in out.evalue
    out = kernel.run('%%durable --schedule "1s" --wait\nx = 1\n')
    assert out.ename == "UsageError" and "neither --wait" in out.evalue
    out = kernel.run('%%durable --schedule "1s" --overlap later\nx = 1\n')
    assert out.ename == "UsageError" and "invalid choice: 'later'" in out.evalue
    out = kernel.run('%%durable --schedule "2 hours"\nx = 1\n')
    assert out.ename == "UsageError" and "5 fields" in out.evalue
    out = kernel.run("%%durable --timezone Europe/Paris\nx = 1\n")
    assert out.ename == "UsageError" and "go with --schedule" in out.evalue
    assert api.request("GET", "/schedules")["schedules"] == []
