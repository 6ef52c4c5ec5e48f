"""The widgets' static JavaScript and CSS (``static/``), read once per widget class.

``static/run_graph.js`` draws a run's graph (the JupyterLab panel uses it too) and
``static/widgets.js`` is the anywidget glue; each widget's ES module is both files plus an
entry point naming its render function.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).with_name("static")


def asset(name: str) -> str:
    """The text of one file in ``static/``."""
    return (STATIC / name).read_text(encoding="utf-8")


def esm(render: str) -> str:
    """One ES module: the graph renderer, the widget glue, and the widget's entry point."""
    return "\n".join([asset("run_graph.js"), asset("widgets.js"),
                      f"export default {{ render: {render} }};\n"])


def css() -> str:
    """The stylesheet every widget carries (the graph's, then the widgets')."""
    return asset("run_graph.css") + "\n" + asset("widgets.css")
