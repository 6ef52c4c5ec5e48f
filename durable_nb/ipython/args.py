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


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


class _ExtendNames(argparse.Action):
    """``--transient a b`` and ``--transient a,b`` and repeats all add up."""

    def __call__(self, parser, namespace, values, option_string=None):
        have = list(getattr(namespace, self.dest) or [])
        for v in values:
            have.extend(_names(v))
        setattr(namespace, self.dest, have)


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
                           metavar="{list,status,attach,approve,reject,cancel,resume}")
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
    sp = sub.add_parser("cancel", help="cancel a run that has not finished")
    sp.add_argument("run")
    sp = sub.add_parser("resume", help="continue a failed, crashed, canceled or timed-out run "
                        "after its last step or checkpoint, and show it here")
    sp.add_argument("run")
    sp.add_argument("--wait", action="store_true",
                    help="block until it ends, then bring its variables or result back")
    sp.add_argument("--out", type=_names, help="only these variables of a cell run (a,b)")
    return p
