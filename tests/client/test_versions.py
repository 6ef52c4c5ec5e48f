"""Code versions against a real engine: two versions of a task id, the version each run
ran (``GET /runs/{id}``, ``durable-nb show``), the unfinished runs of each version
(``dn.versions``, ``GET /versions``), the source diff of two runs (``durable-nb diff``),
and what is said when a source was not recorded or both ran the same version."""

from __future__ import annotations

import pytest
from _support import run_cli, wait_for

import durable_nb as dn
from durable_nb.client.versions import notice_line
from durable_nb.core.versions import source_digest


@dn.task(id="versioned")
def ingest_v1(n):
    """The first version: waits for a sign-off, then doubles."""
    ok = dn.approval("go")
    return n * 2 if ok.approved else None


@dn.task(id="versioned")
def ingest_v2(n):
    """The second version: waits for a sign-off, then triples."""
    ok = dn.approval("go")
    return n * 3 if ok.approved else None


def _waiting(run):
    wait_for(lambda: run.status == "WAITING", 30, f"{run.id} waiting")


def test_two_versions_of_a_task_with_runs_in_flight_and_their_diff(engine):
    old = [ingest_v1.trigger(i) for i in range(2)]
    new = ingest_v2.trigger(5)
    for r in (*old, new):
        _waiting(r)

    v_old, v_new = old[0].version, new.version
    assert v_old["number"] == 1 and v_new["number"] == 2
    assert v_old["hash"] == ingest_v1.spec()["hash"] and v_new["hash"] == ingest_v2.spec()["hash"]
    assert v_old["latest"] is False and v_new["latest"] is True
    assert v_old["created_at"] <= v_new["created_at"]
    assert old[1].version["number"] == 1  # one version however many runs

    vs = dn.versions("versioned")
    assert [(v.number, v.unfinished, v.latest) for v in vs] == [(1, 2, False), (2, 1, True)]
    assert vs[0].runs == [r.id for r in old] and vs[1].runs == [new.id]
    assert [v.number for v in ingest_v2.versions()] == [1, 2]
    listing = engine.client.request("GET", "/versions", query={"task_id": "versioned"})
    assert notice_line("versioned", listing, v_new["hash"]) == (
        f"2 runs still on the previous version of 'versioned' (v1): {old[0].id}, {old[1].id}")
    others = engine.client.request("GET", "/versions", query={
        "task_id": "versioned", "except_version": v_new["hash"]})
    assert [(v["number"], v["runs"]) for v in others["versions"]] == [(1, [r.id for r in old])]
    assert others["latest"] == 2

    diff = run_cli("diff", old[0].id, new.id, "--db", str(engine.db))
    assert diff.returncode == 0, diff.stderr
    text = diff.stdout
    assert text.startswith(f"--- {old[0].id} (versioned v1 ({v_old['hash'][:7]}))\n"
                           f"+++ {new.id} (versioned v2 ({v_new['hash'][:7]}))\n")
    assert "-    return n * 2 if ok.approved else None" in text
    assert "+    return n * 3 if ok.approved else None" in text
    assert "\x1b[" not in text  # colourless
    assert dn.diff(old[0], new) == text.rstrip("\n")

    same = run_cli("diff", old[0].id, old[1].id, "--db", str(engine.db))
    assert same.returncode == 0
    assert "ran the same version of 'versioned' (v1" in same.stdout

    show = run_cli("show", old[0].id, "--db", str(engine.db))
    assert f"code version v1 ({v_old['hash'][:7]}); v2 is the latest" in show.stdout

    for r in (*old, new):
        r.approve()
    assert [r.result(timeout=30) for r in (*old, new)] == [0, 2, 15]
    assert [v.unfinished for v in dn.versions("versioned")] == [0, 0]
    quiet = engine.client.request("GET", "/versions", query={
        "task_id": "versioned", "except_version": v_new["hash"]})
    assert quiet["versions"] == []  # nothing unfinished elsewhere: answered from memory


def test_a_source_is_stored_but_never_changes_the_hash(engine):
    spec = ingest_v1.spec()
    assert "def ingest_v1(n):" in spec["source"]
    assert "source" not in spec["options"]
    # the hash is that of code, id and options alone (as tasks of earlier releases had it)
    from durable_nb.core import serial
    assert spec["hash"] == serial.task_hash(spec["code"], spec["task_id"], spec["options"])


