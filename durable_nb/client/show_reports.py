"""A run's progress and metadata as text lines (``durable-nb show RUN``):

    progress  [##########----]  63/100  63%  embedding
    metadata  stage: "embed"
              count: 12
"""

from __future__ import annotations

import json
from typing import Any

BAR_WIDTH = 24
VALUE_CHARS = 100  # a metadata value's JSON is cut after this


def _num(x: Any) -> str:
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.2f}"
    return f"{int(x):,}" if isinstance(x, (int, float)) else str(x)


def progress_line(progress: dict | None) -> str | None:
    """``progress  [####----]  63/100  63%  text``; without a total, the count alone."""
    if not progress:
        return None
    done, total, text = progress.get("done") or 0, progress.get("total"), progress.get("text")
    if total:
        frac = max(0.0, min(1.0, done / total))
        filled = round(frac * BAR_WIDTH)
        bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]  {_num(done)}/{_num(total)}  " \
              f"{int(frac * 100)}%"
    else:
        bar = f"{_num(done)} done (total not known)"
    return f"progress  {bar}" + (f"  {text}" if text else "")


def metadata_lines(metadata: dict | None) -> list[str]:
    """``metadata  key: <compact JSON>``, one key a line, in the order they were set."""
    out = []
    for i, (key, value) in enumerate((metadata or {}).items()):
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        if len(text) > VALUE_CHARS:
            text = text[:VALUE_CHARS] + "…"
        out.append(f"{'metadata' if i == 0 else '':<8}  {key}: {text}")
    return out


def report_lines(run: dict) -> list[str]:
    """What ``durable-nb show`` prints under a run's first line: progress and metadata."""
    line = progress_line(run.get("progress"))
    return ([line] if line else []) + metadata_lines(run.get("metadata"))
