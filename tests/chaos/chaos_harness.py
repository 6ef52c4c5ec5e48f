"""The chaos harness: runs many plans against a real engine while killing its workers and
the engine itself, then checks what the store recorded against what actually executed.

Used by ``tests/chaos/test_chaos.py`` (CI size) and ``python -m benchmarks.chaos`` (long
mode). One ``Chaos(config).run()`` call does everything and returns a ``Report``:

1. start ``durable-nb serve`` on a fresh DuckDB file;
2. trigger the plans (``chaos_tasks.make_plans``) at a steady rate, each with an
   idempotency key so that a trigger retried across an engine restart stays one run;
3. meanwhile a driver decides approvals (some raced by two deciders, some decided after
   their timeout) and sends events (some twice), and a killer SIGKILLs random workers
   (also inside a wait's grace period) and the engine, restarting it as a user would:
   ``durable-nb serve`` again, or ``dn.connect(db=...)`` which starts a detached engine;
4. wait until every run is terminal (bounded), stop the engine, read the DuckDB file and
   the side-effect logs, and check the invariants (see ``INVARIANTS``).
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chaos_tasks as ct
from chaos_checks import TERMINAL, Checks, Report

import durable_nb as dn
from durable_nb.client.client import get_client
from durable_nb.core.paths import runtime_file

FAULTS = (dn.EngineUnavailable, OSError, http.client.HTTPException)

@dataclass
class ChaosConfig:
    """Size and pace of one chaos run."""

    workdir: Path
    seed: int
    runs: int = 200
    trigger_rate: float = 5.0  # root runs triggered per second
    engine_kills: int = 4
    worker_kill_interval: float = 0.5  # mean seconds between worker kills
    max_kills_per_run: int = 3
    wait_grace: float = 0.2
    workers: int = 4
    late_after: float = 1.0  # a late decision comes this long after the deadline
    timer_margin: float = 3.0
    settle_timeout: float = 60.0
    kill_tail: float = 3.0  # worker kills go on this long after the last trigger
    max_down: float = 0.5  # the engine stays dead up to this long before its restart
    log: Callable[[str], None] = print


@dataclass
class Kill:
    at: float
    pid: int
    run_id: str | None
    kind: str  # grace, busy, idle, engine


# ---------------------------------------------------------------------- the engine

def _pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class EngineControl:
    """Starts, kills and stops the engine of one database, the ways a user would."""

    def __init__(self, db: Path, grace: float, workers: int):
        self.db = db
        self.grace = grace
        self.workers = workers
        self.log = db.with_suffix(".engine.log")
        self.proc: subprocess.Popen | None = None  # when started with `durable-nb serve`
        self.pid: int | None = None
        self.up = threading.Event()
        self.intervals: list[list] = []  # [ready_at, killed_at or None]
        self.starts: Counter = Counter()

    def start(self, how: str = "serve", timeout: float = 60.0) -> None:
        """``serve``: `durable-nb serve` again; ``connect``: dn.connect(db=...) starts one."""
        if how == "serve":
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "durable_nb", "serve", "--db", str(self.db),
                     "--wait-grace", str(self.grace), "--workers", str(self.workers)],
                    stdout=out, stderr=out, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the engine exited with {self.proc.returncode}: "
                                       f"{self.log.read_text(errors='replace')[-2000:]}")
                info = self._runtime()
                if info and info.get("pid") == self.proc.pid:
                    try:
                        dn.connect(db=self.db, start=False)
                        break
                    except dn.DurableError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the engine did not start in {timeout:.0f} s")
                time.sleep(0.05)
            self.pid = self.proc.pid
        else:
            self.proc = None
            dn.connect(db=self.db)  # starts a detached engine: the engine is gone
            self.pid = (self._runtime() or {}).get("pid")
            dn.connect(db=self.db, start=False)  # later faults must not start engines
        self.starts[how] += 1
        self.intervals.append([time.time(), None])
        self.up.set()

    def _runtime(self) -> dict | None:
        try:
            return json.loads(runtime_file(self.db).read_text())
        except (OSError, ValueError):
            return None

    def kill(self) -> float:
        """SIGKILL the engine (its workers die with it); returns when it is gone."""
        self.up.clear()
        os.kill(self.pid, signal.SIGKILL)
        at = time.time()
        self.intervals[-1][1] = at
        self._wait_gone(10.0)
        return at

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (a clean stop ingests everything), SIGKILL after ``grace``."""
        if self.pid is None or _pid_gone(self.pid):
            return
        self.up.clear()
        os.kill(self.pid, signal.SIGTERM)
        try:
            self._wait_gone(grace)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            self._wait_gone(10.0)
        if self.intervals and self.intervals[-1][1] is None:
            self.intervals[-1][1] = time.time()

    def _wait_gone(self, timeout: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"engine {self.pid} still runs") from None
        deadline = time.monotonic() + timeout
        while not _pid_gone(self.pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"engine {self.pid} still runs")
            time.sleep(0.02)

    def due(self, deadline: float, margin: float) -> float | None:
        """When a timer with this deadline must have fired: at the deadline if the engine
        was up then (and stayed up for ``margin``), else when the engine was next ready."""
        for ready, killed in self.intervals:
            if ready <= deadline and (killed is None or deadline < killed - margin):
                return deadline
            if ready > deadline:
                return ready
        return None


