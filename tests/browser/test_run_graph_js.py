"""static/run_graph.js on its own (no Jupyter): the API the widgets and the Lab panel use,
rendered in Chromium from fixed run data. Fast: one page per test, no server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _lab import graph_page

pytestmark = pytest.mark.browser

T0 = time.time() - 30


def _step(key, name, attempt, status, start, end, err=None):
    row = {"step_key": key, "name": name, "attempt": attempt, "status": status,
           "started_at": T0 + start, "ended_at": T0 + end, "error_type": None,
           "error_message": None, "traceback": None}
    if err:
        row.update(error_type="ConnectionError", error_message=err,
                   traceback=f'Traceback (most recent call last):\n  File "x.py", line 3, in '
                             f'{name}\nConnectionError: {err}\n')
    return row


def _wait(key, kind, name, start, end=None, **kw):
    return {"wait_key": key, "kind": kind, "name": name, "preview": kw.get("preview"),
            "target": kw.get("target"), "created_at": T0 + start,
            "deadline": T0 + kw["deadline"] if "deadline" in kw else None,
            "resolved_at": T0 + end if end is not None else None, "outcome": kw.get("outcome"),
            "comment": kw.get("comment"), "resolved_by": kw.get("by")}


CHILD = {"id": "run_child1", "task_id": "summarize-doc", "status": "COMPLETED", "kind": "task",
         "attempts": 1, "created_at": T0 + 2, "started_at": T0 + 2.1, "finished_at": T0 + 3,
         "duration": 0.9, "attempt_list": [], "children": [], "waits": [],
         "steps": [_step("call_model#1", "call_model", 1, "COMPLETED", 2.2, 2.9)]}

RUN = {
    "id": "run_parent", "task_id": "process-document", "status": "WAITING", "kind": "task",
    "attempts": 2, "created_at": T0, "started_at": T0 + 0.1, "finished_at": None,
    "duration": None, "duration_warning": True, "queue": "docs", "tags": ["nightly"],
    "error": None,
    "attempt_list": [
        {"number": 1, "worker_pid": 11, "started_at": T0 + 0.1, "ended_at": T0 + 1.5,
         "outcome": "SUSPENDED", "error_type": None, "error_message": None, "traceback": None},
        {"number": 2, "worker_pid": 12, "started_at": T0 + 3.2, "ended_at": T0 + 3.5,
         "outcome": "SUSPENDED", "error_type": None, "error_message": None, "traceback": None},
    ],
    "steps": [
        _step("fetch#1", "fetch", 1, "FAILED", 0.2, 0.3, "timeout (call 1)"),
        _step("fetch#1", "fetch", 2, "FAILED", 0.5, 0.6, "timeout (call 2)"),
        _step("fetch#1", "fetch", 3, "COMPLETED", 1.0, 1.1),
        _step("trigger:summarize-doc#1", "trigger:summarize-doc", 1, "COMPLETED", 1.2, 1.2),
    ],
    "waits": [
        _wait("retry:fetch#1 retry 1#1", "retry", "fetch#1 retry 1", 0.3, 0.5, deadline=0.5,
              outcome="elapsed"),
        _wait("retry:fetch#1 retry 2#1", "retry", "fetch#1 retry 2", 0.6, 1.0, deadline=1.0,
              outcome="elapsed"),
        _wait("child:summarize-doc#1", "child", "summarize-doc", 1.3, 3.1,
              target=["run_child1", "run_child2"], outcome="completed"),
        _wait("approval:publish#1", "approval", "publish", 3.4,
              preview={"doc": "42", "summary": "revenue up 12%"}),
    ],
    "children": [{"id": "run_child1", "task_id": "summarize-doc", "status": "COMPLETED"},
                 {"id": "run_child2", "task_id": "summarize-doc", "status": "FAILED"}],
    "checkpoints": [],
    "logs": [{"at": T0 + 1, "stream": "stdout", "line": "fetching 42"},
             {"at": T0 + 1.1, "stream": "stderr", "line": "retrying after timeout"}],
}

CELL = {
    "id": "run_cell", "task_id": "ingest", "status": "COMPLETED", "kind": "cell", "attempts": 1,
    "created_at": T0, "started_at": T0 + 0.1, "finished_at": T0 + 2, "duration": 1.9,
    "attempt_list": [], "waits": [], "children": [], "error": None,
    "steps": [_step("load#1", "load", 1, "COMPLETED", 0.2, 0.4)],
    "checkpoints": [{"statement": i, "total": 3, "size": 1200 * i, "at": T0 + 0.5 * i}
                    for i in (1, 2, 3)],
    "logs": [],
}

HARNESS = """
const mod = await import("data:text/javascript;base64,%s");
window.graph = mod;
window.calls = [];
window.render = (run, opts = {}) => {
  const el = document.getElementById("root");
  const options = {
    onApprove: async (w, comment) => {
      window.calls.push(["approve", w.name, comment]);
      if (window.refuse) throw new Error(window.refuse);
    },
    onReject: async (w, comment) => { window.calls.push(["reject", w.name, comment]); },
    loadChild: async (id) => { window.calls.push(["load", id]); return window.children[id]; },
    onOpenChild: (id) => window.calls.push(["open", id]),
    ...opts,
  };
  mod.renderRunGraph(el, run, options);
};
window.ready = true;
"""


@pytest.fixture
def graph(browser, request):
    out = Path(__file__).resolve().parents[2] / "test-output" / request.node.name
    out.mkdir(parents=True, exist_ok=True)
    page, errors = graph_page(browser, HARNESS)
    page.evaluate("(c) => { window.children = c; }", {"run_child1": CHILD})
    page.out = out
    yield page
    page.screenshot(path=str(out / "final.png"), full_page=True)
    page.close()
    assert errors == []


def test_api_exports(graph):
    names = graph.evaluate("Object.keys(window.graph).sort()")
    assert names == ["STATUS_COLORS", "TERMINAL", "checkForm", "formatDuration", "isForm",
                     "loadRun", "renderForm", "renderRunGraph", "statusKind"]
    assert graph.evaluate("window.graph.formatDuration(0.25)") == "250 ms"
    assert graph.evaluate("window.graph.formatDuration(125)") == "2 min 05 s"
    assert graph.evaluate("window.graph.statusKind('CRASHED')") == "bad"


FORM = {"type": "object", "title": "Payout", "required": ["amount", "reason"],
        "properties": {"amount": {"type": "integer", "minimum": 1, "maximum": 500},
                       "rate": {"type": ["number", "null"], "exclusiveMinimum": 0},
                       "reason": {"type": "string", "format": "textarea", "minLength": 3},
                       "tier": {"enum": ["std", "gold"], "type": "string", "default": "std"},
                       "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
                       "express": {"type": "boolean", "default": False}}}


def test_a_typed_form_is_checked_as_the_engine_checks_it(graph):
    """checkForm: the values typed as the schema says, and per field what is wrong."""
    def check(raw):
        return graph.evaluate("([s, r]) => window.graph.checkForm(s, r)", [FORM, raw])

    assert check(None)["errors"] == {"amount": "required", "reason": "required"}
    assert check(None)["values"] == {"tier": "std", "express": False}  # the defaults
    out = check({"amount": "900", "rate": "0", "reason": "ab", "tier": "1", "code": "abc",
                 "express": True})
    assert out["errors"] == {"amount": "must be at most 500", "rate": "must be more than 0",
                             "reason": "needs at least 3 characters",
                             "code": "must match ^[A-Z]{2}$"}
    assert check({"amount": "1.5", "reason": "abc"})["errors"] == {
        "amount": "must be a whole number"}
    ok = check({"amount": "12", "rate": "0.5", "reason": "abc", "tier": "1", "code": "DE",
                "express": True})
    assert ok == {"errors": {}, "values": {"amount": 12, "rate": 0.5, "reason": "abc",
                                           "tier": "gold", "code": "DE", "express": True}}


def test_graph_of_a_waiting_run(graph):
    graph.evaluate("(r) => window.render(r)", RUN)
    root = graph.locator(".dng-run").first
    assert root.get_attribute("data-status") == "WAITING"
    assert root.get_attribute("data-run-id") == "run_parent"
    text = root.inner_text()
    assert "over max_duration" in text and "queue docs" in text and "tags nightly" in text
    fetch = graph.locator(".dng-node", has_text="fetch").first
    assert "3 tries" in fetch.inner_text()
    # each try once with its number: the two failed ones with their errors, then the last
    labels = fetch.locator(".dng-try-label").all_inner_texts()
    assert labels == ["↻ try 1 failed · retried after 200 ms",
                      "↻ try 2 failed · retried after 400 ms", "✓ try 3 · 100 ms"]
    assert fetch.locator("pre.dng-tb").first.is_hidden()  # retried: tracebacks closed
    children = graph.locator(".dng-child")
    assert children.count() == 2
    assert "FAILED" in children.nth(1).inner_text()
    assert graph.locator(".dng-attempt").count() == 2
    assert graph.locator(".dng-logs .dng-stderr").inner_text().strip() == "retrying after timeout"
    graph.screenshot(path=str(graph.out / "waiting.png"), full_page=True)

    # expand a child inline (loadChild), open another as a link (onOpenChild)
    children.nth(0).locator("button.dng-toggle").click()
    nested = children.nth(0).locator(".dng-run.dng-nested")
    nested.wait_for()
    assert "call_model" in nested.inner_text()
    children.nth(1).locator("a.dng-link").click()
    calls = graph.evaluate("window.calls")
    assert ["load", "run_child1"] in calls and ["open", "run_child2"] in calls

    # approve with a comment: the callback gets the wait and the comment
    graph.locator("input.dng-comment").fill("ship it")
    graph.locator("button.dng-btn-ok").click()
    graph.wait_for_function("window.calls.some((c) => c[0] === 'approve')")
    assert ["approve", "publish", "ship it"] in graph.evaluate("window.calls")
    # a refusal is shown in the graph, not thrown
    graph.evaluate("window.refuse = 'already approved by alice'")
    graph.locator("button.dng-btn-ok").click()
    graph.locator(".dng-notice-error", has_text="already approved by alice").wait_for()
    graph.screenshot(path=str(graph.out / "refused.png"), full_page=True)


def test_rerender_keeps_what_the_user_opened_and_typed(graph):
    graph.evaluate("(r) => window.render(r)", RUN)
    graph.locator(".dng-node", has_text="fetch").first.locator("summary").first.click()
    graph.locator("input.dng-comment").fill("half typed")
    graph.locator("input.dng-comment").focus()
    later = {**RUN, "logs": RUN["logs"] + [{"at": T0 + 5, "stream": "stdout", "line": "more"}]}
    graph.evaluate("(r) => window.render(r)", later)
    assert graph.locator("input.dng-comment").input_value() == "half typed"
    assert graph.evaluate("document.activeElement.classList.contains('dng-comment')")
    assert graph.locator(".dng-node", has_text="fetch").first.locator("pre.dng-tb").first.is_visible()
    assert "more" in graph.locator(".dng-logs").inner_text()
    # approved elsewhere: the buttons go, the decision shows
    done = json.loads(json.dumps(RUN))
    done["waits"][-1].update(resolved_at=T0 + 6, outcome="approved", resolved_by="bob",
                             comment="fine")
    graph.evaluate("(r) => window.render(r)", done)
    assert graph.locator("button.dng-btn-ok").count() == 0
    assert "approved by bob" in graph.locator(".dng-resolution").inner_text()


def test_cell_run_with_checkpoints_and_a_notice(graph):
    graph.evaluate("(r) => window.render(r, {notice: {kind: 'warning', "
                   "text: 'kernel gone: run ', code: '%durable attach run_cell'}})", CELL)
    assert graph.locator(".dng-cp").count() == 3
    assert "statement 3 of 3" in graph.locator(".dng-cp").nth(2).inner_text()
    assert "%durable attach run_cell" in graph.locator(".dng-notice-warning").inner_text()
    assert "completed in 1.90 s" in graph.locator(".dng-end").inner_text()
    graph.screenshot(path=str(graph.out / "cell.png"), full_page=True)


def test_a_loop_of_steps_folds_into_one_node(graph):
    loop = {**CELL, "kind": "task", "checkpoints": [],
            "steps": [_step(f"tick#{i}", "tick", 1, "COMPLETED", i, i + 0.3) for i in range(1, 11)]
            + [_step("save#1", "save", 1, "COMPLETED", 12, 12.5)]}
    graph.evaluate("(r) => window.render(r)", loop)
    nodes = graph.locator(".dng-graph > .dng-node")
    assert nodes.count() == 3  # tick × 10, save, the end
    assert "× 10" in nodes.nth(0).inner_text() and "300 ms each" in nodes.nth(0).inner_text()
    nodes.nth(0).locator("summary").click()
    assert nodes.nth(0).locator(".dng-repeat li").count() == 10


def test_a_child_link_nobody_opens_expands_inline(graph):
    graph.evaluate("(r) => window.render(r, {onOpenChild: (id) => false})", RUN)
    graph.locator(".dng-child").nth(0).locator("a.dng-link").click()
    graph.locator(".dng-child .dng-run.dng-nested").wait_for()
    assert graph.locator(".dng-child").nth(0).locator("button.dng-toggle").get_attribute(
        "aria-expanded") == "true"


def test_without_callbacks_there_are_no_buttons(graph):
    graph.evaluate("(r) => window.graph.renderRunGraph(document.getElementById('root'), r)", RUN)
    assert graph.locator("button.dng-btn-ok").count() == 0
    assert "%durable approve run_parent" in graph.locator(".dng-node", has_text="publish").inner_text()
    assert graph.locator("button.dng-toggle").count() == 0


# ---------------------------------------------------------------------- tries, step io, output

def _attempt(n, start, end, outcome):
    return {"number": n, "worker_pid": 10 + n, "started_at": T0 + start,
            "ended_at": None if end is None else T0 + end, "outcome": outcome,
            "error_type": None, "error_message": None, "traceback": None}


def _try(attempt, status, start, end, gen=0, run_attempt=1, delay=None, err=None):
    row = _step("fetch#1", "fetch", attempt, status, start, end, err)
    row.update(generation=gen, run_attempt=run_attempt, retry_delay=delay)
    return row


def test_each_try_shows_once_under_its_attempt(graph):
    """A task-level retry starts the step's tries again at 1: one node per attempt."""
    run = {**CELL, "kind": "task", "checkpoints": [], "attempts": 2,
           "attempt_list": [_attempt(1, 0.1, 1.0, "FAILED"), _attempt(2, 2.0, 3.0, "COMPLETED")],
           "steps": [_try(1, "FAILED", 0.2, 0.3, delay=0.1, err="timeout"),
                     _try(2, "ERRORED", 0.5, 0.6, err="timeout again"),
                     _try(1, "COMPLETED", 2.1, 2.2, gen=1, run_attempt=2)],
           "waits": [_wait("retry:fetch#1 retry 1#1", "retry", "fetch#1 retry 1", 0.3, 0.45,
                           deadline=0.4, outcome="elapsed")]}
    graph.evaluate("(r) => window.render(r)", run)
    items = graph.locator(".dng-graph > li")
    texts = [t.split("\n")[0] for t in items.all_inner_texts()]
    assert texts[0].startswith("Attempt 1") and texts[2].startswith("Attempt 2"), texts
    first, second = items.nth(1), items.nth(3)
    assert first.locator(".dng-try-label").all_inner_texts() == [
        "↻ try 1 failed · retried after 150 ms", "✕ try 2"]
    assert "errored" in first.locator(".dng-badge").inner_text()
    assert second.locator(".dng-try-label").count() == 0  # one try, completed
    assert "completed" in second.locator(".dng-badge").inner_text()
    graph.screenshot(path=str(graph.out / "generations.png"), full_page=True)


