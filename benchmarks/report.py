"""Turn raw per-repetition results into the printed table and the JSON file."""

from __future__ import annotations

import statistics
from typing import Any

from .config import FLOORS, WORKLOADS, System

Raw = list[dict[str, Any]]  # {"rep", "system", "workload", "result"}


def fmt(x: float | None) -> str:
    """Compact number: about three significant digits, no exponent."""
    if x is None:
        return "-"
    ax = abs(x)
    if x == int(x) and ax < 1e6:
        return str(int(x))
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def stats(values: list[float]) -> dict[str, Any]:
    """Median, min and max of the repetitions."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "reps": len(values)}


def cell(values: list[float]) -> str:
    """``median [min, max]``, or just the value for one repetition."""
    if not values:
        return "-"
    s = stats(values)
    if len(values) == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} [{fmt(s['min'])}, {fmt(s['max'])}]"


class Notes:
    """Numbered footnotes, one number per distinct text."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def call_floor_ms(raw: Raw) -> float | None:
    """Median plain-call time in ms, subtracted from the step figures."""
    ns = [r["result"]["value"] for r in raw if r["system"] == "floors" and r["workload"] == "floor_call"
          and isinstance(r["result"].get("value"), (int, float))]
    return statistics.median(ns) / 1e6 if ns else None


def main_value(rec: dict[str, Any], floor_ms: float | None) -> float | None:
    """The figure shown in the table for one result (step: minus the call floor)."""
    v = rec["result"].get("value")
    if not isinstance(v, (int, float)):
        return None
    if rec["workload"] == "step" and floor_ms is not None:
        return v - floor_ms
    return float(v)


def summarize(raw: Raw, systems: list[System], workloads: list[str]) -> dict[str, Any]:
    """Per system and workload: stats of the main figure and of each extra metric."""
    floor_ms = call_floor_ms(raw)
    out: dict[str, Any] = {}
    for sysm in [*systems]:
        for w in workloads:
            recs = [r for r in raw if r["system"] == sysm.name and r["workload"] == w]
            if not recs:
                continue
            entry: dict[str, Any] = {"unit": None, "metrics": {}, "errors": [], "na": None, "n": None}
            values = []
            for r in recs:
                res = r["result"]
                if "na" in res:
                    entry["na"] = res["na"]
                    continue
                if "error" in res:
                    entry["errors"].append(res["error"])
                    continue
                v = main_value(r, floor_ms)
                if v is not None:
                    values.append(v)
                entry["unit"] = res.get("unit")
                entry["n"] = res.get("extra", {}).get("n")
                for label, m in res.get("extra", {}).get("metrics", {}).items():
                    slot = entry["metrics"].setdefault(label, {"unit": m.get("unit"), "values": []})
                    if isinstance(m.get("value"), (int, float)):
                        slot["values"].append(m["value"])
            if values:
                entry.update(stats(values))
            entry["values"] = values
            out.setdefault(sysm.name, {})[w] = entry
    return out


def _unit_label(workload: str, unit: str | None) -> str:
    if workload == "step" and unit:
        return f"{unit}, minus plain call"
    return unit or ""


def render(
    summary: dict[str, Any],
    systems: list[System],
    workloads: list[str],
    meta: dict[str, Any],
) -> str:
    """The full text report: floors, table, footnotes."""
    notes = Notes()
    lines: list[str] = []
    mode = "quick" if meta["quick"] else "full"
    lines.append(f"durable_nb benchmarks, {meta['date']}, {mode} mode, {meta['reps']} repetition(s)")
    lines.append("cells: median of the repetitions [min, max]; lower is better except throughput")
    lines.append("")

    floors = summary.get("floors", {})
    lines.append("Floors (current interpreter, same disk)")
    for f in FLOORS:
        e = floors.get(f.key)
        if e is None:
            continue
        if e["errors"]:
            txt = "error " + notes.ref(f"floor {f.key}: {e['errors'][0]}")
        elif e["na"] is not None and not e["values"]:
            txt = "n/a " + notes.ref(f"floor {f.key}: {e['na']}")
        else:
            txt = f"{cell(e['values'])} {e['unit']}"
            p99 = e["metrics"].get("p99")
            if p99 and p99["values"]:
                txt += f"  (p99 {cell(p99['values'])} {p99['unit']})"
        lines.append(f"  {f.title:<48} {txt}")
        for label, m in e["metrics"].items():  # secondary figures, e.g. sha256 beside xxh3
            if label != "p99" and m["values"]:
                lines.append(f"      {label:<44} {cell(m['values'])} {m['unit']}")
    lines.append("")

    names = [s.name for s in systems]
    rows: list[list[str]] = [["workload (unit)", *names]]
    by_key = {w.key: w for w in WORKLOADS}
    for key in workloads:
        w = by_key[key]
        unit = next((summary.get(n, {}).get(key, {}).get("unit") for n in names
                     if summary.get(n, {}).get(key, {}).get("unit")), None)
        row = [f"{w.title} ({_unit_label(key, unit)})" if unit else w.title]
        labels: dict[str, str | None] = {}
        for s in systems:
            e = summary.get(s.name, {}).get(key)
            if e is None:
                row.append("")
                continue
            for label, m in e["metrics"].items():
                labels.setdefault(label, m["unit"])
            if e["na"] is not None:
                row.append("n/a " + notes.ref(f"{s.name}, {key}: {e['na']}"))
            elif e["values"] and not e["errors"]:
                row.append(cell(e["values"]))
            elif e["errors"]:
                prefix = cell(e["values"]) + " " if e["values"] else ""
                row.append(prefix + "error " + notes.ref(f"{s.name}, {key}: {e['errors'][0]}"))
            else:
                row.append("-")
        rows.append(row)
        for label, munit in labels.items():
            sub = [f"    {label} ({munit})"]
            for s in systems:
                m = summary.get(s.name, {}).get(key, {}).get("metrics", {}).get(label)
                sub.append(cell(m["values"]) if m and m["values"] else "")
            rows.append(sub)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    lines.append("")

    lines.append("Notes")
    for i, text in enumerate(notes.items, 1):
        lines.append(f"  [{i}] {text}")
    lines.append("")
    lines.append("Systems")
    for s in systems:
        vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].get(s.name, {}).items())
        lines.append(f"  {s.name} ({vers}): {s.settings}")
        for key, (full, quick) in s.caps.items():
            std = {w.key: w.n for w in WORKLOADS}.get(key, (None, None))[1 if meta["quick"] else 0]
            if key in workloads and (quick if meta["quick"] else full) != std:
                lines.append(f"    n for {key} lowered to {quick if meta['quick'] else full} (slow system, time limit)")
        for note in s.notes:
            lines.append(f"    {note}")
    lines.append("")
    m = meta["machine"]
    fs = meta["fs"]
    lines.append(
        f"Machine: {m['cpu_count']} CPUs ({m['processor']}), {m['platform']}, Python {m['python']}; "
        f"temp dir {meta['tmp']} on {fs['fstype']} ({fs['device']} at {fs['mount']})"
    )
    load = meta.get("loadavg") or {}
    if load.get("start"):
        lines.append(f"  load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}; "
                     f"more than the CPU count means other work competed with the benchmark")
    if fs["fstype"] in ("tmpfs", "ramfs"):
        lines.append("  WARNING: the temp dir is in memory; fsync costs nothing here, durability figures are not meaningful")
    lines.append(f"Time limit per workload process: {meta['limit_s']:.0f} s; total time {meta['total_s']:.0f} s; "
                 f"raw figures: {meta['json']}")
    return "\n".join(lines)