# ---------------------------------------------------------------------- the run

class Chaos(Checks):
    def __init__(self, config: ChaosConfig):
        self.cfg = config
        self.work = Path(config.workdir)
        self.logdir = self.work / "effects"
        self.logdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(ct.grace_dir(str(self.logdir))).mkdir(mode=0o700)
        self.engine = EngineControl(self.work / "chaos.duckdb", config.wait_grace,
                                    config.workers)
        self.plans = ct.make_plans(config.seed, config.runs, str(self.logdir))
        self.report = Report(config.seed)
        self.triggered: dict[int, tuple[str, float]] = {}  # plan index -> (run id, at)
        self.plan_of: dict[str, dict] = {}
        self.decisions: dict[str, dict] = {}
        self.sends: dict[str, dict] = {}
        self.kills: list[Kill] = []
        self.kills_by_run: Counter = Counter()
        self.faults: Counter = Counter()
        self.server_errors: list[str] = []
        self._lock = threading.Lock()
        self._agenda: list = []
        self._seq = itertools.count()
        self._awaiting_approval: dict[str, dict] = {}
        self._triggers_done = threading.Event()
        self._killer_stop = threading.Event()
        self._driver_stop = threading.Event()
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="chaos-action")
        self._inflight = 0

    # -- plumbing -----------------------------------------------------------------

    def _say(self, msg: str) -> None:
        self.cfg.log(f"[chaos {time.strftime('%H:%M:%S')}] {msg}")

    def _harness_error(self, where: str) -> None:
        self.report.add("harness", f"{where}: {traceback.format_exc(limit=6)}")

    def call(self, fn: Callable[[], Any], what: str, timeout: float = 120.0) -> tuple[Any, bool]:
        """``fn()`` retried across engine faults; returns (value, whether a try failed
        mid-way so that an earlier try may have taken effect)."""
        uncertain = False
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn(), uncertain
            except dn.ApiError as exc:
                if exc.status < 500:
                    raise
                self._server_error(what, exc)
            except FAULTS:
                self.faults[what] += 1
            uncertain = True
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: no engine answered for {timeout:.0f} s")
            self.engine.up.wait(10)
            time.sleep(0.05)

    def _server_error(self, what: str, exc: Exception) -> None:
        with self._lock:
            self.server_errors.append(f"{what}: {exc}")

    def sql(self, query: str) -> list[dict]:
        res, _ = self.call(lambda: dn.sql(query, limit=100_000), "sql")
        return res.to_dicts()

    def _later(self, at: float, fn: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._agenda, (at, next(self._seq), fn))

    def _guarded(self, fn: Callable[[], None], where: str) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                self._harness_error(where)
        return run

    def _submit(self, fn: Callable[[], None], where: str) -> None:
        """Run ``fn`` on the action pool; settling waits for it."""
        with self._lock:
            self._inflight += 1

        def run() -> None:
            try:
                self._guarded(fn, where)()
            finally:
                with self._lock:
                    self._inflight -= 1
        self._pool.submit(run)

    def _busy(self) -> bool:
        """Decisions or sends planned or under way."""
        with self._lock:
            return bool(self._agenda or self._inflight or self._awaiting_approval)

    # -- the whole run ------------------------------------------------------------

    def run(self) -> Report:
        cfg = self.cfg
        t0 = time.monotonic()
        self._say(f"seed {cfg.seed}: {cfg.runs} root runs at {cfg.trigger_rate}/s, "
                  f"{cfg.engine_kills} engine kills, db {self.engine.db}")
        self.engine.start("serve")
        threads = [threading.Thread(target=self._guarded(self._driver, "driver"),
                                    name="chaos-driver", daemon=True),
                   threading.Thread(target=self._guarded(self._killer, "killer"),
                                    name="chaos-killer", daemon=True)]
        for t in threads:
            t.start()
        try:
            self._trigger_all()
        except Exception:
            self._harness_error("trigger")
        finally:
            self._triggers_done.set()
        try:
            threads[1].join()
            t_chaos = time.monotonic() - t0
            self._say(f"chaos over after {t_chaos:.1f} s; settling")
            stuck = self._settle()
            t_settle = time.monotonic() - t0 - t_chaos
        finally:  # whatever failed, no engine is left behind
            self._killer_stop.set()
            self._driver_stop.set()
            threads[0].join(30)
            self._pool.shutdown(wait=True)
            self.engine.stop()
        self._say("engine stopped; checking invariants")
        self._check(stuck)
        self._figures(t0, t_chaos, t_settle)
        return self.report

    def _trigger_all(self) -> None:
        start = time.monotonic()
        for plan in self.plans:
            i = plan["i"]
            pause = start + i / self.cfg.trigger_rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            task = ct.TASKS[plan["task"]]
            handle, _ = self.call(
                lambda p=plan, t=task: t.trigger(p, idempotency_key=f"chaos-{self.cfg.seed}-{p['i']}"),
                "trigger")
            at = time.time()
            with self._lock:
                self.triggered[i] = (handle.id, at)
                self.plan_of[handle.id] = plan
                appr = plan.get("approval")
                if appr is not None and appr["mode"] != "timeout":
                    self._awaiting_approval[handle.id] = plan
            ev = plan.get("event")
            if ev is not None and ev["sends"]:
                self._later(time.time() + ev["send_after"],
                            lambda p=plan: self._send_events(p))
            if i and i % max(1, self.cfg.runs // 10) == 0:
                self._say(f"triggered {i}/{self.cfg.runs}; kills so far "
                          f"{dict(Counter(k.kind for k in self.kills))}")

    def _settle(self) -> list[dict]:
        """Wait until every run is terminal; returns the runs still not terminal."""
        deadline = time.monotonic() + self.cfg.settle_timeout
        open_q = ("SELECT id, task_id, status, delay_until, updated_at FROM runs WHERE status "
                  f"NOT IN {TERMINAL}")
        quiet_since = None
        while True:
            rows = self.sql(open_q)
            if time.monotonic() > deadline:
                break
            if not rows:
                # all runs are done; late decisions and second sends may still be due (an
                # approval never seen pending is given up after a few seconds)
                quiet_since = quiet_since or time.monotonic()
                if not self._busy() or (time.monotonic() - quiet_since > 5 and not (
                        self._agenda or self._inflight)):
                    break
            time.sleep(0.5)
        for row in rows:
            row["pending_waits"] = self.sql(
                "SELECT wait_key, kind, created_at, deadline FROM waits WHERE run_id = "
                f"'{row['id']}' AND resolved_at IS NULL")
        return rows

    # -- driver: approvals and events ---------------------------------------------

    def _driver(self) -> None:
        while not self._driver_stop.is_set():
            now = time.time()
            with self._lock:
                due = []
                while self._agenda and self._agenda[0][0] <= now:
                    due.append(heapq.heappop(self._agenda)[2])
            for fn in due:
                self._submit(fn, "driver action")
            self._poll_approvals()
            time.sleep(0.1)

    def _poll_approvals(self) -> None:
        with self._lock:
            ids = list(self._awaiting_approval)
        if not ids:
            return
        ids_sql = ",".join(f"'{i}'" for i in ids)
        rows = self.sql("SELECT run_id, max(deadline) AS deadline FROM waits WHERE kind = "
                        f"'approval' AND run_id IN ({ids_sql}) GROUP BY run_id")
        for row in rows:
            rid = row["run_id"]
            with self._lock:
                plan = self._awaiting_approval.pop(rid, None)
            if plan is None:
                continue
            mode = plan["approval"]["mode"]
            if mode == "late":
                self._later(row["deadline"] + self.cfg.late_after,
                            lambda r=rid: self._decide_late(r))
            elif mode == "race":
                self._submit(lambda r=rid: self._race(r), "race")
            else:
                self._submit(lambda r=rid, m=mode: self._decide(r, m == "approve"), "decide")

    def _decide_once(self, run_id: str, approve: bool) -> tuple[str, str]:
        """One decision: ("ok", outcome), ("conflict", message) or ("fault", message)."""
        path = f"/runs/{run_id}/{'approve' if approve else 'reject'}"
        try:
            out = get_client().request("POST", path, {"wait": "gate", "comment": "chaos"})
            return "ok", out["outcome"]
        except dn.WaitConflict as exc:
            return "conflict", str(exc)
        except dn.ApiError as exc:
            if exc.status >= 500:
                self._server_error("decide", exc)
            return "fault", f"HTTP {exc.status}: {exc}"
        except FAULTS as exc:
            return "fault", repr(exc)

    def _decide(self, run_id: str, approve: bool) -> None:
        rec = self.decisions[run_id] = {"mode": "approve" if approve else "reject",
                                        "calls": [], "uncertain": False, "winner": None}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            kind, msg = self._decide_once(run_id, approve)
            rec["calls"].append((time.time(), kind, msg))
            if kind == "ok":
                rec["winner"] = msg
                return
            if kind == "fault":
                rec["uncertain"] = True
                self.engine.up.wait(10)
            elif "already resolved" in msg:
                return
            time.sleep(0.2)  # not waiting right now (between attempts): try again

    def _race(self, run_id: str) -> None:
        """Two deciders at once, one approving, one rejecting."""
        rec = self.decisions[run_id] = {"mode": "race", "rounds": [], "uncertain": False,
                                        "winner": None}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            barrier = threading.Barrier(2)
            results: list = [None, None]

            def racer(k: int, b=barrier, res=results) -> None:
                b.wait()
                res[k] = self._decide_once(run_id, k == 0)

            other = threading.Thread(target=racer, args=(1,))
            other.start()
            racer(0)
            other.join()
            rec["rounds"].append((time.time(), results))
            kinds = [r[0] for r in results]
            if "fault" in kinds:
                rec["uncertain"] = True
            oks = [k for k in (0, 1) if kinds[k] == "ok"]
            if oks:
                rec["winner"] = results[oks[0]][1] if len(oks) == 1 else None
                return
            if any(kind == "conflict" and "already resolved" in msg for kind, msg in results):
                return
            if "fault" in kinds:
                self.engine.up.wait(10)
            time.sleep(0.2)

    def _decide_late(self, run_id: str) -> None:
        rec = self.decisions[run_id] = {"mode": "late", "calls": [], "uncertain": False}
        while True:
            kind, msg = self._decide_once(run_id, True)
            rec["calls"].append((time.time(), kind, msg))
            if kind != "fault":
                return
            rec["uncertain"] = True
            self.engine.up.wait(10)
            time.sleep(0.1)

    def _send_events(self, plan: dict) -> None:
        ev = plan["event"]
        rec = self.sends[ev["key"]] = {"sends": [], "uncertain": False}
        for _ in range(ev["sends"]):
            while True:
                try:
                    dn.send_event(ev["key"], ev["data"])
                    rec["sends"].append(("ok", ""))
                except dn.WaitConflict as exc:
                    rec["sends"].append(("conflict", str(exc)))
                except dn.ApiError as exc:
                    if exc.status < 500:
                        raise
                    self._server_error("send_event", exc)
                    rec["uncertain"] = True
                    continue
                except FAULTS:
                    rec["uncertain"] = True
                    self.engine.up.wait(10)
                    continue
                break

    # -- killer -------------------------------------------------------------------

    def _api_quick(self, path: str) -> Any:
        """One read without retries (the killer must not wait for a restarting engine)."""
        try:
            return get_client().request("GET", path, timeout=5)
        except (dn.DurableError, *FAULTS):
            return None

    def _in_grace(self, patience: float) -> tuple[int, str] | None:
        """A worker that holds a wait in its grace period: a fresh marker of the task
        (``chaos_tasks.mark_wait``) whose pid ``GET /workers`` says executes that run."""
        gdir = ct.grace_dir(str(self.logdir))
        lo, hi = 0.04, 0.75 * self.cfg.wait_grace
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            now = time.time()
            found = []
            for name in os.listdir(gdir):
                at, run_id, pid = name.split("@")
                age = now - float(at)
                if age > 5:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(gdir, name))
                elif lo <= age <= hi and self.kills_by_run[run_id] < self.cfg.max_kills_per_run:
                    found.append((int(pid), run_id))
            if found:
                out = self._api_quick("/workers")
                busy = {w["pid"]: w.get("run_id") for w in (out or {}).get("workers", [])}
                for pid, run_id in found:
                    if busy.get(pid) == run_id:
                        return pid, run_id
            time.sleep(0.01)
        return None

    def _killer(self) -> None:
        cfg = self.cfg
        rng = random.Random(cfg.seed + 1)
        window = cfg.runs / cfg.trigger_rate
        start = time.monotonic()
        engine_at = [start + window * (k + 1) / (cfg.engine_kills + 1)
                     for k in range(cfg.engine_kills)]
        hows = itertools.cycle(("serve", "connect"))
        tail_end = None
        while not self._killer_stop.is_set():
            if engine_at and time.monotonic() >= engine_at[0]:
                engine_at.pop(0)
                self._kill_engine(rng, next(hows))
                continue
            if self._triggers_done.is_set() and not engine_at:
                tail_end = tail_end or time.monotonic() + cfg.kill_tail
                if time.monotonic() >= tail_end:
                    return
            time.sleep(min(2.0, rng.expovariate(1 / cfg.worker_kill_interval)))
            self._kill_worker(rng)

    def _kill_worker(self, rng: random.Random) -> None:
        kind = rng.choices(("grace", "busy", "idle"), weights=(50, 35, 15))[0]
        target = None
        if kind == "grace":
            target = self._in_grace(patience=1.5)
        else:
            out = self._api_quick("/workers")
            ws = [w for w in (out or {}).get("workers", [])
                  if bool(w.get("run_id")) == (kind == "busy")
                  and self.kills_by_run[w.get("run_id")] < cfg_max(self.cfg, w.get("run_id"))]
            if ws:
                w = rng.choice(ws)
                target = (w["pid"], w.get("run_id"))
        if target is None:
            return
        pid, run_id = target
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.kills.append(Kill(time.time(), pid, run_id, kind))
        if run_id:
            self.kills_by_run[run_id] += 1

    def _kill_engine(self, rng: random.Random, how: str) -> None:
        target = self._in_grace(patience=3.0)
        at = self.engine.kill()
        self.kills.append(Kill(at, self.engine.pid, target[1] if target else None,
                               "engine-in-grace" if target else "engine"))
        time.sleep(rng.uniform(0, self.cfg.max_down))
        self.engine.start(how)
        self._say(f"engine killed ({'a run in grace' if target else 'no run in grace'}), "
                  f"restarted by {how}")


def cfg_max(cfg: ChaosConfig, run_id: str | None) -> int:
    """Kills allowed for ``run_id`` (idle workers carry no run: always allowed)."""
    return cfg.max_kills_per_run if run_id else 1 << 30