def test_a_failed_try_that_will_be_retried_is_retrying_not_failed(graph):
    run = {**CELL, "kind": "task", "status": "EXECUTING", "finished_at": None, "duration": None,
           "checkpoints": [], "waits": [], "now": T0 + 0.4,
           "steps": [_try(1, "FAILED", 0.2, 0.3, delay=5.0, err="model server busy")]}
    graph.evaluate("(r) => window.render(r)", run)
    node = graph.locator(".dng-node", has_text="fetch").first
    badge = node.locator(".dng-badge")
    assert badge.inner_text() == "retrying" and "dng-k-wait" in badge.get_attribute("class")
    assert node.locator(".dng-try-label").inner_text() == "↻ try 1 failed · retrying after 5.00 s"
    assert node.locator(".dng-k-bad").count() == 0  # nothing red while it will be retried
    # the kernel behind the view is gone: the last known state, with its time
    graph.evaluate("(r) => window.render(r, {stale: true})", run)
    assert badge.inner_text().startswith("retrying (state as of ")
    graph.screenshot(path=str(graph.out / "stale.png"), full_page=True)
    # the run ended while waiting to retry: now the try failed for good
    graph.evaluate("(r) => window.render(r)", {**run, "status": "CANCELED"})
    assert node.locator(".dng-badge").inner_text() == "failed"


