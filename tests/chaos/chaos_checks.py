"""The invariants of the chaos suite, checked against the store and the side-effect logs.

``Checks`` is mixed into ``chaos_harness.Chaos``: it reads the DuckDB file once the engine
has stopped, compares it with what the harness saw (triggers, decisions, sends, kills) and
with the lines the step bodies logged, and files every violation under its invariant with
the run id, step or wait key, attempt numbers, pids, statuses and times at fault.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import chaos_tasks as ct
import duckdb

from durable_nb.core import serial as _serial

if TYPE_CHECKING:
    from chaos_harness import Kill

TERMINAL = ("COMPLETED", "FAILED", "CANCELED", "CRASHED", "TIMED_OUT", "EXPIRED")
USER_STEPS = ("quick", "slow", "brittle", "hopeless", "leaf_work")

INVARIANTS = {
    "no_run_lost": "every run id whose trigger returned exists in the store",
    "children_once": "a parent has exactly the children it triggered (no duplicates)",
    "step_recorded_once": "a (run, step key) has at most one COMPLETED row",
    "no_step_reexecuted": "no execution of a step started in a later attempt than the one "
                          "that recorded it COMPLETED",
    "step_record_matches_execution": "a COMPLETED step row has an execution of its body in "
                                     "the attempt that recorded it",
    "wait_one_row": "each (run, wait key) has exactly one row",
    "wait_one_resolution": "each wait is resolved at most once, and every attempt of a run "
                           "saw the same resolution, the one the store holds",
    "decisions": "a single decider's approval or rejection is the recorded outcome",
    "racing_deciders": "of two racing deciders exactly one got 200, the other 409, and the "
                       "recorded outcome is the winner's",
    "late_decision_refused": "a decision after an approval's timeout is refused (409) and "
                             "the approval stays timed out",
    "events_once": "an event key resolves once: a second send is refused (409)",
    "killed_attempt_not_success": "an attempt recorded COMPLETED returned in that worker "
                                  "before any kill of it",
    "crash_charged_to_victim": "each CRASHED attempt's worker was killed by the killer while "
                               "it ran that attempt",
    "timers_fire": "every sleep and timeout fires by its deadline (or by the next engine "
                   "start when the engine was down), plus a margin",
    "expected_status": "terminal statuses and outputs are what the task logic implies",
    "all_settled": "every run reaches a terminal status within the settle bound",
    "harness": "the harness itself ran without errors",
}



@dataclass
class Report:
    """Figures and violations (invariant -> list of messages) of one chaos run."""

    seed: int
    figures: dict = field(default_factory=dict)
    violations: dict = field(default_factory=lambda: defaultdict(list))
    checks: Counter = field(default_factory=Counter)

    def add(self, invariant: str, message: str) -> None:
        self.violations[invariant].append(message)

    def failures(self, invariant: str, limit: int = 5) -> str:
        found = self.violations.get(invariant, [])
        lines = [f"invariant '{invariant}' ({INVARIANTS[invariant]}) failed {len(found)} "
                 f"time(s) in {self.checks[invariant]} checks; chaos seed {self.seed} "
                 f"(reproduce with DURABLE_NB_CHAOS_SEED={self.seed}):"]
        lines += [f"  - {m}" for m in found[:limit]]
        if len(found) > limit:
            lines.append(f"  ... and {len(found) - limit} more")
        return "\n".join(lines)

    def summary(self) -> str:
        out = [f"chaos seed {self.seed}"]
        out += [f"  {k}: {v}" for k, v in self.figures.items()]
        for inv in INVARIANTS:
            n = len(self.violations.get(inv, []))
            out.append(f"  {'FAIL' if n else 'ok  '} {inv}: {n} violation(s) in "
                       f"{self.checks[inv]} checks")
        return "\n".join(out)



class Checks:
    """The check half of ``Chaos`` (see the module docstring)."""

    def _load(self) -> dict[str, list[dict]]:
        con = duckdb.connect(str(self.engine.db), read_only=True)
        try:
            def q(sql: str) -> list[dict]:
                cur = con.execute(sql)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            return {
                "runs": q("SELECT id, task_id, status, parent_run_id, payload, output, error "
                          "FROM runs"),
                "attempts": q("SELECT run_id, number, worker_pid, started_at, ended_at, "
                              "outcome FROM attempts"),
                "steps": q("SELECT run_id, step_key, name, attempt, run_attempt, status, "
                           "ended_at FROM steps"),
                "waits": q("SELECT run_id, wait_key, kind, name, created_at, deadline, "
                           "resolved_at, outcome FROM waits"),
                "spans": q("SELECT run_id, span_id, status, end_at FROM span_records WHERE "
                           "kind IN ('wait', 'retry_delay')"),
                "events": q("SELECT key, count(*) AS n FROM events GROUP BY key"),
            }
        finally:
            con.close()

    def _check(self, stuck: list[dict]) -> None:
        rep = self.report
        try:
            data = self._load()
        except Exception:
            self._harness_error("reading the store")
            return
        self.data = data
        runs = {r["id"]: r for r in data["runs"]}
        logs = {rid: ct.read_log(str(self.logdir), rid) for rid in runs}
        attempts = defaultdict(list)
        for a in data["attempts"]:
            attempts[a["run_id"]].append(a)
        for lst in attempts.values():
            lst.sort(key=lambda a: a["number"])
        waits = defaultdict(list)
        for w in data["waits"]:
            waits[(w["run_id"], w["wait_key"])].append(w)

        # no run lost
        for i, (rid, at) in sorted(self.triggered.items()):
            rep.checks["no_run_lost"] += 1
            if rid not in runs:
                rep.add("no_run_lost", f"run {rid} (plan {i}, task "
                        f"{self.plans[i]['task']}) was returned by its trigger at {at:.3f} "
                        "but is not in the store")

        # children
        children = defaultdict(list)
        for r in runs.values():
            if r["parent_run_id"]:
                children[r["parent_run_id"]].append(r)
        for rid, plan in self.plan_of.items():
            if plan["task"] != "flow" or rid not in runs:
                continue
            want = [plan["child"]["tag"]] if plan["child"] else []
            want += [it["tag"] for it in plan["batch"] or []]
            got = Counter(_args(c)["tag"] for c in children[rid])
            rep.checks["children_once"] += 1
            if runs[rid]["status"] == "COMPLETED" and sorted(got.elements()) != sorted(want):
                rep.add("children_once", f"run {rid} triggered children {sorted(want)} but "
                        f"the store has {dict(got)} ({[c['id'] for c in children[rid]]})")
            elif any(n > 1 for n in got.values()):
                rep.add("children_once", f"run {rid} has duplicate children {dict(got)}")

        # steps
        completed = defaultdict(list)
        for s in data["steps"]:
            if s["status"] == "COMPLETED" and s["name"] in USER_STEPS:
                completed[(s["run_id"], s["step_key"])].append(s)
        for (rid, key), rows in completed.items():
            rep.checks["step_recorded_once"] += 1
            if len(rows) > 1:
                rep.add("step_recorded_once", f"run {rid} step {key} has {len(rows)} COMPLETED "
                        f"rows (run attempts {[r['run_attempt'] for r in rows]})")
            rec = min(rows, key=lambda r: r["run_attempt"])
            done_in = rec["run_attempt"]
            execs = [x for x in logs.get(rid, []) if x["kind"] == "step" and x["key"] == key]
            later = [x for x in execs if x["attempt"] > done_in]
            rep.checks["no_step_reexecuted"] += 1
            if later:
                rep.add("no_step_reexecuted", f"run {rid} step {key} was recorded COMPLETED in "
                        f"run attempt {done_in} (step try {rec['attempt']}, at "
                        f"{rec['ended_at']:.3f}) and executed again in run attempt(s) "
                        f"{[(x['attempt'], x['pid'], round(x['t'], 3)) for x in later]} "
                        f"[attempt, pid, time]; attempts: {_fmt_attempts(attempts[rid])}")
            rep.checks["step_record_matches_execution"] += 1
            if not any(x["attempt"] == done_in for x in execs):
                rep.add("step_record_matches_execution", f"run {rid} step {key} recorded "
                        f"COMPLETED in run attempt {done_in}, but its body logged executions "
                        f"only in attempts {[x['attempt'] for x in execs]}")

        # waits: one row, one resolution
        resolutions = Counter((s["run_id"], s["span_id"]) for s in data["spans"])
        for (rid, key), rows in waits.items():
            rep.checks["wait_one_row"] += 1
            if len(rows) > 1:
                rep.add("wait_one_row", f"run {rid} ({runs[rid]['status']}) wait {key} has "
                        f"{len(rows)} rows: " + "; ".join(
                            f"created {w['created_at']:.3f} deadline {_f(w['deadline'])} "
                            f"resolved {_f(w['resolved_at'])} outcome {w['outcome']}"
                            for w in sorted(rows, key=lambda w: w['created_at'])))
            n = resolutions[(rid, f"{rid}/w/{key}")]
            rep.checks["wait_one_resolution"] += 1
            if n > 1:
                spans = [s for s in data["spans"] if s["span_id"] == f"{rid}/w/{key}"]
                rep.add("wait_one_resolution", f"run {rid} wait {key} was resolved {n} times: "
                        + ", ".join(f"{s['status']} at {s['end_at']:.3f}" for s in spans))
            if runs[rid]["status"] == "COMPLETED" and any(w["resolved_at"] is None for w in rows):
                rep.add("wait_one_resolution", f"run {rid} is COMPLETED but a row of its wait "
                        f"{key} stays pending for ever ({len(rows)} rows)")
        labels = {"approval": "approval:gate#1"}
        for rid, entries in logs.items():
            seen = defaultdict(list)
            for x in entries:
                if x["kind"] == "wait":
                    seen[x["key"]].append(x)
            for label, xs in seen.items():
                rep.checks["wait_one_resolution"] += 1
                values = {json.dumps(x["value"], sort_keys=True) for x in xs}
                if len(values) > 1:
                    rep.add("wait_one_resolution", f"run {rid} saw {label} resolve differently "
                            "across attempts: " + ", ".join(
                                f"attempt {x['attempt']} (pid {x['pid']}): {x['value']}"
                                for x in xs))
                key = labels.get(label)
                if key and (rid, key) in waits:
                    stored = {w["outcome"] for w in waits[(rid, key)]}
                    if any(x["value"] not in stored for x in xs):
                        rep.add("wait_one_resolution", f"run {rid} went on with {label} "
                                f"{sorted(values)} but the store holds {sorted(stored)}")

        self._count_grace_kills(data)
        self._check_decisions(runs, waits)
        self._check_events(data)
        self._check_attempts(runs, attempts, logs)
        self._check_timers(runs, waits)
        self._check_status(runs, attempts, children)
        rep.checks["all_settled"] += len(runs)
        for row in stuck:
            rep.add("all_settled", f"run {row['id']} ({row['task_id']}) is still "
                    f"{row['status']} {self.cfg.settle_timeout:.0f} s after the chaos ended "
                    f"(delay_until {_f(row['delay_until'])}, pending waits "
                    f"{[(w['wait_key'], _f(w['deadline'])) for w in row['pending_waits']]}, "
                    f"now {time.time():.3f}; engine starts "
                    f"{[round(r, 3) for r, _ in self.engine.intervals]})")

    def _count_grace_kills(self, data: dict) -> None:
        """How many kills hit a worker while its wait was pending (from the store)."""
        by_pid = {a["worker_pid"]: a for a in data["attempts"]}
        pending = defaultdict(list)
        for w in data["waits"]:
            pending[w["run_id"]].append(w)
        hit = Counter()
        for k in self.kills:
            a = by_pid.get(k.pid)
            if a is None:
                continue
            if any(a["started_at"] <= w["created_at"] <= k.at
                   and (w["resolved_at"] is None or w["resolved_at"] > k.at)
                   for w in pending[a["run_id"]]):
                hit[k.kind] += 1
        self.grace_hits = dict(hit)

    def _check_decisions(self, runs: dict, waits: dict) -> None:
        rep = self.report
        for rid, plan in self.plan_of.items():
            appr = plan.get("approval")
            if appr is None or rid not in runs or runs[rid]["status"] not in TERMINAL:
                continue  # a run that never finished is reported by all_settled
            mode = appr["mode"]
            stored = [w["outcome"] for w in waits.get((rid, "approval:gate#1"), [])]
            rec = self.decisions.get(rid, {})
            if mode in ("approve", "reject"):
                want = "approved" if mode == "approve" else "rejected"
                rep.checks["decisions"] += 1
                if rec.get("winner") != want and not rec.get("uncertain"):
                    rep.add("decisions", f"run {rid}: the only decider ({mode}) was not "
                            f"accepted: {rec.get('calls')}; store holds {stored}")
                elif stored and any(o != want for o in stored):
                    rep.add("decisions", f"run {rid}: decided {want} but the store holds "
                            f"{stored}; calls {rec.get('calls')}")
            elif mode == "race":
                rep.checks["racing_deciders"] += 1
                rounds = rec.get("rounds", [])
                last = rounds[-1][1] if rounds else None
                if last is None:
                    rep.add("racing_deciders", f"run {rid}: the race never happened "
                            f"(approval rows {stored})")
                    continue
                kinds = [r[0] for r in last]
                detail = f"run {rid}: racers answered {last} (approve, reject); store holds {stored}"
                if kinds.count("ok") == 2:
                    rep.add("racing_deciders", "both racing deciders got 200: " + detail)
                elif kinds.count("ok") == 1:
                    loser = last[kinds.index("ok") ^ 1]
                    if loser[0] not in ("conflict",) and not rec["uncertain"]:
                        rep.add("racing_deciders", "the losing decider did not get 409: " + detail)
                    if any(o != rec["winner"] for o in stored):
                        rep.add("racing_deciders", f"the winner was {rec['winner']}: " + detail)
                elif not rec["uncertain"]:
                    rep.add("racing_deciders", "no racing decider got 200: " + detail)
                elif any(o not in ("approved", "rejected") for o in stored):
                    rep.add("racing_deciders", "an uncertain race recorded neither decision: "
                            + detail)
            elif mode == "late":
                rep.checks["late_decision_refused"] += 1
                calls = rec.get("calls", [])
                final = calls[-1] if calls else None
                row = waits.get((rid, "approval:gate#1"), [{}])
                deadline = max((w.get("deadline") or 0) for w in row)
                if final is None:
                    rep.add("late_decision_refused", f"run {rid}: the late decision was never "
                            f"made (deadline {_f(deadline)}, store holds {stored})")
                elif final[1] == "ok":
                    rep.add("late_decision_refused", f"run {rid}: approving at {final[0]:.3f}, "
                            f"{final[0] - deadline:.2f} s after the approval's deadline "
                            f"{deadline:.3f}, answered 200 ({final[2]}); store holds {stored}")
                elif any(o != "timed_out" for o in stored):
                    rep.add("late_decision_refused", f"run {rid}: the late decision was refused "
                            f"({final[2]!r}) but the store holds {stored}")
            elif mode == "timeout":
                rep.checks["decisions"] += 1
                if any(o != "timed_out" for o in stored):
                    rep.add("decisions", f"run {rid}: nobody decided, yet the approval holds "
                            f"{stored}")

    def _check_events(self, data: dict) -> None:
        rep = self.report
        stored = {e["key"]: e["n"] for e in data["events"]}
        for plan in self.plan_of.values():
            ev = plan.get("event")
            if ev is None:
                continue
            rep.checks["events_once"] += 1
            rec = self.sends.get(ev["key"], {"sends": []})
            if ev["sends"] and len(rec["sends"]) != ev["sends"]:
                rep.add("events_once", f"event {ev['key']}: {ev['sends']} sends planned, "
                        f"{len(rec['sends'])} made: {rec['sends']}")
                continue
            if ev["sends"] and rec["sends"][0][0] != "ok" and not rec["uncertain"]:
                rep.add("events_once", f"event {ev['key']}: the first send was refused: "
                        f"{rec['sends'][0]}")
            if ev["sends"] == 2 and rec["sends"][1][0] != "conflict":
                rep.add("events_once", f"event {ev['key']}: the second send was accepted "
                        f"({rec['sends']})")
            if stored.get(ev["key"], 0) != (1 if ev["sends"] else 0):
                rep.add("events_once", f"event {ev['key']}: {stored.get(ev['key'], 0)} rows in "
                        f"events after {ev['sends']} sends")

    def _check_attempts(self, runs: dict, attempts: dict, logs: dict) -> None:
        rep = self.report
        killed: dict[int, Kill] = {k.pid: k for k in self.kills if not k.kind.startswith("engine")}
        crashed_pids: Counter = Counter()
        for rid, lst in attempts.items():
            returns = [x for x in logs.get(rid, []) if x["kind"] == "return"]
            for a in lst:
                if a["outcome"] == "COMPLETED":
                    rep.checks["killed_attempt_not_success"] += 1
                    mine = [x for x in returns
                            if x["attempt"] == a["number"] and x["pid"] == a["worker_pid"]]
                    k = killed.get(a["worker_pid"])
                    if not mine:
                        rep.add("killed_attempt_not_success", f"run {rid} attempt {a['number']} "
                                f"(pid {a['worker_pid']}) is recorded COMPLETED but its task never "
                                f"returned in that worker{_killed_note(k)}")
                    elif k is not None and min(x["t"] for x in mine) > k.at:
                        rep.add("killed_attempt_not_success", f"run {rid} attempt {a['number']} "
                                f"is recorded COMPLETED but its worker {a['worker_pid']} was "
                                f"killed at {k.at:.3f}, before it returned")
                if a["outcome"] == "CRASHED":
                    rep.checks["crash_charged_to_victim"] += 1
                    crashed_pids[a["worker_pid"]] += 1
                    k = killed.get(a["worker_pid"])
                    span = (f"attempt {a['number']} (pid {a['worker_pid']}, started "
                            f"{_f(a['started_at'])}, ended {_f(a['ended_at'])})")
                    if k is None:
                        others = [(b["run_id"], b["number"], b["outcome"])
                                  for lst2 in attempts.values() for b in lst2
                                  if b["worker_pid"] == a["worker_pid"] and b is not a]
                        rep.add("crash_charged_to_victim", f"run {rid} was charged CRASHED "
                                f"{span}, but the killer never killed that worker; the worker's "
                                f"other attempts: {others}")
                    elif a["ended_at"] is not None and (
                            k.at > a["ended_at"] + 0.5 or k.at < a["started_at"] - 1.0):
                        rep.add("crash_charged_to_victim", f"run {rid} was charged CRASHED "
                                f"{span}, but its worker was killed at {k.at:.3f} (while it "
                                f"ran {k.run_id})")
        for pid, n in crashed_pids.items():
            if n > 1:
                rep.add("crash_charged_to_victim", f"worker {pid} is blamed for {n} CRASHED "
                        "attempts; a worker dies once")

    def _check_timers(self, runs: dict, waits: dict) -> None:
        rep = self.report
        margin = self.cfg.timer_margin
        for (rid, key), rows in waits.items():
            status = runs[rid]["status"]
            for w in rows:
                if w["deadline"] is None:
                    continue
                rep.checks["timers_fire"] += 1
                due = self.engine.due(w["deadline"], margin)
                if due is None:
                    continue  # due after the final stop
                if w["resolved_at"] is None:
                    if status not in ("FAILED", "CRASHED"):
                        rep.add("timers_fire", f"run {rid} ({status}) wait {key} with deadline "
                                f"{w['deadline']:.3f} never fired (due by {_f(due)}; engine "
                                f"up {self._intervals()})")
                    continue
                if w["outcome"] in ("elapsed", "timed_out") and w["resolved_at"] > due + margin:
                    rep.add("timers_fire", f"run {rid} wait {key} ({w['kind']}) with deadline "
                            f"{w['deadline']:.3f} fired at {w['resolved_at']:.3f}, "
                            f"{w['resolved_at'] - due:.1f} s after it was due ({due:.3f}); "
                            f"engine up {self._intervals()}")

    def _intervals(self) -> str:
        return ", ".join(f"[{a:.3f}, {_f(b)}]" for a, b in self.engine.intervals)

    def _check_status(self, runs: dict, attempts: dict, children: dict) -> None:
        rep = self.report
        for rid, plan in self.plan_of.items():
            run = runs.get(rid)
            if run is None or run["status"] not in TERMINAL:
                continue
            rep.checks["expected_status"] += 1
            lst = attempts.get(rid, [])
            if plan["task"] == "doomed":
                last = lst[-1]["outcome"] if lst else None
                want = "CRASHED" if last == "CRASHED" else "FAILED"
                if run["status"] != want:
                    rep.add("expected_status", f"run {rid} (doomed) ended {run['status']}, "
                            f"expected {want}; attempts {_fmt_attempts(lst)}")
                continue
            if run["status"] != "COMPLETED":
                rep.add("expected_status", f"run {rid} (flow, plan {plan['i']}) ended "
                        f"{run['status']} ({_err(run)}), expected COMPLETED; attempts "
                        f"{_fmt_attempts(lst)}; kills of it {self.kills_by_run[rid]}")
                continue
            rec = self.decisions.get(rid, {})
            appr = plan.get("approval")
            outcome = None
            if appr is not None:
                outcome = {"approve": "approved", "reject": "rejected", "late": "timed_out",
                           "timeout": "timed_out"}.get(appr["mode"], rec.get("winner"))
            out = _serial.loads(run["output"])
            want = ct.expected_output(plan, outcome)
            if appr is not None and appr["mode"] == "race" and rec.get("winner") is None:
                want["approval"] = out.get("approval")  # uncertain race: checked above
            if out != want:
                diff = {k: (out.get(k), want.get(k)) for k in set(out) | set(want)
                        if out.get(k) != want.get(k)}
                rep.add("expected_status", f"run {rid} (plan {plan['i']}) returned other than "
                        f"its plan implies: {{key: (got, expected)}} = {diff}")
        for parent, kids in children.items():
            for c in kids:
                if c["status"] not in TERMINAL:
                    continue
                rep.checks["expected_status"] += 1
                item = _args(c)
                want = "FAILED" if item["abort"] else "COMPLETED"
                if c["status"] != want:
                    rep.add("expected_status", f"child run {c['id']} of {parent} ({item['tag']}) "
                            f"ended {c['status']} ({_err(c)}), expected {want}; attempts "
                            f"{_fmt_attempts(attempts.get(c['id'], []))}")

    def _figures(self, t0: float, t_chaos: float, t_settle: float) -> None:
        data = getattr(self, "data", None) or {"runs": [], "attempts": []}
        kinds = Counter(k.kind for k in self.kills)
        races = [d for d in self.decisions.values() if d["mode"] == "race"]
        self.report.figures.update({
            "root runs": len(self.triggered),
            "runs in store (with children)": len(data["runs"]),
            "statuses": dict(Counter(r["status"] for r in data["runs"])),
            "attempts by outcome": dict(Counter(a["outcome"] for a in data["attempts"])),
            "worker kills": {k: v for k, v in kinds.items() if not k.startswith("engine")},
            "engine kills": {k: v for k, v in kinds.items() if k.startswith("engine")},
            "kills while a wait was pending (store)": getattr(self, "grace_hits", {}),
            "engine starts": dict(self.engine.starts),
            "decisions": dict(Counter(d["mode"] for d in self.decisions.values())),
            "races with a certain winner": sum(1 for d in races if d.get("winner")),
            "events sent": sum(len(s["sends"]) for s in self.sends.values()),
            "calls retried after an engine fault": dict(self.faults),
            "server errors (5xx)": len(self.server_errors),
            "invariant checks": sum(self.report.checks.values()),
            "violations": sum(len(v) for v in self.report.violations.values()),
            "wall time s (chaos / settle / total)":
                f"{t_chaos:.1f} / {t_settle:.1f} / {time.monotonic() - t0:.1f}",
        })
        if self.server_errors:
            self.report.figures["first server error"] = self.server_errors[0][:300]



def _args(run: dict) -> dict:
    args, _ = _serial.loads(run["payload"])
    return args[0]


def _f(x: float | None) -> str:
    return "none" if x is None else f"{x:.3f}"


def _err(run: dict) -> str:
    try:
        e = json.loads(run["error"]) if run["error"] else {}
    except ValueError:
        return str(run["error"])[:200]
    return f"{e.get('type')}: {str(e.get('message'))[:200]}"


def _fmt_attempts(lst: list[dict]) -> list:
    return [(a["number"], a["outcome"], a["worker_pid"]) for a in lst]


def _killed_note(k: Kill | None) -> str:
    return f" (that worker was killed at {k.at:.3f})" if k else ""
