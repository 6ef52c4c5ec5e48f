"""How a cell's source is read: its top-level statements and the names it reads."""

from durable_nb.core.source import names_assigned, names_needed, names_read, split_statements

CELL = '''\
import os
total = 0
@decorate
@other(arg)
def helper(x):
    y = x + total
    return y
for i in range(3):
    total += helper(i)
print(total)
'''


def test_each_top_level_statement_is_one_part_with_its_first_line():
    parts = split_statements(CELL)
    assert [line for line, _ in parts] == [1, 2, 3, 8, 10]
    assert parts[2][1].startswith("@decorate\n@other(arg)\ndef helper")
    assert parts[3][1] == "for i in range(3):\n    total += helper(i)\n"
    assert "".join(text for _, text in parts) == CELL  # nothing lost, nothing repeated


def test_a_statement_over_several_lines_stays_whole():
    parts = split_statements("x = [\n    1,\n    2,\n]\ny = x\n")
    assert parts == [(1, "x = [\n    1,\n    2,\n]\n"), (5, "y = x\n")]


def test_statements_that_share_a_line_are_each_run_once():
    parts = split_statements('a = 1; b = "é"\nc = 3\nd = f(); e = (\n  2)\n')
    assert parts == [(1, "a = 1\n"), (1, 'b = "é"\n'), (2, "c = 3\n"), (3, "d = f()\n"),
                     (3, "e = (\n  2)\n")]


def test_names_read_are_the_loaded_names_only():
    names = names_read(CELL)
    assert {"decorate", "other", "arg", "total", "helper", "range", "print", "x"} <= names
    assert "y" in names  # read inside the function body too
    assert "i" in names and "os" not in names  # `import os` only stores the name


def test_assigned_but_never_read_names_are_not_inputs():
    assert names_read("a = 1\nb = a + c\n") == {"a", "c"}


def test_names_assigned_are_the_module_scope_bindings():
    cell = '''\
import os.path, numpy as np
from math import pi as PI, tau
from os import *
a = b, (c, *d) = 1, (2, 3)
e += 1
f: int = 2
g: int
for h, i in pairs:
    j = h
with open(p) as fh, lock:
    pass
try:
    pass
except ValueError as err:
    k = 1
if (m := 5) > 3:
    n = [q for q in range(m) if (last := q)]
@decorate(w := 1)
def helper(x, y=0):
    inner = x
    return inner
class Model:
    attr = 1
    def method(self):
        hidden = 1
f2 = lambda z: z
match value:
    case {"a": aa, **rest}: pass
    case [first, *others]: pass
    case Point(x=px) as point: pass
df.col = 1
table["k"] = 2
del gone
'''
    assert names_assigned(cell) == {
        "os", "np", "PI", "tau", "a", "b", "c", "d", "e", "f", "h", "i", "j", "fh", "err",
        "k", "m", "n", "last", "w", "helper", "Model", "f2", "aa", "rest", "first",
        "others", "px", "point"}


def test_names_assigned_leave_out_function_class_and_comprehension_locals():
    names = names_assigned(CELL)
    assert names == {"os", "total", "helper", "i"}
    assert not names_assigned("[v for v in range(3)]\n{k: 1 for k in 'ab'}\n")
    assert names_assigned("print(x)\n") == set()


def test_names_needed_leave_out_what_the_cell_binds_before_reading_it():
    assert names_needed("import time\nstarted = time.time()\n") == set()
    assert names_needed("x = x + 1\ny = x\n") == {"x"}
    assert names_needed("def f():\n    return np.pi\nimport numpy as np\n") == {"np"}
    assert names_needed("for i in range(2):\n    j = i\nprint(j)\n") == {"range", "print", "j"}
    assert names_needed("if ok:\n    total = 1\nprint(total)\n") == {"ok", "print", "total"}


def test_names_needed_leave_out_the_locals_of_functions_classes_and_comprehensions():
    cell = '''\
def slow():
    import time
    time.sleep(60)
    return helper(limit)
class Model:
    size = 3
    doubled = size * 2
    def fit(self, data):
        return data + offset
squares = [v * v for v in values]
'''
    assert names_needed(cell) == {"helper", "limit", "offset", "values"}


def test_names_needed_leave_out_loop_and_with_targets_read_in_their_body():
    cell = '''\
for region, frame in orders.groupby("region"):
    plot(frame, label=region)
with open(path) as fh:
    text = fh.read()
try:
    pass
except KeyError as err:
    print(err, missing)
if flag:
    import json
    json.dumps(data)
print(region)
'''
    assert names_needed(cell) == {"orders", "plot", "open", "path", "KeyError", "print",
                                  "missing", "flag", "data", "region"}