STEP_IO = {
    "run_id": "run_cell", "step_key": "load#1", "name": "load", "tries": [{
        "attempt": 1, "generation": 0, "run_attempt": 1, "status": "COMPLETED",
        "started_at": T0 + 0.2, "ended_at": T0 + 0.4, "retry_delay": None, "error": None,
        "has_args": True,
        "args_preview": {"args": [{"type": "str", "repr": "'<b>sales</b>.csv'"}],
                         "kwargs": {"limit": {"type": "int", "repr": "100"}},
                         "recorded": True, "size": 60},
        "output_preview": {
            "type": "pandas.DataFrame", "repr": "...", "shape": [100, 2],
            "dtypes": {"city": "object", "n": "int64"},
            "html": "<table><tr><td><img src=x onerror=alert(1)></td></tr></table>",
            "table": {"columns": ["city", "n"], "index": ["0", "1"],
                      "rows": [["<i>Oslo</i>", "3"], ["Rome", "5"]], "more_columns": 0}},
    }],
}
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAAj"
       "CAIBwz+2jwAAAABJRU5ErkJggg==")


def test_clicking_a_step_shows_its_arguments_and_output(graph):
    graph.evaluate("""(d) => { window.stepData = d; window.render(window.cellRun, {
        getJson: async (path) => { window.calls.push(["get", path]); return window.stepData; },
    }); }""".replace("window.cellRun", json.dumps(CELL)), STEP_IO)
    graph.locator(".dng-step-title", has_text="load").click()
    box = graph.locator(".dng-io")
    box.locator(".dng-io-table").wait_for()
    assert ["get", "/runs/run_cell/steps/load%231"] in graph.evaluate("window.calls")
    text = box.inner_text()
    assert "'<b>sales</b>.csv'" in text and "limit=" in text and "shape 100 × 2" in text
    assert box.locator("b, i, img").count() == 0  # user text stays text
    assert box.locator(".dng-io-table td").first.inner_text() == "<i>Oslo</i>"
    assert "98 more rows" in text and "dtypes: city object, n int64" in text
    graph.screenshot(path=str(graph.out / "step-io.png"), full_page=True)
    # an image output is a thumbnail; closing and reopening keeps what was loaded
    image = json.loads(json.dumps(STEP_IO))
    image["tries"][0]["output_preview"] = {"type": "PIL.Image.Image", "repr": "<img>",
                                           "shape": [2, 2], "image": PNG}
    graph.evaluate("(d) => { window.stepData = d; }", image)
    graph.locator(".dng-step-title", has_text="load").click()
    assert graph.locator(".dng-io").count() == 0
    graph.locator(".dng-step-title", has_text="load").click()
    assert graph.locator(".dng-io .dng-io-table").count() == 1  # cached while nothing changed
    # a step whose try changed loads again: now its output is an image
    later = json.loads(json.dumps(CELL))
    later["steps"][0].update(attempt=2)
    graph.evaluate("(r) => window.render(r, {getJson: async () => window.stepData})", later)
    img = graph.locator(".dng-io img.dng-thumb")
    img.wait_for()
    assert img.get_attribute("src") == f"data:image/png;base64,{PNG}"
    assert graph.evaluate("document.querySelector('.dng-io img').naturalWidth") == 2


