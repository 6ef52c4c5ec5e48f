"""The worker's replay checks without an engine: canonical argument hashes that agree
between processes with different hash seeds, the recorded order without nested steps, a
step that stood in for a recorded one, a resumed cell's steps, and the warn mode."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import pytest

from durable_nb.core.errors import ReplayDivergence, ReplayDivergenceWarning
from durable_nb.worker.arghash import MAX_NODES, args_hash
from durable_nb.worker.divergence import ReplayCheck, top_level_order

HASH_IN_A_PROCESS = r"""
import dataclasses, decimal, enum, sys
from durable_nb.worker.arghash import args_hash

@dataclasses.dataclass
class Doc:
    tags: set
    meta: dict

class Kind(enum.Enum):
    A = "a"

names = {f"n{i}" for i in range(40)}
values = [
    (names, frozenset(names)),
    {"b": {"x", "y", "z"}, "a": [1, 2.5, None, True, b"raw", 10**40]},
    Doc(set(names), {"k": frozenset({"p", "q"})}),
    (decimal.Decimal("1.25"), Kind.A, range(3), lambda x: x in names),
]
print(list(names)[:3], file=sys.stderr)
for v in values:
    print(args_hash((v,), {"opt": names}))
"""


def _hashes_with_seed(seed: str) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", HASH_IN_A_PROCESS], capture_output=True,
                         text=True, env=env, timeout=60, check=True)
    return out.stdout.split(), out.stderr


def test_hashes_agree_between_processes_whose_sets_iterate_differently():
    (one, order_one), (two, order_two) = _hashes_with_seed("1"), _hashes_with_seed("2")
    assert order_one != order_two, "the two processes iterate the set in other orders"
    assert one == two and len(one) == 4 and all(len(h) == 32 for h in one)


def test_equal_calls_hash_alike_and_other_calls_not():
    assert args_hash((), {"a": 1, "b": 2}) == args_hash((), {"b": 2, "a": 1})
    assert args_hash(({"x": 1, "y": 2},), {}) == args_hash(({"y": 2, "x": 1},), {})
    different = [((1,), {}), ((True,), {}), ((1.0,), {}), (([1],), {}), (((1,),), {}),
                 (("1",), {}), ((b"1",), {}), ((), {"x": 1}), ((None,), {})]
    assert len({args_hash(a, k) for a, k in different}) == len(different)
    loop = [1]
    loop.append(loop)
    assert args_hash((loop,), {}) == args_hash((loop,), {}) is not None


def test_a_call_without_a_canonical_form_has_no_hash():
    import sqlite3

    assert args_hash((sqlite3.connect(":memory:"),), {}) is None
    assert args_hash((threading.Lock(),), {}) is None
    assert args_hash((list(range(MAX_NODES + 1)),), {}) is None  # too many values to walk


def test_steps_called_inside_another_are_left_out_of_the_order():
    calls = {"outer#1": (1.0, 5.0, "h", None), "inner#1": (2.0, 3.0, "h", None),
             "inner#2": (3.0, 4.0, "h", None), "next#1": (5.5, 6.0, "h", None),
             "first#1": (0.0, 0.5, "h", None)}
    assert top_level_order(calls) == ["first#1", "outer#1", "next#1"]


def _check(calls: dict, mode: str = "raise", counts: dict | None = None) -> ReplayCheck:
    msg: dict = {"step_calls": calls, "on_divergence": mode}
    if counts is not None:
        msg["checkpoint"] = {"counts": counts}
    return ReplayCheck(msg)


def test_other_arguments_for_a_recorded_key_raise_before_the_step_runs():
    recorded = {"fetch#1": (1.0, 2.0, args_hash((1,), {}), '{"args": [{"repr": "1"}]}')}
    check = _check(recorded)
    check.call("fetch#1", "fetch", (1,), {}, recorded=True, nested=False)  # the same call
    check = _check(recorded)
    with pytest.raises(ReplayDivergence) as caught:
        check.call("fetch#1", "fetch", (2,), {}, recorded=True, nested=False)
    text = str(caught.value)
    assert "fetch(1)" in text and "fetch(2)" in text and "test_divergence_worker.py" in text
    with pytest.raises(ReplayDivergence):  # code that caught it does not go on
        check.call("other#1", "other", (), {}, recorded=False, nested=False)


def test_a_new_step_in_a_recorded_ones_place_is_raised_unless_it_calls_that_one():
    calls = {"a#1": (1.0, 2.0, None, None), "b#1": (3.0, 4.0, None, None)}
    check = _check(calls)
    check.call("a#1", "a", (), {}, recorded=True, nested=False)
    check.call("x#1", "x", (), {}, recorded=False, nested=False)  # where b#1 stood
    with pytest.raises(ReplayDivergence) as caught:
        check.finish()
    assert caught.value.kind == "step" and caught.value.recorded == "b#1"
    # a step that crashed midway runs again and replays the steps it had called
    check = _check({"inner#1": (1.0, 2.0, None, None)})
    check.call("outer#1", "outer", (), {}, recorded=False, nested=False)
    check.call("inner#1", "inner", (), {}, recorded=True, nested=True)
    check.finish()


def test_a_resumed_cell_does_not_expect_the_steps_of_its_checkpointed_statements():
    calls = {"load#1": (1.0, 2.0, None, None), "load#2": (3.0, 4.0, None, None)}
    check = _check(calls, counts={"load": 2})
    check.call("save#1", "save", (), {}, recorded=False, nested=False)
    check.finish()


def test_warn_mode_warns_at_the_users_line_each_time_and_goes_on():
    recorded = {"fetch#1": (1.0, 2.0, args_hash((1,), {}), None)}
    check = _check(recorded, mode="warn")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # once per place, as a worker's filters are
        for _ in range(2):
            check.call("fetch#1", "fetch", (2,), {}, recorded=True, nested=False)
    assert [w.category for w in seen] == [ReplayDivergenceWarning] * 2
    assert seen[0].filename.endswith("test_divergence_worker.py")
    assert "fetch(2)" in str(seen[0].message)
    assert "(its arguments were not recorded)" in str(seen[0].message)
    check.finish()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplayDivergenceWarning)  # the user's filter holds
        with pytest.raises(ReplayDivergenceWarning):
            _check(recorded, mode="warn").call("fetch#1", "fetch", (3,), {}, True, False)
