"""Runs filtered by their tags: ``dn.runs(tags=...)``, ``GET /runs?tags=`` and
``durable-nb runs --tag``; a run must have every tag asked for."""

from __future__ import annotations

import pytest
from _support import run_cli

import durable_nb as dn


@dn.task
def tagged(i: int) -> int:
    return i


def test_runs_are_filtered_by_all_their_tags(engine):
    both = tagged.trigger(1, tags=["nightly", "eu"])
    nightly = tagged.trigger(2, tags=["nightly"])
    tagged.trigger(3)
    for h in (both, nightly):
        h.result(timeout=30)
    assert {h.id for h in dn.runs(tags=["nightly"])} == {both.id, nightly.id}
    assert [h.id for h in dn.runs(tags=["nightly", "eu"])] == [both.id]
    assert dn.runs(tags=["nope"]) == []
    out = engine.client.request("GET", "/runs", query={"tags": "eu"})
    assert [r["id"] for r in out["runs"]] == [both.id] and out["total"] == 1
    with pytest.raises(ValueError, match="comma"):
        dn.runs(tags=["a,b"])
    done = run_cli("runs", "--db", str(engine.db), "--tag", "nightly", "--tag", "eu")
    assert done.returncode == 0, done.stderr
    assert both.id in done.stdout and nightly.id not in done.stdout