def test_rich_output_rows_show_their_text(graph):
    rows = [{"at": T0 + i, "stream": s, "line": line} for i, (s, line) in enumerate([
        ("stdout", "start"),
        ("display", json.dumps({"op": "display", "data": {"text/plain": "  0%|"},
                                "id": "progress-stderr-1", "progress": True})),
        ("display", json.dumps({"op": "display", "data": {"text/plain": "<DataFrame 3x2>",
                                                          "text/html": "<table>"}, "id": None})),
        ("display", json.dumps({"op": "update", "data": {"text/plain": "100%|##########|"},
                                "id": "progress-stderr-1", "progress": True})),
        ("display", json.dumps({"op": "clear", "wait": False})),
        ("display", json.dumps({"op": "display", "data": {"image/png": "AAAA"}, "id": None})),
        ("stderr", "done")])]
    graph.evaluate("(r) => window.render(r)", {**CELL, "logs": rows})
    lines = graph.locator(".dng-logs pre").inner_text().strip().split("\n")
    assert lines == ["start", "100%|##########|", "<DataFrame 3x2>", "[image/png]", "done"]


def test_output_printed_in_the_cell_too_starts_folded(graph):
    logs = [{"at": T0 + 1, "stream": "stdout", "line": "loaded 3 rows"}]
    graph.evaluate("(r) => window.render(r)", {**CELL, "logs": logs})
    assert graph.locator(".dng-logs").get_attribute("open") is not None
    graph.evaluate("(r) => window.render(r, {outputsInCell: true})", {**CELL, "id": "run_c2",
                                                                      "logs": logs})
    folded = graph.locator(".dng-logs")
    assert folded.get_attribute("open") is None, "the cell shows the output: no second copy"
    assert "also in the cell below" in folded.locator("summary").inner_text()
    folded.locator("summary").click()  # still one click away
    assert "loaded 3 rows" in folded.locator("pre").inner_text()


