"""Argument parsers of the magics: mistakes become UsageErrors, never a kernel exit."""

from __future__ import annotations

import argparse
import sys

from IPython.core.error import UsageError


class HelpShown(Exception):
    """argparse printed the help (-h): nothing else to do."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as a UsageError instead of exiting the kernel."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            print(message, file=sys.stderr)
        raise HelpShown()


def _wait_options(sp: argparse.ArgumentParser) -> None:
    """``--wait`` and ``--out`` of the subcommands that start a run and show it here."""
    sp.add_argument("--wait", action="store_true",
                    help="block until it ends, then bring its variables or result back")
    sp.add_argument("--out", type=_names, help="only these variables of a cell run (a,b)")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


class _ExtendNames(argparse.Action):
    """``--transient a b`` and ``--transient a,b`` and repeats all add up."""

    def __call__(self, parser, namespace, values, option_string=None):
        have = list(getattr(namespace, self.dest) or [])
        for v in values:
            have.extend(_names(v))
        setattr(namespace, self.dest, have)


def _resource(text: str) -> tuple[str, str]:
    """``NAME=EXPR`` of ``--resource``: a variable name and a Python expression."""
    import keyword

    name, eq, expr = text.partition("=")
    name, expr = name.strip(), expr.strip()
    if not eq or not name.isidentifier() or keyword.iskeyword(name) or not expr:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=EXPR: give a variable name and the expression that makes "
            "it, e.g. --resource db=\"sqlite3.connect('x.db')\"")
    try:
        compile(expr, f"<--resource {name}>", "eval")
    except SyntaxError as exc:
        raise argparse.ArgumentTypeError(
            f"the expression of resource {name!r} is not valid Python: {exc.msg}: "
            f"{expr!r}") from None
    return name, expr


def cell_parser() -> _Parser:
    p = _Parser(prog="%%durable", description="Run this cell in a worker, durably: each "
                "top-level statement is a checkpoint, and the run survives the kernel.")
    p.add_argument("--name", help="a name for the run (shown in lists; default: the "
                   "notebook and cell, e.g. 'analysis.ipynb [5]')")
    p.add_argument("--retries", type=int, default=0,
                   help="attempts after the first when the cell raises (a crashed worker is "
                   "resumed without them)")
    p.add_argument("--queue", help="a queue shared with other runs")
    p.add_argument("--concurrency", type=int, help="the queue's concurrency limit")
    p.add_argument("--timeout", help="kill the attempt after this long (e.g. 90s, 10m)")
    p.add_argument("--max-duration", help="warn when an attempt runs longer than this")
    p.add_argument("--idempotency-key", help="the same key returns the existing run")
    p.add_argument("--wait", action="store_true",
                   help="block until the run ends, then bring its variables back")
    p.add_argument("--out", type=_names, help="with --wait: only these variables (a,b)")
    p.add_argument("--transient", nargs="+", action=_ExtendNames, default=[], metavar="NAME",
                   help="variables not to checkpoint (sockets, clients); lost on a resume")
    p.add_argument("--resource", action="append", type=_resource, default=[],
                   metavar="NAME=EXPR",
                   help="a variable made by EXPR in the worker at the start of every attempt "
                   "(a retry, a resume) and never checkpointed, e.g. "
                   "db=\"sqlite3.connect('x.db')\" (repeatable)")
    p.add_argument("--schedule", metavar="WHEN",
                   help="do not run now: run this cell on a schedule, a cron expression "
                   "(\"0 * * * *\") or an interval (\"15m\"); its source and the variables it "
                   "reads are captured now (its id: --name, or the notebook and cell)")
    p.add_argument("--timezone", help="with --schedule: the cron's time zone (default UTC)")
    p.add_argument("--overlap", choices=("skip", "queue", "allow"),
                   help="with --schedule: a tick while the previous run still runs "
                   "(default skip)")
    p.add_argument("--catch-up", choices=("skip", "once", "all"),
                   help="with --schedule: ticks missed while the engine was down "
                   "(default once)")
    return p


def line_parser() -> _Parser:
    p = _Parser(prog="%durable", description="Inspect and act on durable runs. RUN is a run "
                "id, a variable holding a run, or 'last'.")
    sub = p.add_subparsers(dest="cmd",
                           metavar="{list,status,attach,approve,reject,cancel,resume,"
                           "debug,fork}")
    sp = sub.add_parser("list", help="recent runs, newest first")
    sp.add_argument("--status", help="a status, or several joined by commas")
    sp.add_argument("--task", help="a task id or cell name")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--text", action="store_true",
                    help="a plain table instead of the live widget")
    sp = sub.add_parser("status", help="a run's attempts, steps, waits and error as a tree")
    sp.add_argument("run")
    sp = sub.add_parser("attach", help="show a run here; bring its variables or result back")
    sp.add_argument("run")
    sp.add_argument("--wait", action="store_true", help="block until the run ends")
    sp.add_argument("--out", type=_names, help="only these variables of a cell run (a,b)")
    for verb in ("approve", "reject"):
        sp = sub.add_parser(verb, help=f"{verb} a run's pending approval")
        sp.add_argument("run")
        sp.add_argument("--name", help="the approval's name (when the run has several)")
        sp.add_argument("--comment")
        sp.add_argument("--by", help="who decides (default: the server's user)")
        sp.add_argument("--field", action="append", metavar="KEY=VALUE",
                        help="a value of the approval's typed form (repeatable)")
    sp = sub.add_parser("cancel", help="cancel a run that has not finished")
    sp.add_argument("run")
    sp = sub.add_parser("resume", help="continue a failed, crashed, canceled or timed-out run "
                        "after its last step or checkpoint, and show it here")
    sp.add_argument("run")
    _wait_options(sp)
    sp = sub.add_parser("fork", help="a new run of a finished run that reuses what it "
                        "recorded before a step (a cell: the checkpoint after statement N) "
                        "and runs the rest with the task's current code, shown here")
    sp.add_argument("run")
    sp.add_argument("--from", dest="from_step", metavar="STEP",
                    help="a task run: the step key to run anew from, e.g. summarize#3 "
                    "(default: the failed step); a cell run: N, the statement whose "
                    "checkpoint is restored (default: its last checkpoint)")
    _wait_options(sp)
    sp = sub.add_parser("debug", help="raise a run's failure again in this kernel, with the "
                        "values the run recorded (a step's arguments, a cell's checkpoint), "
                        "so that %%debug opens at the failing line")
    sp.add_argument("run")
    sp.add_argument("--step", metavar="KEY", help="the step to call again, e.g. summarize#3 "
                    "(default: the step that failed)")
    return p


def fork_cell_parser() -> _Parser:
    """``%%durable fork RUN [--from N] [options]``: the statement to restore; the other
    options are those of ``%%durable`` (the fork runs the cell as it would), read by
    ``parse_known_args`` and then as a ``%%durable`` line."""
    p = _Parser(prog="%%durable fork RUN", description="Fork a finished %%durable cell run "
                "with this cell's text: the checkpoint after statement N is restored and "
                "the cell runs from statement N+1.", epilog="Other options: those of "
                "%%durable (--name, --retries, --wait, ...).")
    p.add_argument("--from", dest="from_step", type=int, metavar="N",
                   help="the statement whose checkpoint is restored (default: the last "
                   "checkpoint; 0: run the whole cell)")
    return p
