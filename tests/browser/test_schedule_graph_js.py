"""A scheduled run in ``static/run_graph.js`` (the run widget and the Lab panel's run view):
its header names the schedule that fired it and the tick it fired for. Fixed run data in
Chromium, no server."""

from __future__ import annotations

import pytest
from test_run_graph_js import CELL, T0, graph  # noqa: F401  (graph is the page fixture)

pytestmark = pytest.mark.browser


def test_a_scheduled_run_names_its_schedule_and_tick(graph):  # noqa: F811
    run = {**CELL, "id": "run_sched", "task_id": "nightly-report", "schedule_id": "nightly",
           "schedule_tick": T0, "tags": ["etl"]}
    graph.evaluate("(r) => window.render(r)", run)
    label = graph.locator(".dng-schedule")
    assert label.count() == 1
    text = label.inner_text()
    assert text.startswith(" · schedule nightly, tick ") and text.strip()[-8:].count(":") == 2
    assert label.get_attribute("title") == "fired by schedule nightly"
    graph.screenshot(path=str(graph.out / "scheduled-run.png"), full_page=True)
    graph.evaluate("(r) => window.render(r)", {**CELL, "id": "run_plain"})
    assert graph.locator(".dng-schedule").count() == 0, "a run no schedule fired says nothing"