# ---------------------------------------------------------------------- a big run, grouped

def _big_steps(counts: dict[str, int]) -> list[dict]:
    """Steps named after ``counts`` in turn (fetch, parse, save, fetch, ...), 10 ms each;
    parse#7 raised into the task, save#3 failed once and was retried."""
    rows, seen, t = [], dict.fromkeys(counts, 0), 0.0
    while any(seen[n] < c for n, c in counts.items()):
        for name, count in counts.items():
            if seen[name] >= count:
                continue
            seen[name] += 1
            key = f"{name}#{seen[name]}"
            if key == "save#3":
                rows.append(_step(key, name, 1, "FAILED", t, t + 0.01, "busy"))
                rows.append(_step(key, name, 2, "COMPLETED", t + 0.02, t + 0.03))
            elif key == "parse#7":
                rows.append(_step(key, name, 1, "ERRORED", t, t + 0.01, "bad page"))
            else:
                rows.append(_step(key, name, 1, "COMPLETED", t, t + 0.01))
            t += 0.011
    return rows


BIG = {**CELL, "id": "run_big", "kind": "task", "task_id": "crawl", "checkpoints": [],
       "steps": _big_steps({"fetch": 150, "parse": 100, "save": 50})}


def test_a_big_run_shows_one_node_per_step_name_with_its_counts(graph):
    graph.evaluate("(r) => window.render(r)", BIG)
    groups = graph.locator(".dng-graph > .dng-group")
    assert groups.count() == 3
    assert graph.locator(".dng-graph > .dng-node").count() == 4  # three names, the end
    fetch, parse, save = (groups.nth(i) for i in range(3))
    assert fetch.get_attribute("data-group") == "fetch"
    assert "× 150" in fetch.inner_text() and "✓ 150" in fetch.inner_text()
    assert "median 10 ms" in fetch.inner_text()
    assert "✕ 1 failed" in parse.inner_text() and "✓ 99" in parse.inner_text()
    assert "dng-k-bad" in parse.get_attribute("class")
    assert "51 tries" in save.inner_text()  # save#3 was retried
    graph.screenshot(path=str(graph.out / "grouped.png"), full_page=True)

    # a click lists the name's steps, 100 at a time
    fetch.locator(".dng-group-title").click()
    listed = fetch.locator(".dng-group-steps > .dng-node")
    assert listed.count() == 100
    assert listed.nth(0).locator(".dng-name").inner_text() == "fetch#1"
    more = fetch.locator("button.dng-more-btn")
    assert more.inner_text() == "show 50 more (50 not shown)"
    graph.screenshot(path=str(graph.out / "opened.png"), full_page=True)
    more.click()
    assert listed.count() == 150 and more.count() == 0
    # a listed step opens like any other; the group stays open across re-renders
    save.locator(".dng-group-title").click()
    retried = save.locator(".dng-group-steps > .dng-node").nth(2)
    assert retried.locator(".dng-name").inner_text() == "save#3"
    assert "2 tries" in retried.inner_text() and "↻ try 1 failed" in retried.inner_text()
    graph.evaluate("(r) => window.render(r)", BIG)
    assert fetch.locator(".dng-group-steps > .dng-node").count() == 150
    fetch.locator(".dng-group-title").click()
    assert fetch.locator(".dng-group-steps").count() == 0


