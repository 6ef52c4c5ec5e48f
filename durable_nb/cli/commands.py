"""The `durable-nb` command: serve | runs | show | approve | reject | cancel | resume | replay | sql |
prune | stop | doctor | demo | schedules | diff | versions | compare."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from ..client import show as _show
from ..core.errors import DurableError
from ..core.forms import parse_fields, pending_form
from . import bulk as _bulk
from .schedules import add_command as add_schedules
from .versions import add_command as add_versions


def _connect(args):
    from ..client.client import connect

    return connect(db=args.db) if args.db else connect()


def cmd_serve(args) -> int:
    from ..core.config import engine_config, serve_values
    from ..server.standalone import serve

    values = serve_values(args)  # the option, else $DURABLE_NB_<NAME>, else the default
    return serve(engine_config(values), port=values["port"])


def cmd_stop(args) -> int:
    from ..core import runtime as _runtime
    from ..core.paths import resolve_db
    from ..core.runtime import pid_alive

    db = resolve_db(args.db)
    info = _runtime.read(db)
    if not info or not pid_alive(info["pid"]):
        print(f"no engine is running for {db}")
        return 0
    if info.get("host") == "jupyter-server":
        print(f"error: the engine for {db} runs inside a Jupyter server (pid {info['pid']}); "
              "it stops with that server (shut the server down instead)", file=sys.stderr)
        return 1
    os.kill(info["pid"], signal.SIGTERM)
    for _ in range(200):
        if not pid_alive(info["pid"]):
            print(f"stopped engine {info['pid']} for {db}")
            return 0
        time.sleep(0.05)
    print(f"engine {info['pid']} did not stop within 10 s", file=sys.stderr)
    return 1


def cmd_runs(args) -> int:
    client = _connect(args)
    out = client.request("GET", "/runs", query={"status": args.status, "task": args.task,
                                                "limit": args.limit,
                                                "tags": ",".join(args.tag or []) or None})
    print(_show.runs_table(out["runs"]))
    return 0


def cmd_show(args) -> int:
    client = _connect(args)
    run = client.request("GET", f"/runs/{args.run}")
    print(_show.run_tree(run))
    if args.io:
        from ..client.show_io import steps_io

        print("\nsteps' inputs and outputs:")
        print(steps_io(client, run))
    return 0


def cmd_logs(args) -> int:
    """A run's printed lines and outputs (as text), oldest first; stderr lines to stderr."""
    client = _connect(args)
    rows = client.request("GET", f"/runs/{args.run}/logs", query={"limit": args.limit})["logs"]
    for stream, text in _show.log_lines(rows):
        print(text, file=sys.stderr if stream == "stderr" else sys.stdout)
    return 0


def _decide(args, verb: str) -> int:
    client = _connect(args)
    body = {"wait": args.wait, "comment": args.comment, "by": args.by}
    if args.field:  # typed as the approval's form says: "3" for an integer field is 3
        waits = client.request("GET", f"/runs/{args.run}")["waits"]
        try:
            body["values"] = parse_fields(pending_form(waits, args.wait), args.field)
        except ValueError as exc:
            raise DurableError(str(exc)) from None
    out = client.request("POST", f"/runs/{args.run}/{verb}", body)
    print(f"{out['outcome']}: approval '{out['wait']}' of run {out['run_id']}")
    return 0


def cmd_cancel(args) -> int:
    query = _bulk.selection(args)
    if query is not None:
        return _bulk.run_bulk(_connect(args), "cancel", query, args.children)
    body = {"children": args.children} if args.children else None
    out = _connect(args).request("POST", f"/runs/{args.run}/cancel", body)
    print(f"canceled run {args.run}" + _bulk.below(out.get("children") or []))
    return 0


def cmd_resume(args) -> int:
    query = _bulk.selection(args)
    if query is not None:
        return _bulk.run_bulk(_connect(args), "resume", query)
    out = _connect(args).request("POST", f"/runs/{args.run}/resume")
    print(f"resumed run {args.run} ({out['status']}); follow it with `durable-nb show "
          f"{args.run}`")
    return 0


def cmd_replay(args) -> int:
    query = _bulk.selection(args)
    if query is not None:
        return _bulk.run_bulk(_connect(args), "replay", query)
    out = _connect(args).request("POST", f"/runs/{args.run}/replay")
    print(f"replayed run {args.run} as {out['id']}")
    return 0


def cmd_sql(args) -> int:
    out = _connect(args).request("POST", "/sql", {"query": args.query})
    print("\t".join(out["columns"]))
    for row in out["rows"]:
        print("\t".join(json.dumps(v) if not isinstance(v, str) else v for v in row))
    return 0


