"""Queue limits hold, per concurrency key too, and a raised limit applies at once
(acceptance 4)."""

import time

from _support import most_at_once, wait_for

import durable_nb as dn

Q = dn.Queue("q", concurrency_limit=3)


@dn.task(id="queued-work", queue=Q)
def queued_work(i: int) -> int:
    time.sleep(0.3)
    return i


def _intervals(sql_where=""):
    rows = dn.sql("select a.started_at, a.ended_at from attempts a join runs r on r.id = a.run_id "
                  f"where r.task_id = 'queued-work' {sql_where}")
    return [(s, e) for s, e in rows]


def test_limit_holds_and_raising_it_applies_at_once(engine):
    runs = [queued_work.trigger(i) for i in range(20)]
    # the limit at work for a while (a first batch done), most runs still queued
    wait_for(lambda: sum(r.status == "COMPLETED" for r in runs) >= 3, 30, "a first batch")
    raised_at = time.time()
    Q.set_limit(6)
    assert [r.result(timeout=60) for r in runs] == list(range(20))
    before = [(s, e) for s, e in _intervals() if s < raised_at]
    after = [(s, e) for s, e in _intervals() if s >= raised_at]
    assert most_at_once(before) <= 3
    assert most_at_once(_intervals()) <= 6
    assert most_at_once(after) > 3, "the raised limit was not used"
    first_new = min(s for s, _ in after)
    assert first_new - raised_at < 0.5, "the raised limit did not apply at once"
    assert {q["name"]: q["concurrency_limit"] for q in dn.connect(url=engine.client.url,
            token=engine.client.token).request("GET", "/queues")["queues"]}["q"] == 6


PER_TENANT = dn.Queue("per-tenant", concurrency_limit=1)


@dn.task(id="tenant-work", queue=PER_TENANT)
def tenant_work(tenant: str) -> str:
    time.sleep(0.5)
    return tenant


def test_concurrency_key_gives_each_tenant_its_own_limit(engine):
    runs = [tenant_work.trigger(t, concurrency_key=t) for t in ("a", "b", "a", "b")]
    assert [r.result(timeout=60) for r in runs] == ["a", "b", "a", "b"]
    spans = {}
    for r, t in zip(runs, "abab", strict=True):
        a = r.attempts[0]
        spans.setdefault(t, []).append((a["started_at"], a["ended_at"]))
    for t in "ab":
        assert most_at_once(spans[t]) == 1, f"tenant {t} must run one at a time"
    assert most_at_once(spans["a"] + spans["b"]) == 2, "tenants a and b run side by side"
