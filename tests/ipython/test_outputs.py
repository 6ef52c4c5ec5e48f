"""A %%durable cell's rich outputs in real kernels under nbclient: shown once each, in
order, with one progress bar; and the same again on `%durable attach` in a new kernel."""

from __future__ import annotations

import os
import queue
import time

import nbformat
import pytest
from _support import EngineProcess
from nbclient import NotebookClient
from test_magics import Kernel, run_id

from durable_nb.ipython.outputs import Outputs, collapse

CELL = """%%durable --wait
import pandas as pd
import matplotlib.pyplot as plt
import plotly.graph_objects as go
from tqdm.auto import tqdm
df = pd.DataFrame({"item": ["a", "b"], "score": [1, 2]})
print("before")
display(df)
fig, ax = plt.subplots()
ax.plot([1, 3, 2])
plt.show()
go.Figure(go.Bar(x=["a", "b"], y=[1, 2])).show()
total = 0
for i in tqdm(range(100)):
    total += i
print("after", total)
int(df.score.sum()) * 10
"""


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory):
    eng = EngineProcess(tmp_path_factory.mktemp("outputs") / "store.duckdb",
                        ["--wait-grace", "0.3"])
    client = eng.start()
    yield {**os.environ, "DURABLE_NB_URL": client.url, "DURABLE_NB_TOKEN": client.token}
    eng.stop()


def _execute(cells: list[str], env: dict) -> list[dict]:
    """The outputs of each cell, as a notebook saved after running them keeps them."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=180, kernel_name="python3").execute(env=env)
    return [c.outputs for c in nb.cells]


def _kinds(outputs: list[dict]) -> list[str]:
    """Each output as a short label: a stream's lines, or the richest type of a display."""
    out = []
    for o in outputs:
        if o["output_type"] == "stream":
            out += [f"{o['name']}:{line}" for line in o["text"].splitlines()
                    if not line.startswith("[durable]")]
            continue
        data = o.get("data", {})
        if "application/vnd.plotly.v1+json" in data:
            out.append("plotly")
        elif "image/png" in data:
            out.append("png")
        elif "text/html" in data:
            out.append("dataframe" if "dataframe" in data["text/html"] else "html")
        elif "text/plain" in data:
            out.append(f"text:{data['text/plain']}")
    return out


def _check(outputs: list[dict]) -> None:
    """The cell's outputs, from its first line on: each once, in order, one bar."""
    kinds = [k for k in _kinds(outputs) if k != "html"]  # plotly's loader: shows nothing
    kinds = kinds[kinds.index("stdout:before"):]
    bars = [k for k in kinds if "it/s" in k]
    assert len(bars) == 1, kinds
    assert bars[0].startswith("text:100%|") and "100/100" in bars[0], bars
    assert kinds == ["stdout:before", "dataframe", "png", "plotly", bars[0],
                     "stdout:after 4950", "text:30"], kinds


@pytest.mark.slow
def test_a_cells_outputs_show_once_in_order_and_again_on_attach(engine_env):
    first = _execute(["%load_ext durable_nb", CELL], engine_env)[1]
    _check(first)
    rid = run_id(" ".join(o.get("text", "") for o in first if o["output_type"] == "stream"))
    attach = f"%matplotlib inline\n%durable attach {rid}\nfig"
    again = _execute(["%load_ext durable_nb", attach], engine_env)[1]
    _check(again[:-1])
    assert "image/png" in again[-1]["data"], "the figure brought back shows as the result"
    figures = [o for o in again if "image/png" in o.get("data", {})]
    assert len(figures) == 2, "the plot, and the figure brought back: none shown twice"


def _live_outputs(kernel: Kernel, code: str, until: str, timeout: float = 120) -> list[dict]:
    """A cell's outputs as a notebook frontend keeps them from IOPub (a display updated by
    ``update_display_data`` in place), read until a stream line contains ``until``."""
    msg_id = kernel.kc.execute(code)
    outs: list[dict] = []
    deadline = time.monotonic() + timeout
    while not any(until in o.get("text", "") for o in outs):
        assert time.monotonic() < deadline, outs
        try:
            msg = kernel.kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        kind, c = msg["msg_type"], msg["content"]
        if kind == "update_display_data":
            did = c["transient"]["display_id"]
            for o in outs:
                if o.get("display_id") == did:
                    o["data"] = c["data"]
        elif msg["parent_header"].get("msg_id") != msg_id:
            continue
        elif kind == "stream":
            if outs and outs[-1]["output_type"] == "stream" and outs[-1]["name"] == c["name"]:
                outs[-1]["text"] += c["text"]
            else:
                outs.append({"output_type": "stream", "name": c["name"], "text": c["text"]})
        elif kind in ("display_data", "execute_result"):
            outs.append({"output_type": kind, "data": c["data"],
                         "display_id": c.get("transient", {}).get("display_id")})
    return outs


@pytest.mark.slow
def test_a_running_cell_shows_its_outputs_live_in_its_own_cell(engine_env):
    kernel = Kernel.start({k: engine_env[k] for k in ("DURABLE_NB_URL", "DURABLE_NB_TOKEN")})
    try:
        kernel.ok("%load_ext durable_nb")
        cell = CELL.replace("%%durable --wait", "%%durable")
        _check(_live_outputs(kernel, cell, "COMPLETED"))
    finally:
        kernel.close()


def test_collapse_gives_a_display_its_last_update():
    recs = [{"op": "display", "id": "p", "data": {"text/plain": "1%"}}, None,
            {"op": "update", "id": "p", "data": {"text/plain": "100%"}},
            {"op": "update", "id": "gone", "data": {"text/plain": "x"}},
            {"op": "update", "id": "seen", "data": {"text/plain": "y"}}]
    out = collapse(recs, known={"seen"})
    assert out[0] == {"op": "display", "id": "p", "data": {"text/plain": "100%"},
                      "metadata": None}
    assert out[1] is None and out[2] is None
    assert out[3] == {"op": "display", "id": "gone", "data": {"text/plain": "x"}}
    assert out[4]["op"] == "update"


def test_outputs_of_two_followers_never_share_display_ids():
    assert Outputs("run_a").prefix != Outputs("run_a").prefix
