"""Shell escapes inside a %%durable cell: ``!cmd`` runs in the worker, magics are refused,
and only real ``get_ipython`` names are renamed (never text in strings)."""

import pytest

from durable_nb.core.errors import DurableError
from durable_nb.ipython.shell import SHELL_NAME, WorkerShell, rename_get_ipython, shell


def test_system_runs_the_command_and_passes_its_output_on(capsys):
    assert shell().system("echo out; echo err >&2; exit 3") == 3
    captured = capsys.readouterr()
    assert captured.out == "out\n" and captured.err == "err\n"


def test_getoutput_returns_lines_of_both_streams():
    assert WorkerShell().getoutput("echo a; echo b >&2") == ["a", "b"]
    assert WorkerShell().getoutput("printf 'x\\ny'", split=False) == "x\ny"


def test_magics_are_refused_with_a_clear_message():
    with pytest.raises(DurableError, match="%time is an IPython magic"):
        shell().run_line_magic("time", "x = 1")
    with pytest.raises(DurableError, match="runs in a worker"):
        shell().run_cell_magic("bash", "", "ls")


def test_only_names_are_renamed():
    src = ("files = get_ipython().getoutput('ls')\n"
           "text = 'get_ipython() stays in a string'\n"
           "# get_ipython in a comment stays\n"
           "get_ipython().system('true'); my_get_ipython = 1\n")
    out = rename_get_ipython(src)
    assert out.splitlines() == [
        f"files = {SHELL_NAME}().getoutput('ls')",
        "text = 'get_ipython() stays in a string'",
        "# get_ipython in a comment stays",
        f"{SHELL_NAME}().system('true'); my_get_ipython = 1",
    ]


def test_source_that_does_not_tokenize_is_left_alone():
    src = "x = (get_ipython(\n"
    assert rename_get_ipython(src) == src
    assert rename_get_ipython("y = 1\n") == "y = 1\n"


def test_the_magics_a_cell_calls_are_found_before_it_runs():
    from IPython.core.inputtransformer2 import TransformerManager

    from durable_nb.ipython.shell import magics_in, rename_get_ipython

    cell = "x = 1\n%time y = 2\nfiles = !ls\n"
    source = rename_get_ipython(TransformerManager().transform_cell(cell))
    assert magics_in(source) == [(2, "time")], "shell escapes are allowed, magics are not"