def test_a_summarised_big_run_lists_a_names_steps_page_by_page_from_the_api(graph):
    """A view of a big run gets its newest rows and every step by name (step_groups): an
    opened group's steps come from GET /runs/<id>/steps, a page at a time."""
    rows = _big_steps({"fetch": 250})
    groups = [{"name": "fetch", "steps": 250, "tries": 250, "completed": 250, "failed": 0,
               "retrying": 0, "total_s": 2.5, "median_s": 0.01, "first_at": T0}]
    run = {**BIG, "steps": rows[-20:], "steps_omitted": 230, "step_groups": groups}
    graph.evaluate("""([run, rows]) => {
        window.pages = [];
        window.render(run, {getJson: async (path) => {
            const q = new URL(path, "http://x").searchParams;
            window.pages.push(path);
            const offset = Number(q.get("offset")), limit = Number(q.get("limit"));
            return {total: rows.length, offset, steps: rows.slice(offset, offset + limit)};
        }});
    }""", [run, rows])
    group = graph.locator(".dng-group")
    assert "× 250" in group.inner_text()
    assert graph.get_by_text("earlier step records not shown").count() == 0
    group.locator(".dng-group-title").click()
    listed = group.locator(".dng-group-steps > .dng-node")
    listed.nth(99).wait_for()
    assert graph.evaluate("window.pages") == [
        "/runs/run_big/steps?name=fetch&offset=0&limit=100"]
    group.locator("button.dng-more-btn").click()
    listed.nth(199).wait_for()
    assert listed.nth(199).locator(".dng-name").inner_text() == "fetch#200"
    assert graph.evaluate("window.pages")[-1] == "/runs/run_big/steps?name=fetch&offset=100&limit=100"
    assert "show 50 more" in group.locator("button.dng-more-btn").inner_text()


