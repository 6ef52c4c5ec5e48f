"""core.step_groups: a run's steps grouped by name (counts by outcome, durations) and pages
of one name's steps, as the big-run views show them."""

from __future__ import annotations

import pytest

from durable_nb.core.step_groups import group_steps, last_tries, page_of, step_state


def row(key, status, start, end=None, attempt=1, generation=0, name=None):
    return {"step_key": key, "name": name or key.split("#")[0], "status": status,
            "attempt": attempt, "generation": generation, "started_at": start,
            "ended_at": start + 0.5 if end is None else end}


ROWS = [
    row("fetch#1", "COMPLETED", 1.0),
    row("fetch#2", "FAILED", 2.0), row("fetch#2", "COMPLETED", 3.0, attempt=2),
    row("fetch#3", "FAILED", 4.0, end=6.0),  # its last try failed: retrying while the run runs
    row("parse#1", "ERRORED", 0.5, end=0.75),
    row("parse#1", "COMPLETED", 7.0, end=8.0, generation=1),  # a task-level retry ran it again
    row("trigger:child#1", "COMPLETED", 5.0),  # a child trigger: not a step
]


def test_each_name_once_in_the_order_of_its_first_start_with_its_counts():
    groups = group_steps(ROWS, run_finished=False)
    assert [g["name"] for g in groups] == ["parse", "fetch"]
    parse, fetch = groups
    assert (fetch["steps"], fetch["tries"], fetch["completed"], fetch["failed"],
            fetch["retrying"]) == (3, 4, 2, 0, 1)
    assert fetch["total_s"] == pytest.approx(0.5 * 3 + 2.0)
    assert fetch["median_s"] == pytest.approx(0.5)  # of each step's last try: .5, .5, 2
    assert (fetch["first_at"], fetch["last_at"]) == (1.0, 6.0)
    # the later generation counts: parse completed on the task's retry
    assert (parse["steps"], parse["tries"], parse["completed"], parse["failed"]) == (1, 2, 1, 0)
    assert parse["total_s"] == pytest.approx(1.25)


def test_a_failed_last_try_is_failed_once_the_run_has_ended():
    fetch = group_steps(ROWS, run_finished=True)[1]
    assert fetch["name"] == "fetch"
    assert (fetch["failed"], fetch["retrying"]) == (1, 0)
    assert step_state("ERRORED", False) == "failed"
    assert step_state("FAILED", False) == "retrying"


def test_no_steps_no_groups_and_a_step_without_an_end():
    assert group_steps([], True) == []
    [g] = group_steps([row("x#1", "COMPLETED", 1.0, end=None) | {"ended_at": None}], True)
    assert g["median_s"] is None and g["total_s"] == 0 and g["last_at"] == 1.0


def test_last_tries_keeps_each_keys_last_try_and_counts_its_tries():
    last = last_tries(ROWS)
    assert set(last) == {"fetch#1", "fetch#2", "fetch#3", "parse#1"}
    assert last["fetch#2"]["attempt"] == 2 and last["fetch#2"]["tries"] == 2
    assert last["parse#1"]["generation"] == 1


def test_pages_of_one_names_steps_with_every_try():
    rows = [row(f"save#{i}", "COMPLETED", float(100 - i)) for i in range(1, 251)]
    rows.append(row("save#7", "FAILED", 90.0, attempt=0))  # an earlier try of save#7
    total, page = page_of(rows + ROWS, "save", 0, 100)
    assert total == 250
    keys = list(dict.fromkeys(r["step_key"] for r in page))
    assert len(keys) == 100 and keys[0] == "save#250"  # the first started first
    total, last = page_of(rows, "save", 200, 100)
    assert total == 250 and len({r["step_key"] for r in last}) == 50
    tries = [r for r in page_of(rows, "save", 0, 250)[1] if r["step_key"] == "save#7"]
    assert [t["attempt"] for t in tries] == [0, 1]
    assert page_of(rows, "nothing") == (0, [])
