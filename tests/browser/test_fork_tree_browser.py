"""Forks in a real JupyterLab through Debian's Chromium: a failed run forked twice, and one
fork forked again, make one tree. The sidebar marks each fork ("fork of run_… from
clean#1") with its source as a link; a run view and a notebook's views (the Lab
extension's output and the anywidget view) draw the fork tree, the source on top, this
run marked, the steps a fork reused marked; a click on another run opens it, or shows it
in place where nobody can open it.

Screenshots are saved in test-output/<test name>/ (and the main ones in the folder named
by DURABLE_NB_SHOTS, when it is set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _lab import TAB, graph_page, open_notebook, wait_until

import durable_nb as dn

pytestmark = pytest.mark.browser

PANEL = "#durable-nb-runs"
OUTPUT = ".jp-DurableRunOutput-graph > .dng-run"
WIDGET = ".dng-widget > .dng-run"


@dn.step
def fetch(doc: str) -> str:
    return f"text of {doc}"


@dn.step
def clean(text: str) -> str:
    return text.upper()


@dn.step
def summarize(marker: str, text: str) -> str:
    if not os.path.exists(marker):
        raise ValueError(f"bad record in {text!r}")
    return text.split()[-1]


@dn.task(id="browser-fork-report", retry=dn.Retry(max_attempts=1))
def report(marker: str, doc: str) -> str:
    return summarize(marker, clean(fetch(doc)))


@pytest.fixture(scope="module", autouse=True)
def client(lab_client):
    return lab_client


@pytest.fixture(scope="module")
def tree(client, tmp_path_factory) -> dict[str, dn.RunHandle]:
    """source (FAILED) -> first (from summarize#1) -> again; source -> second (clean#1)."""
    marker = tmp_path_factory.mktemp("fork") / "fixed"
    source = report.trigger(str(marker), "doc-9")
    with pytest.raises(dn.RunFailed):
        source.result(timeout=60)
    marker.touch()  # the fix
    first = source.fork()
    second = source.fork(from_step="clean#1")
    assert first.result(timeout=60) == second.result(timeout=60) == "DOC-9"
    again = first.fork(from_step="summarize#1")
    assert again.result(timeout=60) == "DOC-9"
    return {"source": source, "first": first, "second": second, "again": again}


def shot(page, name: str, locator=None) -> None:
    """A screenshot in the test's folder, copied where DURABLE_NB_SHOTS says."""
    path = page.out / f"{name}.png"
    (locator or page).screenshot(path=str(path))
    if os.environ.get("DURABLE_NB_SHOTS"):
        shutil.copy(path, Path(os.environ["DURABLE_NB_SHOTS"]) / f"fork-{name}.png")


def _tree_of(view) -> list[tuple[str, int]]:
    """(run id, depth) of each run the view's fork tree lists, top to bottom."""
    return view.locator(".dng-fork").evaluate_all(
        "items => items.map(li => [li.dataset.runId, "
        "(() => { let d = 0, p = li.parentElement; while (p && !p.classList.contains("
        "'dng-fork-tree')) { if (p.classList.contains('dng-fork-list')) d++; "
        "p = p.parentElement; } return d; })()])")


def _expected(tree: dict[str, dn.RunHandle]) -> list[list]:
    return [[tree["source"].id, 0], [tree["first"].id, 1], [tree["again"].id, 2],
            [tree["second"].id, 1]]


def test_the_panel_marks_forks_and_a_run_view_draws_the_tree(page, lab, tree):
    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    page.locator(TAB).click()
    page.locator(".jp-DurablePanel-live.jp-mod-connected").wait_for()
    rows = {k: page.locator(f'.jp-DurableRun[data-run-id="{h.id}"]') for k, h in tree.items()}
    rows["second"].wait_for()
    assert rows["source"].locator(".jp-DurableRun-fork").count() == 0
    line = " ".join(rows["second"].locator(".jp-DurableRun-fork").inner_text().split())
    assert line == f"fork of {tree['source'].id[:8]} from clean#1"
    assert rows["again"].locator(".jp-DurableRun-fork").inner_text().endswith(
        "from summarize#1")
    shot(page, "panel-list", page.locator(PANEL))

    # the source link opens the source's run view, not the fork's
    rows["again"].locator(".jp-DurableRun-forkSource").click()
    view = page.locator(f"#durable-run-{tree['first'].id}")
    view.locator(".dng-fork-tree").wait_for()
    assert page.locator(f"#durable-run-{tree['again'].id}").count() == 0
    assert _tree_of(view) == _expected(tree)
    this = view.locator(".dng-fork-self")
    assert this.get_attribute("data-run-id") == tree["first"].id
    assert "← this run" in this.locator(".dng-row").first.inner_text()
    sub = view.locator(".dng-sub").first.inner_text()
    assert f"fork of {tree['source'].id[:12]}" in sub and "from summarize#1" in sub
    reused = [n.locator(".dng-name").first.inner_text()
              for n in view.locator(".dng-node").all() if n.locator(".dng-reused").count()]
    assert reused == ["fetch", "clean"], "the steps it reused from its source"
    shot(page, "panel-run-view", view)

    # a run in the tree opens its own view
    view.locator(f'.dng-fork[data-run-id="{tree["second"].id}"] a.dng-link').first.click()
    other = page.locator(f"#durable-run-{tree['second'].id}")
    other.locator(".dng-fork-self").wait_for()
    assert other.locator(".dng-fork-self").get_attribute("data-run-id") == tree["second"].id
    assert page.console_errors() == []


NOTEBOOK = """\
import durable_nb as dn
from durable_nb.widgets.views import RUN_MIME, widget_for

run = dn.get_run({run_id!r})
display(run)  # the Lab extension's live output
display(widget_for(run), exclude=[RUN_MIME])  # the anywidget view, as in VS Code
"""


def test_a_notebook_draws_the_fork_tree_in_both_views(page, lab, tree):
    lab.write_notebook("forks.ipynb", [NOTEBOOK.format(run_id=tree["again"].id)])
    open_notebook(page, lab, "forks.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    for sel in (OUTPUT, WIDGET):
        view = page.locator(f'{sel}[data-run-id="{tree["again"].id}"]')
        view.locator(".dng-fork-tree").wait_for()
        wait_until(lambda v=view: _tree_of(v) == _expected(tree), 30, "the whole tree")
        assert view.locator(".dng-fork-self").get_attribute("data-run-id") == tree["again"].id
    shot(page, "notebook", page.locator(".jp-Cell").first)
    assert page.console_errors() == []


HARNESS = """
const mod = await import("data:text/javascript;base64,%s");
window.opened = [];
window.loaded = [];
window.render = (run, runs, canOpen) => {
  mod.renderRunGraph(document.getElementById("root"), run, {
    onOpenChild: (id) => { window.opened.push(id); return canOpen ? true : false; },
    loadChild: async (id) => { window.loaded.push(id); return runs[id]; },
  });
};
window.ready = true;
"""


def test_where_nobody_opens_a_run_the_tree_shows_it_in_place(browser, tree, request):
    """run_graph.js alone (as the anywidget draws it outside JupyterLab), on the API's data."""
    runs = {h.id: {**h.info(), "logs": [], "checkpoints": []} for h in tree.values()}
    page, errors = graph_page(browser, HARNESS)
    page.evaluate("([r, all]) => window.render(r, all, false)",
                  [runs[tree["second"].id], runs])
    link = page.locator(f'.dng-fork[data-run-id="{tree["source"].id}"] a.dng-link').first
    link.click()
    inline = page.locator(f'.dng-fork[data-run-id="{tree["source"].id}"] '
                          f'.dng-run.dng-nested[data-run-id="{tree["source"].id}"]')
    inline.wait_for()
    assert "bad record" in inline.inner_text()
    assert page.evaluate("window.opened") == [tree["source"].id]
    assert page.evaluate("window.loaded") == [tree["source"].id]
    page.out = Path(__file__).resolve().parents[2] / "test-output" / request.node.name
    page.out.mkdir(parents=True, exist_ok=True)
    shot(page, "inline")
    link.click()  # closes it again
    inline.wait_for(state="detached")
    page.evaluate("([r, all]) => window.render(r, all, true)",
                  [runs[tree["first"].id], runs])
    page.locator(f'.dng-fork[data-run-id="{tree["again"].id}"] a.dng-link').first.click()
    assert page.locator(".dng-nested").count() == 0, "opened elsewhere: not shown here"
    page.close()
    assert errors == []
