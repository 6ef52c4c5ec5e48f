"""Long chaos mode: ``python -m benchmarks.chaos --runs 5000`` (or ``python benchmarks/chaos.py``).

Runs the chaos suite of ``tests/chaos`` at a large size: thousands of runs with step and
task retries, child runs, batches, approvals (raced and late), events, sleeps and wait
timeouts, while random workers and the engine are SIGKILLed and the engine is restarted
the ways a user would. Prints the figures (runs, kills of each kind, restarts, invariant
checks, wall time) and every invariant's result; exits 1 when an invariant failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a file
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "chaos"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5000, help="root runs (children come on top)")
    p.add_argument("--seed", type=int, help="plans and kills follow from it (default random)")
    p.add_argument("--rate", type=float, default=4.0, help="root runs triggered per second")
    p.add_argument("--engine-kills", type=int, help="engine SIGKILLs (default runs / 250)")
    p.add_argument("--worker-kill-interval", type=float, default=0.5,
                   help="mean seconds between worker SIGKILLs")
    p.add_argument("--workers", type=int, default=4, help="workers of the engine (--workers)")
    p.add_argument("--settle-timeout", type=float, default=120.0,
                   help="seconds allowed for the last runs to finish after the chaos")
    p.add_argument("--dir", type=Path, help="work folder (default a new temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the database and side-effect logs")
    p.add_argument("--json", type=Path, help="write figures and violations to this file")
    return p.parse_args(argv)


def _isolate(work: Path) -> None:
    """Runtime files and the default database of this run stay in ``work``."""
    os.environ["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")
    os.environ["JUPYTER_DATA_DIR"] = str(work / "data")
    for name in ("DURABLE_NB_URL", "DURABLE_NB_TOKEN", "DURABLE_NB_DB", "DURABLE_NB_SOCKET"):
        os.environ.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    work = args.dir or Path(tempfile.mkdtemp(prefix="durable-nb-chaos-"))
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    _isolate(work)
    from chaos_checks import INVARIANTS
    from chaos_harness import Chaos, ChaosConfig

    config = ChaosConfig(
        workdir=work / "chaos", seed=seed, runs=args.runs, trigger_rate=args.rate,
        engine_kills=args.engine_kills if args.engine_kills is not None
        else max(1, args.runs // 250),
        worker_kill_interval=args.worker_kill_interval, workers=args.workers,
        settle_timeout=args.settle_timeout)
    report = Chaos(config).run()
    print()
    print(report.summary())
    failed = [inv for inv in INVARIANTS if report.violations.get(inv)]
    for inv in failed:
        print()
        print(report.failures(inv, limit=10))
    if args.json:
        args.json.write_text(json.dumps({
            "seed": seed, "figures": report.figures, "checks": dict(report.checks),
            "violations": {k: v for k, v in report.violations.items() if v}}, indent=1,
            default=str))
    if args.keep or failed:
        print(f"\ndatabase and side-effect logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
