"""Approvals, events and sleeps suspend without holding a worker (acceptance 5)."""

import getpass
import time

import pytest
from _support import bump, count, run_cli, wait_for

import durable_nb as dn

ME = getpass.getuser()  # who the standalone engine records as the approver


@dn.step()
def side_effect(marks: str, name: str) -> int:
    return bump(marks, name)


@dn.task(id="needs-approval")
def needs_approval(marks: str, timeout=None) -> dict:
    side_effect(marks, "before")
    d = dn.approval("publish", data={"draft": "hello"}, timeout=timeout)
    side_effect(marks, "after")
    return {"approved": d.approved, "comment": d.comment, "by": d.by, "timed_out": d.timed_out}


def _wait_status(run, status, timeout=30.0):
    wait_for(lambda: run.status == status, timeout, f"run {run.id} to reach {status}")


def _cli(engine, *args):
    return run_cli(*args, env={"DURABLE_NB_URL": engine.client.url,
                               "DURABLE_NB_TOKEN": engine.client.token}, timeout=60)


@pytest.mark.slow
def test_approval_frees_worker_and_cli_approve_resumes(engine, marks):
    run = needs_approval.trigger(str(marks))
    _wait_status(run, "WAITING")
    workers = engine.client.request("GET", "/workers")["workers"]
    assert all(w["run_id"] != run.id for w in workers), "a waiting run must hold no worker"
    assert run.attempts[-1]["outcome"] == "SUSPENDED"
    waits = run.waits
    assert waits[0]["kind"] == "approval" and waits[0]["preview"] == {"draft": "hello"}

    out = _cli(engine, "approve", run.id, "--comment", "ship it", "--by", "alice")
    assert out.returncode == 0, out.stderr
    assert "approved" in out.stdout
    # the approver is the identity the engine authenticated, not the name the client gave
    assert run.result(timeout=30) == {"approved": True, "comment": "ship it", "by": ME,
                                      "timed_out": False}
    assert count(marks, "before") == 1 and count(marks, "after") == 1

    again = _cli(engine, "approve", run.id)
    assert again.returncode == 1
    assert "approval 'publish'" in again.stderr and f"already resolved (approved by {ME})" \
        in again.stderr and "The run is COMPLETED" in again.stderr


def test_second_decision_on_a_resolved_wait_is_refused(engine, marks):
    run = needs_approval.trigger(str(marks))
    _wait_status(run, "WAITING")
    run.reject(comment="not yet", by="bob")
    with pytest.raises(dn.WaitConflict, match="already resolved"):
        run.approve()
    assert run.result(timeout=30) == {"approved": False, "comment": "not yet", "by": ME,
                                      "timed_out": False}


def test_approval_timeout(engine, marks):
    run = needs_approval.trigger(str(marks), 0.8)
    assert run.result(timeout=30)["timed_out"] is True
    with pytest.raises(dn.WaitConflict):
        run.approve()


def test_approve_within_grace_continues_in_place(make_engine, marks):
    engine = make_engine("--wait-grace", "5")
    run = needs_approval.trigger(str(marks))
    wait_for(lambda: run.waits, 30, "the run's approval", interval=0.02)
    assert run.status == "EXECUTING"
    run.approve(by="carol")
    assert run.result(timeout=30)["by"] == ME
    assert [a["outcome"] for a in run.attempts] == ["COMPLETED"]
    del engine


@dn.task(id="event-waiter")
def event_waiter(key: str, timeout=None):
    try:
        return dn.wait_for_event(key, timeout=timeout)
    except dn.WaitTimeout as exc:
        return f"timeout: {exc}"


def test_wait_for_event_and_send_event(engine):
    run = event_waiter.trigger("order-7")
    _wait_status(run, "WAITING")
    assert dn.send_event("order-7", {"paid": 12.5}) == 1
    assert run.result(timeout=30) == {"paid": 12.5}
    with pytest.raises(dn.WaitConflict, match="already sent"):
        dn.send_event("order-7", {"paid": 0})


def test_event_sent_before_the_wait_resolves_it(engine):
    dn.send_event("early", "first")
    assert event_waiter.trigger("early").result(timeout=30) == "first"


def test_event_timeout(engine):
    out = event_waiter.trigger("never", 0.5).result(timeout=30)
    assert out.startswith("timeout: no event 'never'")


@dn.task(id="sleeper")
def sleeper(seconds: float) -> float:
    t = time.time()
    dn.sleep(seconds)
    return time.time() - t


def test_sleep_suspends_and_resumes(engine):
    run = sleeper.trigger(1.5)
    _wait_status(run, "WAITING")
    assert all(w["run_id"] != run.id
               for w in engine.client.request("GET", "/workers")["workers"])
    run.result(timeout=30)
    spans = [s for s in run.spans if s["kind"] == "wait"]
    assert len(spans) == 1 and spans[0]["end_at"] - spans[0]["start_at"] >= 1.45
    assert [a["outcome"] for a in run.attempts] == ["SUSPENDED", "COMPLETED"]


def test_short_sleep_stays_in_place(engine):
    run = sleeper.trigger(0.1)
    assert run.result(timeout=30) >= 0.1
    assert [a["outcome"] for a in run.attempts] == ["COMPLETED"]


def test_waits_survive_an_engine_restart(engine, marks):
    run = needs_approval.trigger(str(marks))
    _wait_status(run, "WAITING")
    engine.kill()
    engine.start()
    assert run.status == "WAITING"
    run.approve(by="dave")
    assert run.result(timeout=30)["by"] == ME
    assert count(marks, "before") == 1
