"""Two runs side by side: their steps (a cell's statements) aligned by key, each with its
status, duration and output preview, and what differs.

The engine builds the comparison (``engine.compare``) from the rows of both runs; the
Python view (``client.compare``), ``durable-nb compare`` and the JupyterLab panel draw the
same JSON. Rows are aligned as a diff aligns lines (``difflib``): a step key both runs made
is one row, a key only one run made is a row with an empty side, in the order the runs made
them. A step's output is compared by its preview (``worker.previews``), a statement's by the
content hashes of the variables it checkpointed, a run's return value by the hash of its
pickle.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

SLOWER = 2.0  # a side is "slower" when it took at least this many times as long ...
SLOWER_BY = 0.05  # ... and at least this many seconds more
TEXT = 80  # characters of an output preview in a row


def preview_text(preview: Any) -> str | None:
    """A step output's preview (JSON text or dict) as one short line."""
    if isinstance(preview, str):
        try:
            preview = json.loads(preview)
        except ValueError:
            return None
    if not isinstance(preview, dict):
        return None
    text = str(preview.get("repr") or "")
    first = text.splitlines()[0] if text else ""
    if len(first) > TEXT or len(text.splitlines()) > 1:
        first = first[:TEXT - 3] + "..."
    if preview.get("shape") is not None:
        first += f"  [{' x '.join(str(n) for n in preview['shape'])}]"
    return first or f"<{preview.get('type', '?')}>"


def align(keys_a: list[str], keys_b: list[str]) -> list[tuple[str | None, str | None]]:
    """Pairs of keys, in order: (k, k) for a key both lists have where a diff matches them,
    (k, None) or (None, k) for a key of one side only."""
    out: list[tuple[str | None, str | None]] = []
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.extend((k, k) for k in keys_a[i1:i2])
            continue
        out.extend((k, None) for k in keys_a[i1:i2])
        out.extend((None, k) for k in keys_b[j1:j2])
    return out


def _dur(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None else None


def step_sides(rows: list[dict]) -> tuple[list[str], dict[str, dict]]:
    """A run's step rows (every try, in time order) as step keys in order of their first
    try and, per key, its last try: status, duration, tries, output and error."""
    order: list[str] = []
    sides: dict[str, dict] = {}
    for r in rows:
        key = r["step_key"]
        if key.startswith("trigger:"):
            continue
        if key not in sides:
            order.append(key)
            sides[key] = {"name": r.get("name"), "tries": 0}
        side = sides[key]
        side["tries"] += 1
        side.update(status=r["status"], duration=_dur(r.get("started_at"), r.get("ended_at")),
                    error=(f"{r['error_type']}: {r.get('error_message') or ''}"
                           if r.get("error_type") else None),
                    output=preview_text(r.get("output_preview")),
                    _output=r.get("output_preview"), _args=r.get("args_preview"))
    return order, sides


def statement_sides(checkpoints: list[dict], started_at: float | None
                    ) -> tuple[list[str], dict[str, dict]]:
    """A cell run's checkpoints (``statement``, ``created_at``, the manifest's ``vars`` as
    {name: [piece hashes]}), oldest first, as one side per statement: its duration (from
    the checkpoint before), the variables it holds and their hashes."""
    latest: dict[int, dict] = {}
    for c in checkpoints:
        latest[int(c["statement"])] = c
    order, sides = [], {}
    before = started_at
    for n in sorted(latest):
        c = latest[n]
        key = f"statement {n}"
        names = sorted(c.get("vars") or {})
        order.append(key)
        sides[key] = {"name": key, "tries": 1, "status": "COMPLETED",
                      "duration": _dur(before, c.get("created_at")), "error": None,
                      "output": ", ".join(names[:12]) + (" ..." if len(names) > 12 else ""),
                      "size": c.get("size"), "_vars": c.get("vars") or {}}
        before = c.get("created_at")
    return order, sides


def _changed_vars(a: dict, b: dict) -> list[str]:
    va, vb = a.get("_vars") or {}, b.get("_vars") or {}
    return sorted(n for n in set(va) | set(vb) if va.get(n) != vb.get(n))


def _row(key: str, kind: str, a: dict | None, b: dict | None) -> dict:
    """One aligned row and what differs in it."""
    diff: list[str] = []
    row: dict[str, Any] = {"key": key, "kind": kind, "name": (a or b or {}).get("name")}
    if a is None or b is None:
        diff.append("missing")
    else:
        if a["status"] != b["status"]:
            diff.append("status")
        if kind == "statement":
            changed = _changed_vars(a, b)
            if changed:
                diff.append("output")
                row["changed"] = changed
        else:
            if a.get("_output") != b.get("_output"):
                diff.append("output")
            if a.get("_args") != b.get("_args"):
                diff.append("args")
        da, db = a.get("duration"), b.get("duration")
        if da is not None and db is not None and abs(da - db) >= SLOWER_BY:
            if da >= SLOWER * db:
                row["slower"] = "a"
            elif db >= SLOWER * da:
                row["slower"] = "b"
    row["a"] = _public(a)
    row["b"] = _public(b)
    row["diff"] = diff
    return row


def _public(side: dict | None) -> dict | None:
    if side is None:
        return None
    return {k: v for k, v in side.items() if not k.startswith("_") and k != "name"}


def compare_rows(a: tuple[list[str], dict[str, dict]], b: tuple[list[str], dict[str, dict]],
                 kind: str) -> list[dict]:
    """Aligned rows of two runs' sides (from ``step_sides`` or ``statement_sides``)."""
    (order_a, sides_a), (order_b, sides_b) = a, b
    return [_row(ka or kb or "", kind, sides_a.get(ka) if ka else None,
                 sides_b.get(kb) if kb else None)
            for ka, kb in align(order_a, order_b)]


RUN_FIELDS = ("status", "version", "output", "error")


def run_differences(a: dict, b: dict) -> list[str]:
    """Which of a run's own fields (``RUN_FIELDS``) differ between two run summaries."""
    out = []
    for f in RUN_FIELDS:
        va, vb = a.get(f), b.get(f)
        if f == "version":
            va, vb = (va or {}).get("hash"), (vb or {}).get("hash")
        elif f == "output":
            va, vb = (va or {}).get("digest"), (vb or {}).get("digest")
        if va != vb:
            out.append(f)
    return out
