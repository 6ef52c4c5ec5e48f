"""The tasks of the chaos suite and the plans that drive them.

Workers import this module by reference (they get the caller's ``sys.path``), so it holds
only what a worker needs. Every step body and every task's return appends one fsync'd JSON
line to ``<logdir>/<run id>.log`` (run id, run attempt, worker pid, step key, time) before
it does anything else: the suite compares those lines with what the store recorded.

Steps fail "randomly but deterministically": a step fails while it has executed at most
``fail_first`` times in its run (killed executions included, so a kill only makes it
succeed sooner), which the plan draws from the seed.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import durable_nb as dn
from durable_nb.worker import context as _context

# Enough task attempts for the designed failures (at most 5 per run) plus the killer's
# kills (at most 3 per run) with room to spare: a flow whose steps eventually succeed
# must COMPLETE.
TASK_RETRY = dn.Retry(max_attempts=16, min_timeout=0.05, factor=2, max_timeout=0.4,
                      randomize=False)
# Step retries inside an attempt: a short delay resolves within the wait's grace period,
# a long one suspends the run and resumes it from the store.
QUICK_RETRY = dn.Retry(max_attempts=2, min_timeout=0.05, randomize=False)
SLOW_RETRY = dn.Retry(max_attempts=2, min_timeout=0.4, randomize=False)

APPROVAL_MODES = ("approve", "reject", "race", "late", "timeout")


class Flaky(Exception):
    """A designed, retryable step failure."""


# ---------------------------------------------------------------------- side-effect log

def log_path(logdir: str, run_id: str) -> str:
    return os.path.join(logdir, f"{run_id}.log")


def note(logdir: str, kind: str, key: str | None = None, value: Any = None) -> None:
    """Append one line for the current run (fsync'd: it survives a SIGKILL right after)."""
    ctx = _context.current()
    rec = {"t": time.time(), "run": ctx.run_id, "attempt": ctx.attempt, "pid": os.getpid(),
           "kind": kind, "key": key if key is not None else ctx.step_key, "value": value}
    fd = os.open(log_path(logdir, ctx.run_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def grace_dir(logdir: str) -> str:
    return os.path.join(logdir, "grace")


def mark_wait(logdir: str) -> None:
    """Tell the killer that this worker is about to hold a wait (its grace period starts):
    an empty file named ``<time>@<run id>@<pid>`` in ``<logdir>/grace``."""
    ctx = _context.current()
    path = os.path.join(grace_dir(logdir), f"{time.time():.3f}@{ctx.run_id}@{os.getpid()}")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def read_log(logdir: str, run_id: str) -> list[dict]:
    try:
        with open(log_path(logdir, run_id)) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def _execute(logdir: str) -> int:
    """Log one execution of the current step; returns how many there were, this one included."""
    ctx = _context.current()
    before = sum(1 for r in read_log(logdir, ctx.run_id)
                 if r["kind"] == "step" and r["key"] == ctx.step_key)
    note(logdir, "step")
    return before + 1


# ---------------------------------------------------------------------- steps

def _work(logdir: str, tag: str, name: str, fail_first: int) -> str:
    n = _execute(logdir)
    if n <= fail_first:
        mark_wait(logdir)  # a step retry (a wait) follows unless the retries are spent
        raise Flaky(f"{tag}:{name} fails its execution {n} of {fail_first} by design")
    return f"{tag}:{name}"


@dn.step(retry=QUICK_RETRY)
def quick(logdir: str, tag: str, name: str, fail_first: int) -> str:
    return _work(logdir, tag, name, fail_first)


@dn.step(retry=SLOW_RETRY)
def slow(logdir: str, tag: str, name: str, fail_first: int) -> str:
    return _work(logdir, tag, name, fail_first)


@dn.step()
def brittle(logdir: str, tag: str, fail_first: int) -> str:
    """No step retry: each designed failure fails the task attempt (a task retry)."""
    return _work(logdir, tag, "brittle", fail_first)


@dn.step(retry=QUICK_RETRY)
def hopeless(logdir: str, tag: str) -> str:
    _execute(logdir)
    raise Flaky(f"{tag}: this step always fails")


@dn.step()
def leaf_work(logdir: str, tag: str, abort: bool) -> str:
    _execute(logdir)
    if abort:
        raise dn.AbortRun(f"{tag} aborts by design")
    return f"{tag}:leaf"


STEPS = {"quick": quick, "slow": slow}


# ---------------------------------------------------------------------- tasks

@dn.task(id="chaos-leaf", retry=TASK_RETRY)
def leaf(item: dict) -> str:
    out = leaf_work(item["logdir"], item["tag"], item["abort"])
    if item.get("sleep"):
        mark_wait(item["logdir"])
        dn.sleep(item["sleep"])
    note(item["logdir"], "return", "return")
    return out


@dn.task(id="chaos-flow", retry=TASK_RETRY)
def flow(plan: dict) -> dict:
    """Steps, a task-level failure, then the plan's waits and children, then more steps."""
    logdir, tag = plan["logdir"], plan["tag"]
    out: dict = {"steps": []}
    (first, *rest) = plan["steps"]
    out["steps"].append(STEPS[first[0]](logdir, tag, "s0", first[1]))
    if plan["brittle"]:
        out["brittle"] = brittle(logdir, tag, plan["brittle"])
    if plan["sleep"] is not None:
        mark_wait(logdir)
        dn.sleep(plan["sleep"])
        note(logdir, "wait", "sleep", "elapsed")
    appr = plan["approval"]
    if appr is not None:
        mark_wait(logdir)
        d = dn.approval("gate", data={"tag": tag}, timeout=appr["timeout"])
        outcome = "timed_out" if d.timed_out else ("approved" if d.approved else "rejected")
        out["approval"] = outcome
        note(logdir, "wait", "approval", outcome)
    ev = plan["event"]
    if ev is not None:
        mark_wait(logdir)
        try:
            data = dn.wait_for_event(ev["key"], timeout=ev["timeout"])
        except dn.WaitTimeout:
            data = "timeout"
        out["event"] = data
        note(logdir, "wait", "event", data)
    if plan["child"] is not None:
        mark_wait(logdir)
        out["child"] = leaf.trigger_and_wait(plan["child"])
        note(logdir, "wait", "child", out["child"])
    if plan["batch"] is not None:
        mark_wait(logdir)
        res = leaf.batch_trigger_and_wait(plan["batch"])
        out["batch"] = [[r.status, r.output] for r in res]
        note(logdir, "wait", "batch", out["batch"])
    for i, (kind, fail_first) in enumerate(rest, 1):
        out["steps"].append(STEPS[kind](logdir, tag, f"s{i}", fail_first))
    note(logdir, "return", "return")
    return out


@dn.task(id="chaos-doomed", retry=dn.Retry(max_attempts=2, min_timeout=0.05, randomize=False))
def doomed(plan: dict) -> None:
    """Fails every attempt by design: FAILED (or CRASHED when its last attempt was killed)."""
    quick(plan["logdir"], plan["tag"], "s0", 0)
    hopeless(plan["logdir"], plan["tag"])


TASKS = {"flow": flow, "doomed": doomed}


# ---------------------------------------------------------------------- plans

def make_plans(seed: int, n: int, logdir: str) -> list[dict]:
    """``n`` root plans drawn from ``seed`` (the same seed gives the same plans)."""
    rng = random.Random(seed)
    return [_plan(rng, seed, i, logdir) for i in range(n)]


def _plan(rng: random.Random, seed: int, i: int, logdir: str) -> dict:
    tag = f"c{seed}-{i}"
    if rng.random() < 0.05:
        return {"i": i, "task": "doomed", "tag": tag, "logdir": logdir}
    steps = [[rng.choice(("quick", "slow")), rng.choice((0, 0, 0, 1, 2, 3))]
             for _ in range(rng.randint(2, 4))]
    approval = None
    if rng.random() < 0.45:
        mode = rng.choices(APPROVAL_MODES, weights=(30, 15, 25, 15, 15))[0]
        timeout = round(rng.uniform(0.3, 1.5), 2) if mode in ("late", "timeout") else None
        approval = {"mode": mode, "timeout": timeout}
    event = None
    if rng.random() < 0.35:
        sends = rng.choice((1, 1, 2, 0))
        before = sends > 0 and rng.random() < 0.3
        event = {"key": f"chaos-{seed}-{i}", "sends": sends, "data": {"i": i, "n": rng.randrange(10**6)},
                 "timeout": None if sends else round(rng.uniform(0.3, 1.5), 2),
                 "send_after": 0.0 if before else round(rng.uniform(0.3, 3.0), 2)}
    child = None
    if rng.random() < 0.25:
        child = {"logdir": logdir, "tag": f"{tag}-child", "abort": False,
                 "sleep": rng.choice((None, 0.05, 0.5))}
    batch = None
    if rng.random() < 0.15:
        size = rng.randint(2, 4)
        abort_at = rng.randrange(size) if rng.random() < 0.3 else None
        batch = [{"logdir": logdir, "tag": f"{tag}-b{j}", "abort": j == abort_at,
                  "sleep": rng.choice((None, 0.05, 0.5))} for j in range(size)]
    return {"i": i, "task": "flow", "tag": tag, "logdir": logdir, "steps": steps,
            "brittle": rng.choice((0, 0, 0, 1, 2)), "sleep": rng.choice((None, None, 0.05, 0.5, 1.2)),
            "approval": approval, "event": event, "child": child, "batch": batch}


def expected_output(plan: dict, approval_outcome: str | None) -> dict:
    """What ``flow(plan)`` returns, given how its approval was resolved."""
    tag = plan["tag"]
    out: dict = {"steps": [f"{tag}:s{i}" for i in range(len(plan["steps"]))]}
    if plan["brittle"]:
        out["brittle"] = f"{tag}:brittle"
    if plan["approval"] is not None:
        out["approval"] = approval_outcome
    ev = plan["event"]
    if ev is not None:
        out["event"] = ev["data"] if ev["sends"] else "timeout"
    if plan["child"] is not None:
        out["child"] = f"{plan['child']['tag']}:leaf"
    if plan["batch"] is not None:
        out["batch"] = [["FAILED", None] if it["abort"] else ["COMPLETED", f"{it['tag']}:leaf"]
                        for it in plan["batch"]]
    return out