def cmd_prune(args) -> int:
    """Delete finished runs older than --older-than, through the engine."""
    from ..core.serial import fmt_size

    out = _connect(args).request(
        "POST", "/prune", {"older_than": args.older_than, "status": args.status,
                           "dry_run": args.dry_run}, timeout=24 * 3600)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(out["before"]))
    verb = "would prune" if out["dry_run"] else "pruned"
    print(f"{verb} {out['runs']} runs ({', '.join(out['statuses'])}) finished before {when}: "
          f"{out['rows']} of their rows, {out['blobs']} blobs and {out['files']} blob files, "
          f"{fmt_size(out['blob_bytes'])} ({out['blob_bytes']} bytes) of checkpoint values")
    return 0


def cmd_doctor(args) -> int:
    from ..core.paths import resolve_db
    from .doctor import run

    return run(resolve_db(args.db))


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.db)


def _decision_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of ``approve`` and ``reject``."""
    sp.add_argument("run")
    sp.add_argument("--wait", help="the approval's name (when the run has several)")
    sp.add_argument("--comment")
    sp.add_argument("--by", help="a name kept as a note beside the decision; the engine "
                    "records who decided from the credentials it authenticated")
    sp.add_argument("--field", action="append", metavar="KEY=VALUE",
                    help="a value of the approval's typed form (repeat for each field); "
                    "read as JSON when it parses, else as text, then as the field's type")


def _runs_arguments(sp: argparse.ArgumentParser) -> None:
    """The filters of ``runs``."""
    sp.add_argument("--status", help="filter: a status, or several joined by commas")
    sp.add_argument("--task", help="filter: a task id")
    sp.add_argument("--tag", action="append", help="filter: runs with this tag (repeat the "
                    "option for runs with all of them)")
    sp.add_argument("--limit", type=int, default=50)


def build_parser() -> argparse.ArgumentParser:
    from ..core.config import add_serve_options

    p = argparse.ArgumentParser(prog="durable-nb", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help):
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--db", help="DuckDB file (default: $DURABLE_NB_DB or the embedded "
                        "default under the Jupyter data directory)")
        sp.set_defaults(fn=fn)
        return sp

    sp = add("serve", cmd_serve, "run the engine for a database (loopback only)")
    add_serve_options(sp)  # one per setting of durable_nb.core.config.SETTINGS
    add("stop", cmd_stop, "stop the engine of a database")
    _runs_arguments(add("runs", cmd_runs, "list runs, newest first"))
    sp = add("show", cmd_show, "a run's attempts, steps, waits and errors as a tree")
    sp.add_argument("run")
    sp.add_argument("--io", action="store_true",
                    help="also each step's arguments and output (previews)")
    sp = add("logs", cmd_logs, "a run's printed lines and outputs, oldest first")
    sp.add_argument("run")
    sp.add_argument("--limit", type=int, default=1000, help="at most this many (the last)")
    for verb in ("approve", "reject"):
        _decision_arguments(add(verb, lambda a, v=verb: _decide(a, v),
                                f"{verb} a run's pending approval"))
    for verb, fn, text in (
            ("cancel", cmd_cancel, "cancel a run, or every run of a selection, with the "
             "unfinished runs below each"),
            ("resume", cmd_resume, "continue a failed, crashed, canceled or timed-out run "
             "(or each of a selection) after its last recorded step or checkpoint"),
            ("replay", cmd_replay, "start a new run with a run's task and arguments (or "
             "one per run of a selection)")):
        _bulk.add_arguments(add(verb, fn, text), verb)
    sp = add("sql", cmd_sql, "a read-only SQL query over the store")
    sp.add_argument("query")
    sp = add("prune", cmd_prune, "delete finished runs (and their steps, logs, checkpoints "
             "and the values only they refer to) that finished longer ago than a duration")
    sp.add_argument("--older-than", required=True, metavar="DURATION",
                    help="e.g. 30d, 12h, 90m, or seconds")
    sp.add_argument("--status", help="only these finished statuses, joined by commas "
                    "(default: every finished status)")
    sp.add_argument("--dry-run", action="store_true", help="only count what would go")
    add("doctor", cmd_doctor, "check a database's store (database, journal, quarantine, file "
        "modes, disk): what is wrong and what to do; exit status 1 on a problem")
    add("demo", cmd_demo, "run an example task: steps, a retry, a killed worker, an approval")
    add_schedules(add)  # durable-nb schedules list | pause ID | resume ID | delete ID
    add_versions(add)  # durable-nb diff | versions | compare
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except DurableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
