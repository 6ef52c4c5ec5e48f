"""``dn.compare(run_a, run_b)`` and ``RunHandle.compare(other)``: two runs side by side.

The engine aligns the two runs' steps (a cell's statements) by key (``GET
/runs/{id}/compare/{other}``, ``core.compare``); the ``Comparison`` it returns shows itself
as an HTML table in a notebook (the rows that differ highlighted) and as plain text
elsewhere (``durable-nb compare``).
"""

from __future__ import annotations

import html
from typing import Any

from ..core.versions import label
from .client import Client, get_client
from .show import fmt_secs

_CSS = """<style>
.dnc{font-size:12px;font-family:var(--jp-ui-font-family,system-ui,sans-serif);line-height:1.5}
.dnc-table{border-collapse:collapse;margin-top:4px}
.dnc-table th,.dnc-table td{border:1px solid var(--jp-border-color2,#ddd);padding:2px 6px;
text-align:left;vertical-align:top}
.dnc-table th{background:var(--jp-layout-color2,#f3f3f3)}
.dnc-diff td{background:rgba(255,170,0,.16)}
.dnc td.dnc-empty{background:rgba(128,128,128,.12);font-style:italic;color:#6e7781}
.dnc-bad{color:var(--jp-error-color1,#cf222e)} .dnc-ok{color:var(--jp-success-color1,#1a7f37)}
.dnc-hit{font-weight:600} .dnc-out{font-family:var(--jp-code-font-family,monospace)}
</style>"""


def _run_id(run: Any) -> str:
    rid = getattr(run, "id", run)
    if not isinstance(rid, str) or not rid:
        raise TypeError(f"a run id or a RunHandle, not {type(run).__name__}")
    return rid


def compare(run_a: Any, run_b: Any, client: Client | None = None) -> Comparison:
    """Two runs (ids or RunHandles) side by side: steps aligned by key with each side's
    status, duration and output preview, and what differs (a fork with its source, two
    versions of a task, a retry that went another way)."""
    c = client or getattr(run_a, "_client", None) or get_client()
    return Comparison(c.request("GET", f"/runs/{_run_id(run_a)}/compare/{_run_id(run_b)}"))


def _side_text(side: dict | None) -> str:
    if side is None:
        return "-"
    parts = [side.get("status") or "", fmt_secs(side.get("duration"))]
    if side.get("tries", 1) > 1:
        parts.append(f"{side['tries']} tries")
    detail = side.get("error") or side.get("output")
    if detail:
        parts.append(str(detail))
    return "  ".join(parts)


def _diff_word(row: dict, what: str) -> str:
    """How a row's difference reads: "only in A" for a step one run did not make."""
    if what == "missing":
        return f"only in {'A' if row['a'] is not None else 'B'}"
    return what


class Comparison:
    """Two runs side by side (the JSON of GET /runs/{id}/compare/{other}: ``a``, ``b``,
    ``run_diff``, ``rows``, ``differences``); an HTML table in a notebook, text elsewhere."""

    def __init__(self, data: dict):
        self.data = data

    @property
    def a(self) -> dict:
        return self.data["a"]

    @property
    def b(self) -> dict:
        return self.data["b"]

    @property
    def rows(self) -> list[dict]:
        return self.data["rows"]

    @property
    def differences(self) -> list[dict]:
        """The rows where the runs differ."""
        return [r for r in self.rows if r["diff"]]

    def _run_line(self, tag: str, run: dict) -> str:
        ver = label(run.get("version"))
        fork = f"  fork of {run['fork_of']} from {run.get('fork_step')}" if run.get(
            "fork_of") else ""
        err = f"  {run['error']}" if run.get("error") else ""
        return (f"{tag}  {run['id']}  {run.get('task_id')} {ver}  {run.get('status')}  "
                f"{fmt_secs(run.get('duration'))}{fork}{err}")

    def __str__(self) -> str:
        lines = [self._run_line("A", self.a), self._run_line("B", self.b)]
        diff = self.data.get("run_diff") or []
        lines.append(f"the runs differ in: {', '.join(diff)}" if diff else
                     "the runs have the same status, version and output")
        if not self.rows:
            return "\n".join([*lines, "no steps"])
        key_w = min(40, max(len(r["key"]) for r in self.rows))
        cells = [(r["key"], _side_text(r["a"]), _side_text(r["b"]),
                  ", ".join(_diff_word(r, d) for d in r["diff"])
                  or (f"{r['slower'].upper()} slower" if r.get("slower") else ""))
                 for r in self.rows]
        side_w = min(50, max(len(c[1]) for c in cells))
        lines.append(f"{'STEP'.ljust(key_w)}  {'A'.ljust(side_w)}  {'B'.ljust(side_w)}  DIFF")
        for key, sa, sb, d in cells:
            lines.append(f"{key[:key_w].ljust(key_w)}  {sa[:side_w].ljust(side_w)}  "
                         f"{sb[:side_w].ljust(side_w)}  {d}".rstrip())
        lines.append(f"{self.data.get('differences', len(self.differences))} of "
                     f"{len(self.rows)} rows differ")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _html_side(self, side: dict | None, hit: set[str]) -> str:
        if side is None:
            return '<td class="dnc-empty" colspan="3">not run</td>'
        status = side.get("status") or ""
        kind = "dnc-bad" if status in ("FAILED", "ERRORED") else (
            "dnc-ok" if status == "COMPLETED" else "")
        tries = f" ({side['tries']} tries)" if side.get("tries", 1) > 1 else ""
        out = side.get("error") or side.get("output") or ""
        return (f'<td class="{kind}{" dnc-hit" if "status" in hit else ""}">'
                f"{html.escape(status)}{tries}</td>"
                f"<td>{html.escape(fmt_secs(side.get('duration')))}</td>"
                f'<td class="dnc-out{" dnc-hit" if "output" in hit else ""}">'
                f"{html.escape(str(out))}</td>")

    def _repr_html_(self) -> str:
        head = "".join(f"<div>{html.escape(self._run_line(t, r))}</div>"
                       for t, r in (("A", self.a), ("B", self.b)))
        diff = self.data.get("run_diff") or []
        head += (f"<div><b>the runs differ in: {html.escape(', '.join(diff))}</b></div>"
                 if diff else "<div>the runs have the same status, version and output</div>")
        body = []
        for r in self.rows:
            cls = "dnc-diff" if r["diff"] else ""
            note = ", ".join([_diff_word(r, d) for d in r["diff"]] + (r.get("changed") or [])
                             + ([f"{r['slower'].upper()} slower"] if r.get("slower") else []))
            body.append(f'<tr class="{cls}"><td>{html.escape(r["key"])}</td>'
                        f"{self._html_side(r['a'], set(r['diff']))}"
                        f"{self._html_side(r['b'], set(r['diff']))}"
                        f"<td>{html.escape(note)}</td></tr>")
        table = ('<table class="dnc-table"><tr><th rowspan="2">step</th>'
                 f'<th colspan="3">A {html.escape(self.a["id"])}</th>'
                 f'<th colspan="3">B {html.escape(self.b["id"])}</th>'
                 '<th rowspan="2">differs</th></tr><tr>'
                 + "<th>status</th><th>duration</th><th>output</th>" * 2 + "</tr>"
                 + "".join(body) + "</table>")
        return f'{_CSS}<div class="dnc">{head}{table}</div>'
