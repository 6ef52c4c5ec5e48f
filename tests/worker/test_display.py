"""Output records of %%durable cells in a real worker process: IPython's display machinery,
the last expression, figures, plotly, tqdm and "\\r" progress bars, the size cap."""

from __future__ import annotations

import json
import time

import pytest
from _support import FakeEngineWorker

from durable_nb.client.show import log_lines
from durable_nb.worker import display
from durable_nb.worker.cells import run_cell


def run_source(source, inputs):
    return run_cell(source, inputs, [])


@pytest.fixture(scope="module")
def worker():
    w = FakeEngineWorker()
    yield w
    w.close()


def outputs(worker, source: str, **inputs) -> list[tuple[str, object]]:
    """Run a cell; its log messages in order: (stream, line) or ("display", record)."""
    worker.run(run_source, source, inputs)
    out: list[tuple[str, object]] = []
    while True:
        _, msg = worker.until("checkpoint", "log", "done", "failed")
        if msg["op"] == "checkpoint":
            worker.chan.send({"ok": True, "aid": msg["aid"], "re": msg["req"]})
        elif msg["op"] == "log":
            assert msg["stream"] != "display" or len(msg["lines"]) == 1
            out += [(msg["stream"], json.loads(x) if msg["stream"] == "display" else x)
                    for x in msg["lines"]]
        else:
            assert msg["op"] == "done", msg.get("error")
            return out


def records(out) -> list[dict]:
    return [r for s, r in out if s == "display"]


def test_display_update_and_clear_are_records_in_order_with_prints(worker):
    out = outputs(worker, """
print("one")
display("shown")
h = display("a", display_id=True)
update_display("b", display_id=h.display_id)
from IPython.display import clear_output, HTML
import IPython.display
clear_output(wait=True)
IPython.display.display(HTML("<b>x</b>"))
print("two")
""")
    ops = [(s, r if s == "stdout" else (r["op"], r.get("data", {}).get("text/plain")))
           for s, r in out]
    assert ops == [("stdout", "one"), ("display", ("display", "'shown'")),
                   ("display", ("display", "'a'")), ("display", ("update", "'b'")),
                   ("display", ("clear", None)),
                   ("display", ("display", "<IPython.core.display.HTML object>")),
                   ("stdout", "two")]
    recs = records(out)
    assert recs[1]["id"] == recs[2]["id"] and recs[1]["id"]
    assert recs[3] == {"op": "clear", "wait": True}
    assert recs[4]["data"]["text/html"] == "<b>x</b>"


def test_the_last_expression_is_shown_unless_none_or_a_semicolon(worker):
    shown = records(outputs(worker, "x = 20\nx + 1  # the answer\n"))
    assert [r["data"]["text/plain"] for r in shown] == ["21"]
    assert records(outputs(worker, "x = 2\nx + 1;\n")) == []
    assert records(outputs(worker, "x = 2\nprint(x)\n")) == []
    assert records(outputs(worker, "x = 2\nif x:\n    x\n")) == []


def test_a_dataframe_is_html_and_plotly_is_its_json(worker):
    recs = records(outputs(worker, """
import pandas as pd
import plotly.graph_objects as go
go.Figure(go.Bar(x=["a"], y=[1])).show()
pd.DataFrame({"a": [1, 2]})
"""))
    plots = [r for r in recs if "application/vnd.plotly.v1+json" in r["data"]]
    assert len(plots) == 1 and "text/html" in plots[0]["data"]
    assert plots[0]["data"]["application/vnd.plotly.v1+json"]["data"][0]["type"] == "bar"
    assert 'class="dataframe"' in recs[-1]["data"]["text/html"]


def test_each_open_figure_is_one_png_and_a_returned_figure_is_not_shown_twice(worker):
    out = outputs(worker, """
import matplotlib.pyplot as plt
plt.plot([1, 2])
plt.show()
fig, ax = plt.subplots()
ax.plot([3, 1])
other = plt.figure()
plt.plot([0, 1])
fig
""")
    pngs = [r for r in records(out) if "image/png" in r["data"]]
    assert len(pngs) == 3, [r["data"].get("text/plain") for r in records(out)]
    assert log_lines([{"stream": "display", "line": json.dumps(pngs[0])}])[0][1].startswith(
        "[image/png ")


def test_tqdm_is_one_bar_updated_in_place_at_most_ten_times_a_second(worker):
    start = time.monotonic()
    out = outputs(worker, """
from tqdm.auto import tqdm
from tqdm.notebook import tqdm as widget_tqdm
for i in tqdm(range(100)):
    time.sleep(0.005)
for i in widget_tqdm(range(3)):
    pass
""", time=time)
    took = time.monotonic() - start
    assert [s for s, _ in out] == ["display"] * len(out), "no stderr lines"
    recs = records(out)
    ids = sorted({r["id"] for r in recs})
    assert len(ids) == 2 and all(i.startswith("progress-stderr-") for i in ids)
    first = [r for r in recs if r["id"] == recs[0]["id"]]
    assert first[0]["op"] == "display" and {r["op"] for r in first[1:]} == {"update"}
    assert all(r["progress"] for r in recs)
    assert first[-1]["data"]["text/plain"].startswith("100%|") and "100/100" in \
        first[-1]["data"]["text/plain"]
    assert len(first) <= 10 * took + 3, len(first)
    lines = log_lines([{"stream": s, "line": json.dumps(r)} for s, r in out])
    assert [t.split("|")[0] for _, t in lines] == ["100%", "100%"]


def test_carriage_return_progress_is_a_bar_and_a_newline_ends_it(worker):
    out = outputs(worker, """
print("start")
for i in range(5):
    print(f"item {i}", end="\\r")
print("item 4 done")
print("end")
""")
    assert [s for s, _ in out] == ["stdout", "display", "display", "stdout"]
    bar = records(out)
    assert bar[0]["op"] == "display" and bar[0]["id"].startswith("progress-stdout-")
    assert bar[-1] == {"op": "update", "data": {"text/plain": "item 4 done"}, "metadata": {},
                       "id": bar[0]["id"], "progress": True}


def test_a_record_over_the_cap_keeps_a_note_of_what_was_dropped():
    rec = {"op": "display", "data": {"text/plain": "<big>", "image/png": b"x" * 3000},
           "metadata": {"image/png": {"width": 10}}, "id": None}
    small = json.loads(display.encode(rec, limit=1000))
    assert "image/png" not in small["data"]
    assert small["data"]["text/plain"].startswith("<big>\n[output dropped: image/png (")
    whole = json.loads(display.encode(rec))
    assert whole["data"]["image/png"].startswith("eHh4")  # base64, as Jupyter sends images


def test_log_message_times_never_repeat():
    times = [display.stamp() for _ in range(1000)]
    assert times == sorted(set(times))
