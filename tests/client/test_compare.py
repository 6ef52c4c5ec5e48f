"""Two runs side by side: the alignment of their step keys, and ``dn.compare`` /
``RunHandle.compare`` / ``durable-nb compare`` against a real engine for tasks (steps,
outputs, statuses, a step only one run made) and for ``%%durable`` cells (statements and
the variables whose values differ)."""

from __future__ import annotations

import pytest
from _support import run_cli

import durable_nb as dn
from durable_nb.client.cells import trigger_cell
from durable_nb.core.compare import align, preview_text


@dn.step
def fetch(n: int) -> list[int]:
    return list(range(n))


@dn.step
def total(xs: list[int]) -> int:
    if sum(xs) > 20:
        raise ValueError(f"total {sum(xs)} is over 20")
    return sum(xs)


@dn.step
def note(text: str) -> str:
    return text.upper()


@dn.task(id="compared", retry=dn.Retry(max_attempts=1))
def pipeline(n: int, extra: bool = False) -> int:
    xs = fetch(n)
    if extra:
        note("extra")
    return total(xs)


def test_keys_align_as_a_diff_aligns_lines():
    assert align(["a#1", "b#1", "c#1"], ["a#1", "x#1", "c#1", "d#1"]) == [
        ("a#1", "a#1"), ("b#1", None), (None, "x#1"), ("c#1", "c#1"), (None, "d#1")]
    assert align([], ["a#1"]) == [(None, "a#1")]
    assert preview_text('{"type": "list", "repr": "[1, 2]"}') == "[1, 2]"
    long = preview_text({"type": "str", "repr": "x" * 500})
    assert len(long) == 80 and long.endswith("...")
    assert preview_text({"type": "DataFrame", "repr": "a\n1", "shape": [1, 1]}) == "a...  [1 x 1]"
    assert preview_text(None) is None and preview_text("not json") is None


def test_two_task_runs_side_by_side(engine):
    a = pipeline.trigger(4)  # total 6
    b = pipeline.trigger(8, extra=True)  # total 28: fails
    assert a.result(timeout=30) == 6
    assert b.wait(timeout=30) == "FAILED"

    cmp = a.compare(b)
    assert [r["key"] for r in cmp.rows] == ["fetch#1", "note#1", "total#1"]
    rows = {r["key"]: r for r in cmp.rows}
    assert rows["fetch#1"]["diff"] == ["output", "args"]
    assert rows["fetch#1"]["a"]["output"] == "[0, 1, 2, 3]"
    assert rows["note#1"]["a"] is None and rows["note#1"]["diff"] == ["missing"]
    assert rows["note#1"]["b"]["output"] == "'EXTRA'"
    assert rows["total#1"]["diff"][0] == "status"
    assert rows["total#1"]["b"]["status"] == "ERRORED"
    assert "total 28 is over 20" in rows["total#1"]["b"]["error"]
    assert cmp.data["run_diff"] == ["status", "output", "error"]  # the same version
    assert cmp.a["version"]["number"] == cmp.b["version"]["number"] == 1
    assert cmp.a["output"]["digest"] and cmp.b["output"] is None

    text = str(cmp)
    assert text.splitlines()[0].startswith(f"A  {a.id}  compared v1 (")
    assert "the runs differ in: status, output, error" in text
    assert "note#1" in text and "only in B" in text and "3 of 3 rows differ" in text
    html = cmp._repr_html_()
    assert "<table" in html and html.count('class="dnc-diff') == 3
    assert "&#x27;EXTRA&#x27;" in html  # user text is escaped

    same = dn.compare(a.id, a.id)
    assert same.differences == [] and same.data["run_diff"] == []
    assert "the runs have the same status, version and output" in str(same)

    out = run_cli("compare", a.id, b.id, "--db", str(engine.db))
    assert out.returncode == 0, out.stderr
    assert "total#1" in out.stdout and "ERRORED" in out.stdout


def test_two_cell_runs_compare_statement_by_statement(engine):
    a = trigger_cell("x = 1\ny = [1, 2]\nz = 'same'\n", {}, name="compare-cell")
    b = trigger_cell("x = 1\ny = [1, 3]\nz = 'same'\nw = 0\n", {}, name="compare-cell")
    for r in (a, b):
        r.result(timeout=30)
    cmp = dn.compare(a, b)
    rows = {r["key"]: r for r in cmp.rows}
    assert list(rows) == ["statement 1", "statement 2", "statement 3", "statement 4"]
    assert rows["statement 1"]["diff"] == []
    assert rows["statement 2"]["diff"] == ["output"]
    assert rows["statement 2"]["changed"] == ["y"]
    assert rows["statement 3"]["changed"] == ["y"]  # y is still different there
    assert rows["statement 4"]["diff"] == ["missing"]
    assert rows["statement 4"]["b"]["output"] == "w, x, y, z"
    assert cmp.a["version"]["number"] == 1 and cmp.b["version"]["number"] == 2
    assert "version" in cmp.data["run_diff"]
    assert "statement 2" in str(cmp)


def test_comparing_with_an_unknown_run_names_it(engine):
    a = pipeline.trigger(1)
    a.result(timeout=30)
    with pytest.raises(dn.RunNotFound, match="run_missing"):
        a.compare("run_missing")
    with pytest.raises(TypeError, match="run id or a RunHandle"):
        dn.compare(a, 5)