def test_hook_runs_show_after_the_end_like_children(graph):
    failed = {**CELL, "id": "run_failed", "kind": "task", "status": "FAILED",
              "error": {"type": "ValueError", "message": "bad input", "traceback": None},
              "hooks": [{"id": "run_hook1", "task_id": "ingest.on_failure", "status": "COMPLETED",
                         "hook_kind": "on_failure", "created_at": T0 + 2}],
              "checkpoints": []}
    hook = {**CELL, "id": "run_hook1", "kind": "task", "task_id": "ingest.on_failure",
            "hook_of": "run_failed", "hook_kind": "on_failure", "checkpoints": [], "steps": []}
    graph.evaluate("(c) => { window.children = c; }", {"run_hook1": hook})
    graph.evaluate("(r) => window.render(r)", failed)
    node = graph.locator(".dng-node", has_text="hooks")
    assert "on_failure" in node.inner_text()
    nodes = graph.locator(".dng-graph > li")
    assert "hooks" in nodes.last.inner_text().lower(), "drawn after the run's end"
    child = node.locator(".dng-child")
    assert "ingest.on_failure" in child.inner_text() and "COMPLETED" in child.inner_text()
    child.locator("button.dng-toggle").click()
    nested = child.locator(".dng-run.dng-nested")
    nested.wait_for()
    graph.screenshot(path=str(graph.out / "hooks.png"), full_page=True)
    graph.evaluate("(r) => window.render(r)", hook)
    assert "on_failure hook of" in graph.locator(".dng-sub").first.inner_text()


