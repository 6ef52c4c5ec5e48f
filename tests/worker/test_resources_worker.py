"""An attempt's resources without an engine: one object per name, closed newest first at
the end (a failing close is reported, never raised; close=False is left open), and a
cell's checkpoint that names each resource variable's factory instead of its value."""

from __future__ import annotations

import pickle

import pytest

from durable_nb.core.checkpoints import RESOURCE_BINDINGS
from durable_nb.core.errors import NotPicklable
from durable_nb.worker.resources import Resources


class Conn:
    closed: list[str] = []

    def __init__(self, name: str, fail: bool = False):
        self.name, self.fail = name, fail

    def close(self) -> None:
        if self.fail:
            raise OSError("already gone")
        Conn.closed.append(self.name)


def test_one_object_per_name_closed_newest_first(capsys):
    Conn.closed = []
    res = Resources()
    a = res.get("a", lambda: Conn("a"))
    assert res.get("a", lambda: Conn("other")) is a, "the first factory made it"
    res.get("b", lambda: Conn("b"))
    res.get("kept", lambda: Conn("kept"), close=False)
    res.get("broken", lambda: Conn("broken", fail=True))
    res.close()
    assert Conn.closed == ["b", "a"]
    assert "resource 'broken' did not close: OSError: already gone" in capsys.readouterr().err
    assert res.get("a", lambda: Conn("again")).name == "again", "the next attempt's"


def test_a_checkpoint_keeps_the_factory_and_a_restore_binds_a_new_object():
    res = Resources()
    conn = res.get("db", lambda: Conn("db"))
    kept = res.checkpointed({"db": conn, "also": conn, "n": 1, "none": None}, 3)
    assert set(kept) == {"n", "none", RESOURCE_BINDINGS}
    ns = {"n": 1, RESOURCE_BINDINGS: pickle.loads(pickle.dumps(kept[RESOURCE_BINDINGS]))}
    fresh = Resources()  # the next attempt, in another process
    fresh.restore(ns)
    assert ns["db"] is ns["also"] and ns["db"] is not conn and ns["db"].name == "db"
    assert RESOURCE_BINDINGS not in ns


def test_a_resource_of_none_binds_no_variable_and_names_are_checked():
    res = Resources()
    res.get("nothing", lambda: None)
    assert res.checkpointed({"x": None}, 1) == {"x": None}
    with pytest.raises(ValueError, match="non-empty string"):
        res.get("", Conn)
    with pytest.raises(TypeError, match="factory must be callable"):
        res.get("x", "sqlite3.connect")


def test_a_factory_that_does_not_pickle_is_named_with_its_variable():
    import threading

    lock = threading.Lock()
    res = Resources()
    conn = res.get("db", lambda: (lock, Conn("db"))[1])
    with pytest.raises(NotPicklable, match="variable 'handle' holds resource 'db'"):
        res.checkpointed({"handle": conn}, 2)
