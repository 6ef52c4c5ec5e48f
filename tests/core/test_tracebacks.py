"""Tracebacks of tasks and cells as users read them: their own frames, not durable_nb's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import durable_nb as dn
from durable_nb.core.codepickle import register_cell
from durable_nb.core.tracebacks import clean_traceback, user_traceback

PKG = str(Path(dn.__file__).resolve().parent)
USER = "/home/ann/work/pipeline.py"
CELL = "a = 1\nb = inverse(0)\n"

TB = f"""Traceback (most recent call last):
  File "{PKG}/_worker.py", line 120, in run_attempt
    result = fn(*args)
             ^^^^^^^^^
  File "<durable cell>", line 2, in <module>
  File "{USER}", line 7, in inverse
    return 1 / v
           ~~^~~
ZeroDivisionError: division by zero
"""


def test_our_frames_go_and_the_cells_lines_come_in():
    assert clean_traceback(TB, CELL) == [
        "Traceback (most recent call last):",
        '  File "<durable cell>", line 2, in <module>',
        "    b = inverse(0)",
        f'  File "{USER}", line 7, in inverse',
        "    return 1 / v",
        "           ~~^~~",
        "ZeroDivisionError: division by zero",
    ]
    assert '"<durable cell>", line 2, in <module>\n  File' in "\n".join(clean_traceback(TB))


def test_only_our_frames_leave_nothing_and_the_text_view_keeps_it_whole():
    ours = (f'Traceback (most recent call last):\n  File "{PKG}/_cells.py", line 9, in run\n'
            "    pickle.dumps(v)\ndurable_nb._errors.NotPicklable: variable 'ws'\n")
    assert clean_traceback(ours) == []
    assert user_traceback(ours) == ours, "nothing of a traceback is hidden when no frame is left"
    for empty in (None, ""):
        assert clean_traceback(empty) == [] and user_traceback(empty) == empty


def test_our_exception_types_lose_their_module_and_the_text_view_keeps_its_newline():
    tb = TB.replace("ZeroDivisionError", "durable_nb._errors.NotPicklable")
    assert clean_traceback(tb)[-1] == "NotPicklable: division by zero"
    text = user_traceback(tb)
    assert text is not None and text.endswith("NotPicklable: division by zero\n")
    assert PKG not in text and "run_attempt" not in text and "inverse" in text
    assert user_traceback(tb.rstrip("\n")).endswith("division by zero")  # type: ignore[union-attr]


def test_a_syntax_errors_location_is_kept_without_a_second_copy_of_the_line():
    tb = (f'Traceback (most recent call last):\n  File "{PKG}/_cells.py", line 55, in compile_'
          '\n  File "<durable cell>", line 2\n    y = (\n        ^\n'
          "SyntaxError: '(' was never closed\n")
    assert clean_traceback(tb, "x = 1\ny = (\n") == [
        "Traceback (most recent call last):", '  File "<durable cell>", line 2', "    y = (",
        "        ^", "SyntaxError: '(' was never closed"]


def test_chained_exceptions_keep_both_parts():
    tb = TB + "\nDuring handling of the above exception, another exception occurred:\n\n" + TB
    lines = clean_traceback(tb)
    assert lines.count("ZeroDivisionError: division by zero") == 2
    assert "During handling of the above exception, another exception occurred:" in lines
    assert not any(PKG in line for line in lines)


@dn.step
def divide(v: int) -> float:
    return 1 / v


@dn.task(id="tracebacks-fails", retry=dn.Retry(max_attempts=1))
def fails() -> float:
    return divide(0)


def test_a_real_workers_traceback_is_stored_clean(engine):
    h = fails.trigger()
    with pytest.raises(dn.RunFailed) as err:
        h.result(timeout=30)
    assert isinstance(err.value, ZeroDivisionError), "the task's exception type, rebuilt"
    stored = h.info()["error"]["traceback"]
    assert "in divide" in stored and "return 1 / v" in stored and "in fails" in stored
    assert PKG not in stored and stored.rstrip().endswith("ZeroDivisionError: division by zero")
    assert stored.startswith("Traceback (most recent call last):\n  File ")
    assert clean_traceback(stored) == stored.rstrip("\n").splitlines(), "cleaning again: same"
    step = h.steps[0]["traceback"]
    assert "in divide" in step and "in fails" not in step and PKG not in step


def test_pythons_own_frames_go_before_the_users_first_one_and_stay_after_it():
    stdlib = os.path.dirname(os.__file__)
    tb = (f'Traceback (most recent call last):\n  File "{PKG}/worker/main.py", line 9, in run\n'
          f'    asyncio.run(fn())\n  File "{stdlib}/asyncio/runners.py", line 190, in run\n'
          f'    return runner.run(main)\n  File "{USER}", line 3, in job\n    json.loads(s)\n'
          f'  File "{stdlib}/json/__init__.py", line 346, in loads\n'
          "    return _default_decoder.decode(s)\njson.decoder.JSONDecodeError: Expecting value\n")
    assert clean_traceback(tb) == [
        "Traceback (most recent call last):", f'  File "{USER}", line 3, in job',
        "    json.loads(s)", f'  File "{stdlib}/json/__init__.py", line 346, in loads',
        "    return _default_decoder.decode(s)", "json.decoder.JSONDecodeError: Expecting value"]


def test_a_notebook_cell_is_named_by_its_label_and_its_lines_are_not_doubled():
    name = "/tmp/ipykernel_4242/1f2e3d.py"
    register_cell(name, "Cell In[7]", "def helper(x):\n    raise ValueError(x)\n")
    tb = TB.replace(USER, name)
    lines = clean_traceback(tb, CELL)
    assert '  File "Cell In[7]", line 7, in inverse' in lines and name not in "\n".join(lines)
    assert clean_traceback("\n".join(lines), CELL) == lines, "the cell's line is not added twice"
