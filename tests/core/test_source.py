"""How a cell's source is read: its top-level statements and the names it reads."""

from durable_nb.core.source import names_read, split_statements

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


def test_names_read_are_the_loaded_names_only():
    names = names_read(CELL)
    assert {"decorate", "other", "arg", "total", "helper", "range", "print", "x"} <= names
    assert "y" in names  # read inside the function body too
    assert "i" in names and "os" not in names  # `import os` only stores the name


def test_assigned_but_never_read_names_are_not_inputs():
    assert names_read("a = 1\nb = a + c\n") == {"a", "c"}