def test_progress_and_metadata_show_under_the_title(graph):
    meta = {f"key{i:02}": i for i in range(32)}
    meta["key00"] = {"long": "x" * 300}
    running = {**CELL, "id": "run_reports", "kind": "task", "status": "EXECUTING",
               "finished_at": None, "checkpoints": [], "metadata": meta,
               "progress": {"done": 120, "total": 100, "text": "rows", "at": T0}}
    graph.evaluate("(r) => window.render(r)", running)
    bar = graph.locator(".dng-reports .dng-progress")
    assert bar.locator(".dng-progress-label").inner_text() == "120 / 100 · 100%"  # clamped
    assert bar.locator(".dng-progress-fill").get_attribute("style") == "width: 100%"
    rows = graph.locator(".dng-metadata-row")
    assert rows.count() == 32 and graph.locator(".dng-metadata-row:visible").count() == 12
    value = rows.first.locator(".dng-metadata-value")
    assert value.inner_text().endswith("…") and len(value.get_attribute("title")) > 300
    graph.locator(".dng-metadata-more > summary", has_text="20 more keys").click()
    assert graph.locator(".dng-metadata-row:visible").count() == 32
    graph.evaluate("(r) => window.render(r)", running)  # opened stays open
    assert graph.locator(".dng-metadata-row:visible").count() == 32
    graph.screenshot(path=str(graph.out / "reports.png"), full_page=True)
    # no total: a moving bar while the run runs, a still one once it ended
    unknown = {**running, "progress": {"done": 7, "total": None, "text": None}, "metadata": {}}
    graph.evaluate("(r) => window.render(r)", unknown)
    assert graph.locator(".dng-progress-bar.dng-indeterminate").count() == 1
    assert graph.locator(".dng-metadata").count() == 0
    graph.evaluate("(r) => window.render(r)", {**unknown, "status": "COMPLETED"})
    assert graph.locator(".dng-progress-bar.dng-indeterminate").count() == 0
    assert graph.locator(".dng-progress-label").inner_text() == "7"
    graph.evaluate("(r) => window.render(r)", {**unknown, "progress": None})
    assert graph.locator(".dng-reports").count() == 0
