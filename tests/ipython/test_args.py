"""The magics' argument parsers: mistakes are UsageErrors (never a kernel exit), help is
printed once, and name lists add up however they are written."""

import pytest
from IPython.core.error import UsageError

from durable_nb.ipython.args import HelpShown, cell_parser, line_parser


def test_cell_options_parse_to_their_types():
    a = cell_parser().parse_args(["--name", "ingest", "--retries", "3", "--wait",
                                  "--timeout", "10m", "--out", "a, b", "--concurrency", "2"])
    assert (a.name, a.retries, a.wait, a.timeout, a.out, a.concurrency) == (
        "ingest", 3, True, "10m", ["a", "b"], 2)
    assert cell_parser().parse_args([]).transient == []


def test_transient_names_add_up_across_spellings_and_repeats():
    a = cell_parser().parse_args(["--transient", "conn", "sock,db", "--transient", "x"])
    assert a.transient == ["conn", "sock", "db", "x"]


@pytest.mark.parametrize("argv,words", [
    (["--retries", "many"], "invalid int value"),
    (["--bogus"], "unrecognized arguments"),
])
def test_mistakes_are_usage_errors_with_the_usage_line(argv, words):
    with pytest.raises(UsageError, match=words) as err:
        cell_parser().parse_args(argv)
    assert "usage: %%durable" in str(err.value)


def test_help_is_printed_and_nothing_else_happens(capsys):
    with pytest.raises(HelpShown):
        cell_parser().parse_args(["-h"])
    assert "--transient" in capsys.readouterr().out


def test_line_commands():
    p = line_parser()
    a = p.parse_args(["list", "--status", "FAILED,CRASHED", "--limit", "5"])
    assert (a.cmd, a.status, a.limit, a.text) == ("list", "FAILED,CRASHED", 5, False)
    a = p.parse_args(["approve", "last", "--comment", "ok", "--by", "ann"])
    assert (a.cmd, a.run, a.comment, a.by, a.name) == ("approve", "last", "ok", "ann", None)
    a = p.parse_args(["attach", "run_1", "--wait", "--out", "x,y"])
    assert (a.wait, a.out) == (True, ["x", "y"])
    with pytest.raises(UsageError, match="invalid choice"):
        p.parse_args(["delete", "run_1"])
    with pytest.raises(UsageError):
        p.parse_args(["status"])  # the run is required
