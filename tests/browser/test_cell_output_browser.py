"""A `%%durable` cell's rich output in a real JupyterLab, as a person sees it: the DataFrame
table, the figure, the progress bar and the last expression each appear once below the run's
live view (whose own copy of the output is folded), and the bar updates in place."""

from __future__ import annotations

import pytest
from _lab import cell, open_notebook, run_all, wait_until
from test_widgets_browser import run_output, save, saved_outputs, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = "%load_ext durable_nb\nimport pandas as pd"
CELL = """\
%%durable --name rich-cell
import time
import matplotlib.pyplot as plt
from tqdm.auto import tqdm
df = pd.DataFrame({"region": ["north", "south"], "orders": [120, 95]})
display(df)
for i in tqdm(range(40), desc="regions"):
    time.sleep(0.02)
fig, ax = plt.subplots(figsize=(4, 2))
ax.bar(df["region"], df["orders"])
plt.show()
df["orders"].sum() * 10
"""


def test_a_durable_cell_shows_rich_output_once_in_lab(page, lab):
    lab.write_notebook("rich.ipynb", [SETUP, CELL])
    open_notebook(page, lab, "rich.ipynb")
    run_all(page)
    out = cell(page, 1)
    view = run_output(page, scope=out).first
    view.wait_for(timeout=60_000)
    run_id = view.get_attribute("data-run-id")
    wait_until(lambda: view.get_attribute("data-status") == "COMPLETED", 90, "the run to end")
    area = out.locator(".jp-OutputArea")
    wait_until(lambda: "2150" in area.inner_text(), 60, "the last expression's value")
    tables = area.locator("table.dataframe")
    assert tables.count() == 1, "display(df) shows once"
    assert "north" in tables.first.inner_text()
    assert area.locator("img").count() == 1, "the figure shows once"
    text = area.inner_text()
    assert text.count("regions: 100%") == 1, "one progress bar, updated in place"
    assert "regions:  2%" not in text and text.count("2150") == 1
    logs = view.locator(".dng-logs")
    assert logs.get_attribute("open") is None and "also in the cell below" in logs.inner_text()
    shot(page, "rich-cell", out)
    save(page)
    [saved] = [o for o in saved_outputs(lab, "rich.ipynb") if run_id in o["text/html"]]
    assert "COMPLETED" in saved["text/html"]
