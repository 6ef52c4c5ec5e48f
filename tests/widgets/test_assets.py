"""The widgets' static assets: each widget's ES module is the graph renderer, the widget
glue and an entry point naming its render function (a module Node.js loads), and the
stylesheet is the graph's then the widgets'."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from durable_nb.widgets import assets
from durable_nb.widgets.run_widget import RunWidget
from durable_nb.widgets.runs_widget import RunsWidget

STATIC_FILES = ["run_graph.js", "widgets.js", "run_graph.css", "widgets.css"]


@pytest.mark.parametrize("name", STATIC_FILES)
def test_asset_is_the_static_files_text(name):
    text = assets.asset(name)
    assert text == (assets.STATIC / name).read_text(encoding="utf-8")
    assert text.strip(), f"static/{name} is empty"


def test_asset_of_a_missing_file_raises():
    with pytest.raises(FileNotFoundError):
        assets.asset("no-such-file.js")


def test_esm_is_the_graph_then_the_glue_then_the_entry_point():
    graph, glue = assets.asset("run_graph.js"), assets.asset("widgets.js")
    module = assets.esm("renderRunView")
    assert module.index(graph) == 0
    assert module.index(glue) > len(graph) - 1
    assert module.endswith("export default { render: renderRunView };\n")
    defaults = [ln for ln in module.splitlines() if ln.startswith("export default")]
    assert defaults == ["export default { render: renderRunView };"]  # the entry point only


@pytest.mark.parametrize("render", ["renderRunView", "renderRunsView"])
def test_the_render_functions_the_widgets_name_are_defined(render):
    assert f"function {render}(" in assets.asset("widgets.js")


def test_css_is_the_graphs_stylesheet_then_the_widgets():
    assert assets.css() == assets.asset("run_graph.css") + "\n" + assets.asset("widgets.css")
    assert ".dng-root" in assets.css() and ".dng-runs" in assets.css()


def test_widget_classes_carry_their_module_and_stylesheet():
    assert RunWidget._esm == assets.esm("renderRunView")
    assert RunsWidget._esm == assets.esm("renderRunsView")
    assert RunWidget._css == RunsWidget._css == assets.css()


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
@pytest.mark.parametrize("render", ["renderRunView", "renderRunsView"])
def test_node_loads_the_module_and_finds_its_render_function(tmp_path, render):
    path = tmp_path / f"{render}.mjs"
    path.write_text(assets.esm(render), encoding="utf-8")
    script = (f"import({json.dumps(path.as_uri())}).then(m => console.log(JSON.stringify("
              "[typeof m.default.render, m.default.render.name])))")
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["function", render]
