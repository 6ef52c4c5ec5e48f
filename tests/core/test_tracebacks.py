"""Tracebacks of tasks and cells as users read them: their own frames, not durable_nb's."""

from __future__ import annotations

from pathlib import Path

import pytest

import durable_nb as dn
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


def test_a_real_workers_traceback(engine):
    h = fails.trigger()
    with pytest.raises(dn.RunFailed):
        h.result(timeout=30)
    raw = h.info()["error"]["traceback"]
    assert PKG in raw, "the worker reports its own frames"
    lines = clean_traceback(raw)
    shown = "\n".join(lines)
    assert "in divide" in shown and "return 1 / v" in shown and "in fails" in shown
    assert PKG not in shown and lines[-1] == "ZeroDivisionError: division by zero"
    assert user_traceback(raw) == shown + "\n" * raw.endswith("\n")
