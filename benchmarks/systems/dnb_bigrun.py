"""Benchmark 13: a run of n steps in the UI.

A real engine runs one task of n no-op steps under three names (fetch, parse, save, in
turn). Then, in headless Chromium (Playwright, Debian's /usr/bin/chromium), a page on the
engine's own origin loads the widget's ES module (``widgets.assets.esm``, exactly what
anywidget loads) and its stylesheet:

- main figure, the widget's first render: from the data the kernel sends (``fetch_run``,
  timed on its own as a metric) to the graph drawn and laid out, through the widget's
  ``render`` with a stand-in anywidget model whose API requests go to the engine, as the
  kernel would send them;
- opening a step group (its first page of steps, fetched from GET /runs/{id}/steps);
- the JupyterLab panel's run view: the same graph module (``labextension/src/graph.ts``
  wraps it) loading the run from the REST API (``loadRun``) and drawing it;
- the timeline: the Python plotly figure build (``widgets.timeline``), with and without its
  REST read, and Chromium drawing that figure with plotly.js.

Each browser figure is the median of 3 fresh renders, measured in the page
(``performance.now()`` to the next animation frame after layout). Without Playwright or
Chromium the workload is n/a.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import _common as c
from durable_nb_bench import _session

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPEAT = 3

# in the page: the graph module as the widget loads it, a stand-in anywidget model, and
# timers that stop at the first animation frame after layout
HARNESS = """
async (args) => {
  const load = (src) => import(URL.createObjectURL(new Blob([src], {type: "text/javascript"})));
  window.widget = (await load(args.esm)).default;
  window.graph = await load(args.graph);
  const style = document.createElement("style");
  style.textContent = args.css;
  document.head.append(style);
  window.token = args.token;
  window.getJson = async (path) => {
    const r = await fetch("/durable/api" + path, {headers: {Authorization: "token " + args.token}});
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  };
  window.frame = () => new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 0)));
  window.box = () => {
    const el = document.createElement("div");
    document.body.replaceChildren(el);
    return el;
  };
  // an anywidget model with the widget's traits; API requests answered from the engine
  window.model = (state) => {
    const handlers = {};
    return {
      get: (k) => state[k],
      on: (ev, f) => { (handlers[ev] = handlers[ev] || []).push(f); },
      off: () => {},
      send: async (msg) => {
        let reply;
        try {
          reply = {type: "api_reply", id: msg.id, status: 200, body: await window.getJson(msg.path)};
        } catch (e) {
          reply = {type: "api_reply", id: msg.id, status: 500, body: {error: String(e)}};
        }
        (handlers["msg:custom"] || []).forEach((f) => f(reply));
      },
    };
  };
}
"""

WIDGET = """
async (state) => {
  const el = window.box();
  const t0 = performance.now();
  window.widget.render({model: window.model(state), el});
  el.getBoundingClientRect();
  await window.frame();
  return {ms: performance.now() - t0, nodes: el.querySelectorAll("*").length,
          groups: el.querySelectorAll(".dng-group").length};
}
"""

OPEN_GROUP = """
async () => {
  const t0 = performance.now();
  document.querySelector(".dng-group .dng-group-title").click();
  while (document.querySelectorAll(".dng-group-steps > .dng-node").length < 100) {
    if (performance.now() - t0 > 30000) throw new Error("the group's steps did not show");
    await new Promise((ok) => setTimeout(ok, 2));
  }
  await window.frame();
  return {ms: performance.now() - t0, nodes: document.querySelectorAll("*").length};
}
"""

PANEL = """
async (runId) => {
  const el = window.box();
  const t0 = performance.now();
  const run = await window.graph.loadRun(window.getJson, runId);
  const t1 = performance.now();
  window.graph.renderRunGraph(el, run, {});
  el.getBoundingClientRect();
  await window.frame();
  return {ms: performance.now() - t0, fetch_ms: t1 - t0, nodes: el.querySelectorAll("*").length};
}
"""

PLOT = """
async (fig) => {
  const el = window.box();
  const t0 = performance.now();
  await window.Plotly.newPlot(el, fig.data, fig.layout);
  await window.frame();
  return {ms: performance.now() - t0, bars: el.querySelectorAll(".point").length};
}
"""


def _tasks(dn: Any) -> Any:
    @dn.step()
    def fetch(i: int) -> int:
        return i

    @dn.step()
    def parse(i: int) -> int:
        return i

    @dn.step()
    def save(i: int) -> int:
        return i

    @dn.task(id="bigrun")
    def bigrun(n: int) -> int:
        for i in range(n):
            (fetch, parse, save)[i % 3](i)
        return n

    return bigrun


def _timed(fn: Any, repeat: int = REPEAT) -> tuple[float, Any]:
    """Median milliseconds of ``repeat`` calls, and the last call's value."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def _median(results: list[dict], key: str = "ms") -> float:
    return statistics.median(r[key] for r in results)


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise c.NotAvailable(f"not available: Playwright is not installed here ({exc})") from exc
    if not os.path.exists(CHROMIUM):
        raise c.NotAvailable(f"not available: no Chromium at {CHROMIUM}")
    return sync_playwright


