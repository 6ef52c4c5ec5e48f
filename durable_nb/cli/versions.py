"""`durable-nb diff RUN_A RUN_B`, `durable-nb versions TASK` and `durable-nb compare RUN_A
RUN_B`: code versions and two runs side by side, from a shell (through the API)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def _connect(args: argparse.Namespace) -> Any:
    from ..client.client import connect

    return connect(db=args.db) if args.db else connect()


def cmd_diff(args: argparse.Namespace) -> int:
    """The unified diff of the source two runs ran (plain text, no colours)."""
    from ..client.versions import diff

    print(diff(args.run_a, args.run_b, _connect(args)))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """A task's versions, oldest first, with the runs still unfinished on each."""
    from ..client.versions import versions

    found = versions(args.task, _connect(args))
    if not found:
        print(f"no versions of '{args.task}': no task with this id (or cell name) was "
              "registered; `durable-nb runs` lists the runs and their tasks")
        return 0
    for v in found:
        print(v)
        if v.runs:
            more = f" and {v.unfinished - len(v.runs)} more" if v.unfinished > len(v.runs) else ""
            print(f"    {', '.join(v.runs)}{more}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Two runs side by side: steps aligned by key, status, duration and output."""
    from ..client.compare import compare

    print(compare(args.run_a, args.run_b, _connect(args)))
    return 0


def add_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    """`diff`, `versions` and `compare`, with the options every command has (`--db`)."""
    sp = add("diff", cmd_diff, "the unified diff of the source code two runs ran")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp = add("versions", cmd_versions, "a task's code versions (v1, v2, ...) and the runs "
             "still unfinished on each")
    sp.add_argument("task", help="a task id or a cell's name")
    sp = add("compare", cmd_compare, "two runs side by side: their steps (a cell's "
             "statements), statuses, durations and outputs, and what differs")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
