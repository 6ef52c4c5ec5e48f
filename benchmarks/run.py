"""Command line entry point: ``python -m benchmarks`` or ``python benchmarks/run.py``.

Runs every workload on durable_nb (this interpreter) and on each peer (its
own venv), alternating systems in round-robin order, then prints a table
and writes the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.config import FLOORS, FLOORS_SYSTEM, SYSTEMS, WORKLOADS, System  # noqa: E402
from benchmarks.report import render, summarize  # noqa: E402
from benchmarks.runner import REPO, fs_of, machine, run_script  # noqa: E402
from benchmarks.venvs import VenvMissing, ensure_venv, versions  # noqa: E402

DEFAULT_CACHE = Path.home() / ".cache" / "durable_nb-bench"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small n, 1 repetition (about two minutes)")
    p.add_argument("--only", help="systems to run, comma separated: " + ",".join(s.name for s in SYSTEMS))
    p.add_argument("--workloads", help="workloads to run, comma separated: " + ",".join(w.key for w in WORKLOADS))
    p.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"venvs and temp files (default {DEFAULT_CACHE})")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"raw figures (default {DEFAULT_JSON})")
    p.add_argument("--skip-install", action="store_true", help="fail if a peer venv is missing instead of creating it")
    p.add_argument("--time-limit", type=float, help="seconds per workload process (default 600, quick 120)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the databases of this run")
    return p.parse_args(argv)


def _pick(arg: str | None, known: list[str], what: str) -> list[str]:
    if not arg:
        return known
    picked = [x.strip() for x in arg.split(",") if x.strip()]
    unknown = [x for x in picked if x not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [x for x in known if x in picked]


def _spec(system: System, keys: list[str], quick: bool, tmp: Path, limit_s: float) -> dict[str, Any]:
    """The JSON spec a workload script receives."""
    by_key = {w.key: w for w in (*WORKLOADS, *FLOORS)}
    loads: dict[str, Any] = {}
    for key in keys:
        full, short = system.caps.get(key, by_key[key].n)
        params: dict[str, Any] = {"n": short if quick else full}
        for name, (pf, pq) in system.params.get(key, {}).items():
            params[name] = pq if quick else pf
        if key == "checkpoint":
            params["bytes"] = 50_000_000
        loads[key] = params
    return {"tmp": str(tmp), "quick": quick, "limit_s": limit_s, "workloads": loads}


def _show(rep: int, reps: int, system: str, res: dict[str, Any]) -> None:
    """One progress line on stderr."""
    if "value" in res:
        what = f"{res['value']:.4g} {res.get('unit', '')}"
    elif "na" in res:
        what = "n/a"
    else:
        what = "error: " + str(res.get("error", ""))[:120]
    wall = res.get("extra", {}).get("wall_s") or res.get("extra", {}).get("process_wall_s")
    print(f"[rep {rep + 1}/{reps}] {system:<10} {res['workload']:<16} {what} ({wall} s)", file=sys.stderr, flush=True)


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages (other work on the machine makes figures noisy)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    limit_s = args.time_limit or (120.0 if quick else 600.0)
    systems = [s for s in SYSTEMS if s.name in _pick(args.only, [s.name for s in SYSTEMS], "system")]
    keys = _pick(args.workloads, [w.key for w in WORKLOADS], "workload")

    cache: Path = args.cache.expanduser().resolve()
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=cache / "tmp"))
    (cache / "logs").mkdir(exist_ok=True)
    log = cache / "logs" / f"{run_dir.name}.log"  # outlives the temp dir, for error notes
    fs = fs_of(run_dir)
    if fs["fstype"] in ("tmpfs", "ramfs"):
        print(f"warning: {run_dir} is on {fs['fstype']}; use --cache on a real disk", file=sys.stderr)

    # Interpreters: this one for durable_nb and the floors, a venv per peer.
    pythons: dict[str, str] = {FLOORS_SYSTEM.name: sys.executable}
    broken: dict[str, str] = {}
    for s in systems:
        if not s.packages:
            pythons[s.name] = sys.executable
            continue
        try:
            pythons[s.name] = str(ensure_venv(s, cache, args.skip_install, cache / "install.log"))
        except VenvMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - an install failure becomes error cells
            broken[s.name] = f"venv not available: {exc}"
            print(f"error: {broken[s.name]}", file=sys.stderr)
    vers = {s.name: versions(pythons.get(s.name, sys.executable), s.dists) for s in [FLOORS_SYSTEM, *systems]}

    raw: list[dict[str, Any]] = []
    started = time.perf_counter()
    load_start = _loadavg()
    floor_keys = [f.key for f in FLOORS]
    for rep in range(reps):
        order = [FLOORS_SYSTEM, *systems]
        for s in order:
            todo = floor_keys if s is FLOORS_SYSTEM else keys
            runnable = [k for k in todo if k not in s.na]
            for k in todo:
                if k in s.na:
                    raw.append({"rep": rep, "system": s.name, "workload": k, "result": {"workload": k, "na": s.na[k]}})
                elif s.name in broken:
                    raw.append({"rep": rep, "system": s.name, "workload": k,
                                "result": {"workload": k, "error": broken[s.name]}})
            if s.name in broken or not runnable:
                continue
            groups = [runnable] if s.batch else [[k] for k in runnable]
            for group in groups:
                work = run_dir / f"r{rep + 1}-{s.name}-{'-'.join(group) if len(group) == 1 else 'all'}"
                work.mkdir()
                env = {"PYTHONPATH": str(REPO)} if s.name in ("durable_nb", "floors") else {}
                timeout = limit_s * len(group) + (60 if s.batch else 0)
                results = run_script(pythons[s.name], s.script, _spec(s, group, quick, work, limit_s),
                                     timeout, log, env)
                for k in group:
                    raw.append({"rep": rep, "system": s.name, "workload": k, "result": results[k]})
                    _show(rep, reps, s.name, results[k])
                if not args.keep_tmp:
                    shutil.rmtree(work, ignore_errors=True)

    summary = summarize(raw, [FLOORS_SYSTEM, *systems], [*floor_keys, *keys])
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "reps": reps,
        "limit_s": limit_s,
        "machine": machine(),
        "fs": fs,
        "tmp": str(run_dir),
        "versions": vers,
        "json": str(args.json),
        "args": vars(args) | {"cache": str(args.cache), "json": str(args.json)},
        "settings": {s.name: s.settings for s in systems},
        "total_s": round(time.perf_counter() - started, 1),
        "loadavg": {"start": load_start, "end": _loadavg()},
    }
    text = render(summary, systems, keys, meta)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "summary": summary, "raw": raw}, indent=1, default=str))
    if not args.keep_tmp:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
