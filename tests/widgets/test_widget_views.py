"""widgets.views: the names the kernel side and the package root use, in one place."""

from __future__ import annotations

from durable_nb.widgets import feed, run_widget, runs_widget, snapshot, streams, views


def test_views_gathers_the_names_from_the_modules_that_hold_them():
    homes = [feed, run_widget, runs_widget, snapshot, streams]
    for name in views.__all__:
        obj = getattr(views, name)
        assert any(getattr(m, name, None) is obj for m in homes), name
