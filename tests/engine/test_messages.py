"""engine.messages: what a worker reports is recorded, answered once durable, and dropped
when it comes from an attempt that already ended."""

from __future__ import annotations

from inprocess import NO_RETRY, retry, run_async

from durable_nb.testing import EngineHarness


@run_async
async def test_a_step_is_answered_once_durable_and_recorded(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        msg = w.step("fetch#1", [1, 2])
        assert w.replies() == [], "no answer before the step is durable"
        await h.settle()
        assert w.replies() == [{"ok": True, "aid": msg["aid"], "re": msg["req"]}]
        rows = await h.rows("SELECT step_key, status FROM steps WHERE run_id = ?", run)
        assert rows == [{"step_key": "fetch#1", "status": "COMPLETED"}]


@run_async
async def test_messages_of_an_ended_attempt_are_dropped(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=retry(2, 1)))
        old = h.worker_of(run)
        old_aid = old.attempt["aid"]
        old.fail()
        await h.advance(1)
        new = h.worker_of(run)
        h.pool.events.on_message(new, {"op": "done", "aid": old_aid, "output": b""})
        await h.settle()
        assert h.status(run) == "EXECUTING", "a stale done does not end the new attempt"


@run_async
async def test_an_unknown_op_is_answered_with_an_error(tmp_path):
    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        w.tell("teleport", True)
        assert w.replies()[-1]["error"] == "unknown op teleport"
        assert h.status(run) == "EXECUTING"


@run_async
async def test_logs_and_child_runs_are_recorded(tmp_path):
    async with EngineHarness(tmp_path) as h:
        child = h.task("child", retry=NO_RETRY)
        run = await h.trigger(h.task("parent", retry=NO_RETRY))
        w = h.worker_of(run)
        w.tell("log", stream="stdout", lines=["hello", "world"], at=h.clock.now())
        spec = h._engine.state.tasks[child]
        w.tell("trigger", True, key="kids#1", payloads=[b"a", b"b"], options={},
               task={"hash": spec.hash, "task_id": spec.task_id, "code": spec.code,
                     "options": spec.options, "sys_path": []})
        await h.settle()
        ids = w.replies()[-1]["run_ids"]
        assert len(ids) == 2 and all(h.run(i).parent_run_id == run for i in ids)
        logs = await h.rows("SELECT line FROM logs WHERE run_id = ? ORDER BY seq", run)
        assert [r["line"] for r in logs] == ["hello", "world"]


def _checkpoint_of(w, snap, files, statement=1):
    small = {h: bytes(v) for h, v in snap.new.items() if h not in files}
    return w.tell("checkpoint", True, statement=statement, total=2, manifest=snap.entries,
                  counts={}, blobs=small, files=files, size=snap.size)


@run_async
async def test_a_checkpoint_is_recorded_once_its_files_are_there(tmp_path):
    """The worker writes large pieces itself; the engine journals the rows only when the
    files are there, and otherwise names the missing ones so the worker writes them again."""
    import os

    from durable_nb.worker import piecefiles, snapshot

    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        blob_dir = str(h._engine.state.store.blob_dir)
        snap = snapshot.take({"a": bytes(range(256)) * 20_000, "n": 1}, set(), 1)
        files = piecefiles.write_files(snap, blob_dir)
        assert files
        gone = next(iter(files))
        os.unlink(os.path.join(blob_dir, gone))  # as a prune removing a file found present
        _checkpoint_of(w, snap, files)
        await h.settle()
        answer = w.replies()[-1]
        assert answer["missing"] == [gone]
        assert await h.rows("SELECT seq FROM checkpoints WHERE run_id = ?", run) == []
        piecefiles.write_files(snap, blob_dir, again=answer["missing"])
        msg = _checkpoint_of(w, snap, files)
        await h.settle()
        assert w.replies()[-1] == {"ok": True, "aid": msg["aid"], "re": msg["req"]}
        rows = await h.rows("SELECT hash, external, data IS NULL AS file FROM blobs")
        assert {r["hash"] for r in rows if r["external"] and r["file"]} == set(files)
        assert all(not r["file"] for r in rows if not r["external"])
        assert h.run(run).checkpoint["statement"] == 1


@run_async
async def test_a_checkpoint_waits_for_a_prune_deleting_its_blobs(tmp_path):
    """A checkpoint that reuses a file a prune is deleting is held until the delete is
    done, then finds the file gone and asks the worker to write it again: the piece is
    never lost to the race."""
    import os
    from pathlib import Path

    from durable_nb.store.retention import Removed
    from durable_nb.worker import piecefiles, snapshot

    async with EngineHarness(tmp_path) as h:
        run = await h.trigger(h.task("t", retry=NO_RETRY))
        w = h.worker_of(run)
        blob_dir = str(h._engine.state.store.blob_dir)
        snap = snapshot.take({"a": bytes(range(256)) * 20_000}, set(), 1)
        files = piecefiles.write_files(snap, blob_dir)  # as if left by a run being pruned
        h._engine.state.blobs_in_deletion = set(files)
        _checkpoint_of(w, snap, files)
        await h.settle()
        assert w.replies() == [], "held while the prune deletes"
        h._engine.state.blobs_in_deletion = set()
        paths = [Path(blob_dir, f) for f in files]
        await h._engine.pruner._delete_blobs([], paths, Removed())
        await h.settle()
        assert not any(p.exists() for p in paths)
        assert w.replies()[-1]["missing"] == sorted(files)
        piecefiles.write_files(snap, blob_dir, again=w.replies()[-1]["missing"])
        _checkpoint_of(w, snap, files)
        await h.settle()
        assert w.replies()[-1].get("ok") and all(os.path.exists(p) for p in paths)