def test_a_run_whose_source_was_not_recorded_says_so(engine):
    """A task registered without its source (as releases before it was recorded did)."""
    from durable_nb.core.serial import b64

    spec = ingest_v1.spec()
    engine.client.request("PUT", f"/tasks/{spec['hash']}", {
        "task_id": spec["task_id"], "code_b64": b64(spec["code"]),
        "sys_path": spec["sys_path"], "options": spec["options"]})
    engine.client._registered.add(f"{engine.client.url}|{spec['hash']}")
    old = ingest_v1.trigger(1)
    new = ingest_v2.trigger(1)
    src = engine.client.request("GET", f"/runs/{old.id}/source")
    assert src["source"] is None and src["version"]["number"] == 1
    out = run_cli("diff", old.id, new.id, "--db", str(engine.db))
    assert out.returncode == 0
    assert f"the source of run {old.id} (versioned v1" in out.stdout
    assert "was not recorded" in out.stdout and "earlier release" in out.stdout
    for r in (old, new):
        r.cancel()


def test_malformed_requests_are_refused_with_the_field(engine):
    c = engine.client
    with pytest.raises(dn.ApiError, match="task_id") as exc:
        c.request("GET", "/versions")
    assert exc.value.status == 400
    spec = ingest_v1.spec()
    for body in ({"source": 5}, {"source": "x" * 1_000_001},
                 {"options": {"kind": "cell", "source_hash": "not-a-hash"}}):
        with pytest.raises(dn.ApiError, match="source") as exc:
            c.request("PUT", f"/tasks/{spec['hash']}", {"task_id": "versioned",
                                                       "code_b64": "", **body})
        assert exc.value.status == 400
    for path in ("/runs/run_nope/source", "/runs/run_nope/compare/run_other"):
        with pytest.raises(dn.RunNotFound, match="run_nope"):
            c.request("GET", path)
    out = run_cli("diff", "run_nope", "run_other", "--db", str(engine.db))
    assert out.returncode == 1 and "run_nope" in out.stderr


def test_cells_are_versions_of_their_text_and_survive_a_killed_engine(engine):
    """Two texts of a named cell are two versions; the same text again is the same one,
    whatever its other options; versions and sources are durable once a trigger returned:
    they are read back after the engine is SIGKILLed."""
    from durable_nb.client.cells import trigger_cell

    a = trigger_cell("x = 1\n", {}, name="report")
    b = trigger_cell("x = 2\n", {}, name="report")
    c = trigger_cell("x = 1\n", {}, name="report", retries=2)  # other options, same text
    for r in (a, b, c):
        r.result(timeout=30)
    assert [r.version["number"] for r in (a, b, c)] == [1, 2, 1]
    assert a.version["hash"] == source_digest("x = 1\n") == c.version["hash"]
    assert "-x = 1\n+x = 2" in dn.diff(a, b)
    assert "same version" in dn.diff(a, c)
    engine.kill()
    engine.start()
    assert [r.version["number"] for r in (a, b, c)] == [1, 2, 1]
    assert dn.get_run(b.id).version["latest"] is True
    assert "-x = 1\n+x = 2" in dn.diff(a, b)


def test_unnamed_cells_are_versions_of_their_notebook_cell(engine):
    """An unnamed cell's runs are named after their execution count; their versions are
    those of the notebook cell they come from."""
    from durable_nb.client.cells import auto_cell_name, trigger_cell

    runs = []
    for count, text in ((3, "y = 1\n"), (4, "y = 2\n"), (5, "y = 2\n")):
        origin = {"notebook": "work/a.ipynb", "cell_id": "c-1", "execution_count": count}
        runs.append(trigger_cell(text, {}, name=auto_cell_name(origin), origin=origin))
    other = trigger_cell("y = 1\n", {}, name="a.ipynb [6]", origin={
        "notebook": "work/a.ipynb", "cell_id": "c-2", "execution_count": 6})
    for r in (*runs, other):
        r.result(timeout=30)
    assert [r.info()["task_id"] for r in runs] == ["a.ipynb [3]", "a.ipynb [4]", "a.ipynb [5]"]
    assert [r.version["number"] for r in runs] == [1, 2, 2]
    assert runs[0].version["of"] == "work/a.ipynb#c-1"
    assert other.version["number"] == 1 and other.version["of"] == "work/a.ipynb#c-2"
    assert len(dn.versions("work/a.ipynb#c-1")) == 2
