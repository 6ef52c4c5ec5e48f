"""``RunHandle.cancel(children=...)`` against a real engine: by default every unfinished run
below the canceled one is canceled too (a grandchild whose parent already completed
included); "abandon" leaves them running; a bad mode is refused before anything is
canceled, by the client and by the API (400 naming the field)."""

from __future__ import annotations

import pytest
from _support import http_call, run_cli, wait_for

import durable_nb as dn


@dn.task(id="cc-leaf")
def leaf(key: str) -> str:
    return dn.wait_for_event(key, timeout="1h")


@dn.task(id="cc-middle")
def middle(key: str) -> str:
    leaf.trigger(key)  # not waited for: it outlives this run
    return "middle done"


@dn.task(id="cc-root")
def root(key: str) -> list:
    return [middle.trigger_and_wait(key), leaf.trigger_and_wait(key + "-direct")]


def _child(run: dn.RunHandle, i: int = 0) -> dn.RunHandle:
    """The ``i``-th child run of ``run``, once it exists."""
    found = wait_for(lambda: run.info()["children"][i:], 60, f"child {i} of {run.id}")
    return dn.get_run(found[0]["id"])


def test_cancel_takes_children_and_grandchildren_with_it(engine):
    run = root.trigger("cc-a")
    middle_run = _child(run)
    grandchild = _child(middle_run)
    assert middle_run.result(timeout=60) == "middle done"
    direct = _child(run, 1)
    wait_for(lambda: direct.status == "WAITING", 60, "the direct child to wait")
    run.cancel()
    assert run.wait(30) == "CANCELED"
    assert grandchild.wait(30) == direct.wait(30) == "CANCELED", \
        "below a completed child too"
    assert middle_run.status == "COMPLETED"


def test_abandon_leaves_the_children_running(engine):
    run = root.trigger("cc-b")
    grandchild = _child(_child(run))
    wait_for(lambda: grandchild.status == "WAITING", 60, "the grandchild to wait")
    run.cancel(children="abandon")
    assert run.wait(30) == "CANCELED"
    assert grandchild.status == "WAITING"
    dn.send_event("cc-b", "still here")
    assert grandchild.result(timeout=60) == "still here"


def test_the_cli_cancels_one_run_and_abandons_its_children(engine):
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    run = root.trigger("cc-c")
    grandchild = _child(_child(run))
    out = run_cli("cancel", run.id, "--children", "abandon", env=env)
    assert out.returncode == 0 and f"canceled run {run.id}" in out.stdout, out.stderr
    assert run.wait(30) == "CANCELED"
    assert grandchild.status != "CANCELED"
    grandchild.cancel()
    assert grandchild.wait(30) == "CANCELED"


def test_a_bad_children_mode_is_refused(engine):
    run = leaf.trigger("cc-d")
    with pytest.raises(ValueError, match="children must be 'cancel'"):
        run.cancel(children="orphan")
    status, body = http_call("POST", f"{engine.client.url}durable/api/runs/{run.id}/cancel",
                             engine.client.token, {"children": "orphan"})
    assert status == 400 and body["field"] == "children", body
    assert 'must be one of "cancel", "abandon"' in body["error"]
    assert run.status != "CANCELED"
    run.cancel()
    assert run.wait(30) == "CANCELED"
