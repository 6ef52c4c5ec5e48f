"""In a real kernel: redefining a task, or re-running an edited ``%%durable`` cell (named, or
unnamed in a notebook cell), while runs of the previous version wait on an approval prints
one line naming them; an unchanged definition prints nothing."""

from __future__ import annotations

import re

import pytest
from _support import wait_for

import durable_nb as dn

V1 = '''
@dn.task(id="notice-ingest")
def ingest(n):
    dn.approval("go")
    return n
'''
V2 = V1.replace("return n", "return n + 1")
NOTICE = re.compile(r"\[durable\] (\d+) runs? still on the previous version of '(.+?)' "
                    r"\(v(\d+)\): (.+)")


def _notices(out) -> list[tuple[str, ...]]:
    return NOTICE.findall(out.stdout)


@pytest.fixture(scope="module")
def client(engine_env):
    return dn.Client(engine_env["DURABLE_NB_URL"], engine_env["DURABLE_NB_TOKEN"])


def _waiting(client, ids: list[str]) -> list[str]:
    for i in ids:
        wait_for(lambda i=i: client.request("GET", f"/runs/{i}")["status"] == "WAITING", 30,
                 f"{i} waiting")
    return ids


def _ids(kernel, *names: str) -> list[str]:
    return kernel.ok(f"print(' '.join(r.id for r in ({', '.join(names)},)))").stdout.split()


def test_redefining_a_task_names_the_runs_still_on_the_previous_version(kernel, client):
    assert _notices(kernel.ok(V1)) == []  # no runs yet
    kernel.ok("a = ingest.trigger(1)\nb = ingest.trigger(2)")
    ids = _waiting(client, _ids(kernel, "a", "b"))
    out = kernel.ok(V2)
    assert _notices(out) == [("2", "notice-ingest", "1", f"{ids[0]}, {ids[1]}")], out.text
    assert len(out.stdout.strip().splitlines()) == 1
    # the same source again (the cell differs, so its hash does too): nothing to say
    assert _notices(kernel.ok("# the first version, again" + V1)) == []
    kernel.ok("for r in (a, b): r.approve()\nassert [a.result(30), b.result(30)] == [1, 2]")
    assert _notices(kernel.ok(V2)) == []  # nothing unfinished any more


def _runs_of(client, task: str) -> list[str]:
    return [r["id"] for r in client.request("GET", "/runs", query={"task": task})["runs"]]


def test_rerunning_an_edited_durable_cell_names_its_waiting_runs(kernel, client):
    first = '%%durable --name notice-cell\nok = dn.approval("ship")\ntotal = 1\n'
    assert _notices(kernel.ok(first)) == []
    ids = _waiting(client, _runs_of(client, "notice-cell"))
    out = kernel.ok(first.replace("total = 1", "total = 2"))
    assert _notices(out) == [("1", "notice-cell", "1", ids[0])], out.text
    for run_id in _runs_of(client, "notice-cell"):
        client.request("POST", f"/runs/{run_id}/cancel")


def test_an_unnamed_cell_is_a_version_of_its_notebook_cell(kernel, client):
    """Its runs are named after their execution count (``cell [7]``), yet a new text of the
    same notebook cell (its id, as JupyterLab sends it) is its next version."""
    from test_cell_origin import _execute

    text = '%%durable\nok = dn.approval("ship")\nv = {n}\n'
    out, count = _execute(kernel, text.format(n=1), cell_id="cell-abc")
    assert _notices(out) == []
    first = _waiting(client, _runs_of(client, f"cell [{count}]"))
    out, count = _execute(kernel, text.format(n=2), cell_id="cell-abc")
    assert _notices(out) == [("1", f"cell [{count}]", "1", first[0])], out.text
    other, _ = _execute(kernel, text.format(n=3), cell_id="cell-other")  # another cell
    assert _notices(other) == []
    for r in client.request("GET", "/runs", query={"status": "WAITING,QUEUED,EXECUTING"})[
            "runs"]:
        client.request("POST", f"/runs/{r['id']}/cancel")


def test_no_notice_outside_a_kernel():
    """A script (no IPython shell) never asks: it would cost a request per definition."""
    from durable_nb.client import versions

    assert versions._kernel_client() is None
