"""The origin of a cell run (notebook, cell id, execution count): sent by trigger_cell,
stored by the engine, returned in GET /runs and GET /runs/{id}, kept by a replay and across
an engine restart; dn.runs(q=...) searches."""

import pytest
from _support import wait_for

import durable_nb as dn
from durable_nb.client.cells import trigger_cell
from durable_nb.engine.scheduler import origin_json

ORIGIN = {"notebook": "work/analysis.ipynb", "cell_id": "9f2c-41", "execution_count": 5}


@dn.task(id="origin-plain")
def plain(x):
    return x


def test_a_cell_run_keeps_its_origin(engine):
    run = trigger_cell("x = 1", {}, name="analysis.ipynb [5]", origin=ORIGIN)
    run.wait(timeout=60)
    assert run.info()["origin"] == ORIGIN
    listed = {r.id: r for r in dn.runs(q="ANALYSIS")}
    assert list(listed) == [run.id] and listed[run.id].info()["origin"] == ORIGIN
    again = run.replay()
    again.wait(timeout=60)
    assert again.info()["origin"] == ORIGIN  # a replay comes from the same cell


def test_runs_without_an_origin_say_none(engine):
    run = plain.trigger(1)
    cell = trigger_cell("y = 2", {}, name="cell [1]", origin={"execution_count": 1})
    run.wait(timeout=60)
    cell.wait(timeout=60)
    assert run.info()["origin"] is None
    assert cell.info()["origin"] == {"notebook": None, "cell_id": None, "execution_count": 1}
    assert [r.id for r in dn.runs(q="origin-PLAIN")] == [run.id]


def test_an_unfinished_run_keeps_its_origin_over_an_engine_restart(make_engine):
    engine = make_engine()
    run = trigger_cell("dn.sleep(3600)", {"dn": dn}, name="slow", origin=ORIGIN)
    wait_for(lambda: run.status == "WAITING", timeout=60)
    engine.restart()
    assert dn.get_run(run.id).info()["origin"] == ORIGIN  # the run as recovery loaded it
    assert [r.id for r in dn.runs(q="work/analysis")] == [run.id]


@pytest.mark.parametrize("bad", ["not json", '["a"]', {"notebook": 1}, {"cell_id": True},
                                 {"execution_count": True}, {"x": 1}, {"notebook": "a" * 1025}])
def test_the_engine_refuses_an_origin_it_cannot_store(bad):
    with pytest.raises(ValueError):
        origin_json(bad)


def test_a_stored_origin_drops_empty_fields():
    assert origin_json({}) is None and origin_json(None) is None
    assert origin_json({"notebook": None, "execution_count": 0}) == '{"execution_count": 0}'
