"""How a run shows itself in a notebook, plugged in by the package root.

The client's ``RunHandle`` renders through these hooks instead of importing the widgets
(which import the client): ``durable_nb/__init__`` sets them to the anywidget views, and
a process that never imports the package root shows the plain repr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# display_run(handle): show the live run widget; returns False outside a kernel
display_run: Callable[[Any], bool] | None = None
# timeline(handles, title): a plotly figure of the runs
timeline: Callable[..., Any] | None = None
