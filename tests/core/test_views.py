"""The display hooks a run handle renders through, set by the package root."""

import subprocess
import sys


def _hooks(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_the_package_root_plugs_in_the_widget_views_lazily():
    """Importing the root sets the hooks without loading the widgets; outside a kernel the
    run view declines (False) so that the handle falls back to its plain repr."""
    out = _hooks("import sys, durable_nb\nfrom durable_nb.core import views\n"
                 "print('durable_nb.widgets.views' in sys.modules)\n"
                 "print(views.display_run(durable_nb.RunHandle('run_x')))\n"
                 "print('durable_nb.widgets.views' in sys.modules)")
    assert out.split() == ["False", "False", "True"]
