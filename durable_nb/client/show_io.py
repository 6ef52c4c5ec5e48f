"""Text of a run's step inputs and outputs (`durable-nb show RUN --io`): each step's tries
with the previews of their arguments and output (`worker.previews`), as plain text."""

from __future__ import annotations

from typing import Any

from .client import Client
from .steps import step_path

MAX_LINES = 12  # lines of one value's repr


def value_text(p: dict | None) -> str:
    """One previewed value as text: its repr, and what its preview adds (shape, image)."""
    if not p:
        return "-"
    extra = []
    if p.get("shape") is not None:
        extra.append("shape " + " x ".join(str(n) for n in p["shape"]))
    if p.get("dtype"):
        extra.append(f"dtype {p['dtype']}")
    if p.get("image"):
        w, h = (p.get("image_size") or ["?", "?"])[:2]
        extra.append(f"image (a {w}x{h} thumbnail in the views)")
    if p.get("note"):
        extra.append(p["note"])
    text = p.get("repr", "")
    lines = text.splitlines() or [""]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... ({len(lines) - MAX_LINES} more lines)"]
    head = f"{p.get('type', '?')}" + (f" ({', '.join(extra)})" if extra else "")
    if len(lines) == 1 and len(lines[0]) + len(head) < 100:
        return f"{lines[0]}  [{head}]"
    return "\n".join([f"[{head}]", *lines])


def _indent(label: str, text: str, pad: str) -> list[str]:
    first, *rest = text.split("\n")
    return [f"{pad}{label}{first}", *(f"{pad}{' ' * len(label)}{ln}" for ln in rest)]


def args_lines(preview: dict | None, pad: str) -> list[str]:
    if preview is None:
        return [f"{pad}args: not recorded (a run of an earlier release)"]
    out: list[str] = []
    for i, p in enumerate(preview.get("args") or []):
        out += _indent(f"arg {i}: ", value_text(p), pad)
    for name, p in (preview.get("kwargs") or {}).items():
        out += _indent(f"{name}=", value_text(p), pad)
    if preview.get("more"):
        out.append(f"{pad}... and {preview['more']} more arguments")
    if not out:
        out.append(f"{pad}args: none")
    if preview.get("note"):
        out.append(f"{pad}({preview['note']})")
    return out


def try_lines(t: dict, pad: str = "    ") -> list[str]:
    """One try: its status, error, arguments and output."""
    lines = [f"  try {t['attempt']}  {t['status']}"
             + (f"  (in attempt {t['run_attempt']})" if t.get("run_attempt") else "")]
    lines += args_lines(t.get("args_preview"), pad)
    if t.get("error"):
        lines.append(f"{pad}error: {t['error']['type']}: {t['error']['message']}")
    elif t["status"] == "COMPLETED":
        lines += _indent("output: ", value_text(t.get("output_preview")), pad)
    return lines


def steps_io(client: Client, run: dict) -> str:
    """Every step of ``run`` (the JSON of GET /runs/{id}) with the previews of each try's
    arguments and output."""
    keys: list[str] = []
    for s in run.get("steps") or []:
        if s["step_key"] not in keys and not s["step_key"].startswith("trigger:"):
            keys.append(s["step_key"])
    if not keys:
        return "no steps"
    lines: list[str] = []
    for key in keys:
        out: Any = client.request("GET", step_path(run["id"], key))
        lines.append(f"step {key}")
        for t in out["tries"]:
            lines += try_lines(t)
    return "\n".join(lines)