def _browser_figures(client: Any, run_id: str, state: dict, fig_json: str, work: str) -> dict:
    """The widget's first render, a group opened, the panel's run view and the plot."""
    from plotly.offline import get_plotlyjs

    from durable_nb.widgets.assets import asset, css, esm

    sync_playwright = _playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(client.url.rstrip("/") + "/durable/api/health")
            page.set_content("<html><head></head><body style='margin:12px'></body></html>")
            page.evaluate(HARNESS, {"esm": esm("renderRunView"), "graph": asset("run_graph.js"),
                                    "css": css(), "token": client.token or ""})
            widget = [page.evaluate(WIDGET, state) for _ in range(REPEAT)]
            page.screenshot(path=os.path.join(work, "widget.png"))
            opened = page.evaluate(OPEN_GROUP)
            page.screenshot(path=os.path.join(work, "widget-group-open.png"))
            panel = [page.evaluate(PANEL, run_id) for _ in range(REPEAT)]
            page.add_script_tag(content=get_plotlyjs())
            fig = json.loads(fig_json)
            plot = [page.evaluate(PLOT, fig) for _ in range(REPEAT)]
            page.screenshot(path=os.path.join(work, "timeline.png"))
        finally:
            browser.close()
    return {"widget": widget, "opened": opened, "panel": panel, "plot": plot}


def w_bigrun(n: int, work: str, p: dict[str, Any]) -> c.Result:
    _playwright()  # n/a before any work when the browser cannot run
    with _session(work) as (dn, eng):
        from durable_nb.client.client import get_client
        from durable_nb.widgets import timeline as tl
        from durable_nb.widgets.feed import fetch_run

        task = _tasks(dn)
        start = time.perf_counter()
        handle = task.trigger(n)
        assert handle.result(timeout=p["limit_s"] * 0.7) == n
        run_s = time.perf_counter() - start
        client = get_client()
        rid = handle.id
        rest_ms, detail = _timed(lambda: client.request("GET", f"/runs/{rid}"))
        groups_ms, _ = _timed(lambda: client.request("GET", f"/runs/{rid}/step_groups"))
        page_ms, _ = _timed(lambda: client.request(
            "GET", f"/runs/{rid}/steps", query={"name": "fetch", "limit": 100}))
        feed_ms, state = _timed(lambda: fetch_run(client, rid))
        timeline_ms, fig = _timed(lambda: tl.timeline(handle))
        chart = tl._chart([handle])
        build_ms, fig = _timed(lambda: tl.figure(chart, "bench"))
        fig_json = fig.to_json()
        widget_state = {"run_id": rid, "run": state, "engine": {}, "notice": "",
                        "outputs_in_cell": False, "_mid": ""}
        b = _browser_figures(client, rid, widget_state, fig_json, work)
        widget = _median(b["widget"])
        return c.result(
            widget, "ms", n=n, steps_per_s=n / run_s, widget_nodes=b["widget"][-1]["nodes"],
            panel_nodes=b["panel"][-1]["nodes"], detail_kb=len(json.dumps(detail)) / 1024,
            widget_state_kb=len(json.dumps(state)) / 1024, figure_kb=len(fig_json) / 1024,
            plot_bars=b["plot"][-1]["bars"],
            metrics={
                "widget first render + its data (fetch_run)": c.metric(widget + feed_ms, "ms"),
                "kernel: the widget's data (fetch_run)": c.metric(feed_ms, "ms"),
                "widget: open a step group (first 100 steps)": c.metric(b["opened"]["ms"], "ms"),
                "Lab panel run view: load (REST) + render": c.metric(_median(b["panel"]), "ms"),
                "Lab panel run view: its REST load": c.metric(
                    _median(b["panel"], "fetch_ms"), "ms"),
                "timeline: Python figure build": c.metric(build_ms, "ms"),
                "timeline: Python, with its REST read": c.metric(timeline_ms, "ms"),
                "timeline: Chromium plot render (plotly.js)": c.metric(_median(b["plot"]), "ms"),
                "REST GET /runs/{id}": c.metric(rest_ms, "ms"),
                "REST GET /runs/{id}/step_groups": c.metric(groups_ms, "ms"),
                "REST GET /runs/{id}/steps (a page of 100)": c.metric(page_ms, "ms"),
            },
        )
