"""engine.run_info: a run's metadata changes are durable before they are answered, refused
whole when they do not apply or would pass 256 KB, applied once when re-executed code
makes the same call again; its progress reaches live views at once and the journal at most
once a second."""

from __future__ import annotations

import json

from inprocess import NO_RETRY, retry, run_async

from durable_nb.core.run_reports import MAX_METADATA_BYTES
from durable_nb.testing import EngineHarness


def _change(w, change, key, value, call=None, n=[0]):  # noqa: B006 - a call counter
    n[0] += 1
    return w.tell("metadata", True, change=change, key=key, value=json.dumps(value),
                  call=call or f"metadata:{key}#{n[0]}")


def _events(h) -> list[dict]:
    seen: list[dict] = []
    h._engine.state.subscribe(seen.append)
    return seen


async def _stored(h, run) -> tuple:
    rows = await h.rows("SELECT metadata, progress FROM runs WHERE id = ?", run)
    meta, prog = rows[0]["metadata"], rows[0]["progress"]
    return (json.loads(meta) if meta else None, json.loads(prog) if prog else None)


@run_async
async def test_a_metadata_change_is_answered_once_durable_and_told_to_views(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        seen = _events(h)
        msg = _change(w, "set", "stage", "embed")
        assert w.replies() == [], "no answer before the change is durable"
        await h.settle()
        assert w.replies()[-1] == {"ok": True, "aid": msg["aid"], "re": msg["req"]}
        _change(w, "increment", "count", 2)
        _change(w, "increment", "count", 0.5)
        _change(w, "append", "items", {"a": [1, None]})
        await h.settle()
        want = {"stage": "embed", "count": 2.5, "items": [{"a": [1, None]}]}
        assert h.run(run).metadata == want
        assert (await _stored(h, run))[0] == want
        events = [e for e in seen if e["type"] == "metadata"]
        assert [e["metadata"] for e in events][-1] == want and len(events) == 4


@run_async
async def test_a_change_that_does_not_apply_is_refused_and_the_metadata_kept(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        _change(w, "set", "stage", "embed")
        _change(w, "set", "n", 1)
        await h.settle()
        cases = [("increment", "stage", 1, "TypeError", "cannot be incremented"),
                 ("append", "n", 3, "TypeError", "nothing can be appended"),
                 ("increment", "n", "1", "TypeError", "takes a number"),
                 ("merge", "n", 1, "ValueError", "unknown metadata change")]
        for change, key, value, kind, words in cases:
            _change(w, change, key, value)
            await h.settle()
            refused = w.replies()[-1]["refused"]
            assert refused["type"] == kind and words in refused["message"], refused
        w.tell("metadata", True, change="set", key="x", value="NaN", call="metadata:x#1")
        w.tell("metadata", True, change="set", key="", value="1", call="metadata:#1")
        w.tell("metadata", True, change="set", key="deep", value="[" * 50_000 + "]" * 50_000,
               call="metadata:deep#1")
        await h.settle()
        assert [r["refused"]["type"] for r in w.replies()[-3:]] == ["ValueError"] * 3
        assert "nested too deeply" in w.replies()[-1]["refused"]["message"]
        assert h.run(run).metadata == {"stage": "embed", "n": 1}
        assert (await _stored(h, run))[0] == {"stage": "embed", "n": 1}


@run_async
async def test_a_change_over_256_kb_is_refused_with_both_sizes(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        _change(w, "set", "a", "x" * (MAX_METADATA_BYTES // 2))
        await h.settle()
        _change(w, "set", "b", "y" * (MAX_METADATA_BYTES // 2))
        await h.settle()
        refused = w.replies()[-1]["refused"]
        assert refused["type"] == "PayloadTooLarge"
        assert "256.0 KB" in refused["message"] and "would be 256.0" in refused["message"]
        assert "keeps its earlier value" in refused["message"]
        assert list(h.run(run).metadata) == ["a"]
        _change(w, "set", "b", "small")  # a change that fits still goes in
        await h.settle()
        assert w.replies()[-1]["ok"] is True and h.run(run).metadata["b"] == "small"


@run_async
async def test_a_call_made_again_by_re_executed_code_is_not_applied_twice(tmp_path):
    """After a crash (or a wait, or a retry) the task's code runs again from the top and
    makes the same calls, named alike; they are answered but not applied again."""
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(3, 1)))
        w = h.worker_of(run)
        _change(w, "increment", "done", 1, call="metadata:done#1")
        _change(w, "append", "seen", "a", call="fetch#1/metadata:seen#1")
        await h.settle()
        w.crash()
        await h.settle()
        w2 = h.worker_of(run)
        assert w2 is not w
        _change(w2, "increment", "done", 1, call="metadata:done#1")  # the same calls again
        _change(w2, "append", "seen", "a", call="fetch#1/metadata:seen#1")
        _change(w2, "increment", "done", 1, call="metadata:done#2")  # and a new one
        await h.settle()
        assert [r.get("ok") for r in w2.replies()] == [True, True, True]
        assert h.run(run).metadata == {"done": 2, "seen": ["a"]}
        w2.done(None)
        await h.settle()
        assert (await _stored(h, run))[0] == {"done": 2, "seen": ["a"]}


@run_async
async def test_progress_is_told_at_once_and_journaled_at_most_once_a_second(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        seen = _events(h)
        await h.settle()
        syncs = h._engine.writer.syncs
        for i in range(1, 31):
            w.tell("progress", done=i, total=100, text="embedding", at=h.clock.now())
        w.tell("progress", done="lots", total=None, text=None, at=0)  # malformed: dropped
        await h.settle()
        got = [e["progress"]["done"] for e in seen if e["type"] == "progress"]
        assert got == list(range(1, 31))
        assert h.run(run).progress_report["done"] == 30
        assert h._engine.writer.syncs == syncs, "no journal write per progress report"
        await h.advance(1.0)
        assert h._engine.writer.syncs == syncs + 1
        assert (await _stored(h, run))[1]["done"] == 30
        w.tell("progress", done=100, total=100, text="done", at=h.clock.now())
        w.done(None)
        await h.settle()  # the last value goes with the run's end, not a second later
        prog = (await _stored(h, run))[1]
        assert prog["done"] == 100 and prog["text"] == "done"
        assert h.status(run) == "COMPLETED"


@run_async
async def test_metadata_and_progress_survive_an_engine_restart(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        _change(w, "set", "stage", "two")
        w.tell("progress", done=3, total=None, text=None, at=h.clock.now())
        await h.advance(1.0)
        await h.restart()
        assert h.run(run).metadata == {"stage": "two"}
        assert h.run(run).progress_report["done"] == 3


@run_async
async def test_a_call_made_again_after_an_engine_restart_is_not_applied_twice(tmp_path):
    """The calls applied are journaled with the value: an engine that restarts while the
    run executes still knows them, and the resumed code's same calls change nothing."""
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(3, 1)))
        w = h.worker_of(run)
        _change(w, "increment", "done", 1, call="metadata:done#1")
        _change(w, "append", "seen", "a", call="metadata:seen#1")
        await h.settle()
        await h.restart()
        w2 = h.worker_of(run)
        _change(w2, "increment", "done", 1, call="metadata:done#1")  # the same calls again
        _change(w2, "append", "seen", "a", call="metadata:seen#1")
        _change(w2, "increment", "done", 1, call="metadata:done#2")  # and a new one
        await h.settle()
        assert [r.get("ok") for r in w2.replies()] == [True, True, True]
        assert h.run(run).metadata == {"done": 2, "seen": ["a"]}
