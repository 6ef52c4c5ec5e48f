"""The IPython extension: ``%%durable`` runs a cell in a worker, ``%durable`` lists, shows,
attaches to, approves, rejects and cancels runs. Load it with ``%load_ext durable_nb``.

Errors of durable_nb are shown as their message (they say what to do), never as a traceback
through this module; a failed run shows the user's frames only."""

from __future__ import annotations

import shlex
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..client import show as _show
from ..client.cells import auto_cell_name as _cell_name
from ..client.cells import fetch_variables, trigger_cell
from ..client.schedules import schedule_cell
from ..client.tasks import RunHandle, get_run, runs
from ..core.durations import parse_duration
from ..core.errors import DurableError, RunFailed
from ..core.forms import parse_fields, pending_form
from ..core.source import names_assigned, names_needed, names_read
from ..core.status import TERMINAL, RunStatus
from ..core.tracebacks import clean_traceback
from . import depends
from .args import HelpShown, cell_parser, line_parser
from .follow import Follower, describe, drop_connection, end_line, error_lines, say, shown
from .shell import SHELL_NAME, cell_origin, magics_in, rename_get_ipython, shell

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

def _failure(summary: dict, source: str | None) -> RunFailed:
    exc = RunFailed.from_error(summary["id"], summary["status"], summary.get("error"))
    return shown(exc, [end_line(summary)] + error_lines(summary.get("error"), source))


class CellSyntaxError(DurableError):
    """The %%durable cell is not valid Python; found in the kernel, before anything runs."""


def _syntax_error(exc: SyntaxError) -> CellSyntaxError:
    """IPython prints SyntaxErrors with its own frames; this one is shown as two lines."""
    where = f", line {exc.lineno + 1}" if exc.lineno else ""  # the %%durable line is 1
    lines = [f"SyntaxError in the %%durable cell{where}: {exc.msg}"]
    if exc.text:
        lines.append("    " + exc.text.rstrip())
    return shown(CellSyntaxError(lines[0]), lines)


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"cannot read the options: {exc}") from None


def _cell_options(line: str) -> tuple[Any, float | None, float | None]:
    """The options of a %%durable line, checked; with its timeout and max duration."""
    opts = cell_parser().parse_args(_split(line))
    try:
        timeout, max_duration = parse_duration(opts.timeout), parse_duration(opts.max_duration)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if opts.retries < 0 or (opts.concurrency is not None and opts.concurrency < 1):
        raise UsageError("--retries must be >= 0 and --concurrency >= 1")
    if opts.concurrency is not None and not opts.queue:
        raise UsageError("--concurrency needs --queue NAME (the queue it limits)")
    if opts.out and not opts.wait:
        raise UsageError("--out names the variables --wait brings back; add --wait")
    if opts.schedule and (opts.wait or opts.idempotency_key):
        raise UsageError("--schedule runs the cell on a schedule, not now: it takes "
                         "neither --wait nor --idempotency-key")
    if not opts.schedule and (opts.timezone or opts.overlap or opts.catch_up):
        raise UsageError("--timezone, --overlap and --catch-up go with --schedule WHEN")
    names = [name for name, _ in opts.resource]
    if len(set(names)) < len(names):
        raise UsageError(f"--resource names a variable twice: {', '.join(names)}")
    return opts, timeout, max_duration


@magics_class
class DurableMagics(Magics):
    """``%%durable [options]`` and ``%durable list|status|attach|approve|reject|cancel``."""

    @line_cell_magic
    def durable(self, line: str, cell: str | None = None) -> Any:
        """Run a cell durably in a worker, or inspect and act on runs.

        %%durable [--name NAME] [--retries N] [--queue NAME [--concurrency N]]
                  [--timeout DUR] [--max-duration DUR] [--idempotency-key KEY]
                  [--wait [--out a,b]] [--transient NAME ...] [--resource NAME=EXPR ...]
            The cell runs in a worker process, statement by statement, and its variables
            are checkpointed after each one, so a resume continues after the last
            completed statement. The notebook variables it reads travel with it. Without
            --wait the run's handle is returned at once, and the run's output keeps
            appearing below the cell while this kernel lives; a later cell (normal or
            %%durable) that reads a variable it assigns first waits for the run, with one
            line naming it, and gets its variables, so Run All works; cells that read none
            of them run at once. A failed run stops such a cell with an error. With --wait
            the cell blocks until the run ends, then puts its variables (or those in --out)
            into the namespace. An interrupt stops either waiting, not the run. --transient
            names variables that are not checkpointed (sockets, clients). --resource
            db="sqlite3.connect('x.db')" binds db to the expression's value, made in the
            worker at the start of every attempt (a retry, a resume after a crash) and
            never checkpointed; inside the cell, dn.resource(name, factory) does the same.

        %%durable --schedule WHEN [--timezone TZ] [--overlap skip|queue|allow]
                  [--catch-up skip|once|all] [--name ID] [options]
            Does not run the cell now: runs it on a schedule, a cron expression
            ("0 * * * *") or an interval ("15m"), with its source and the notebook
            variables it reads as they are now. Running the cell again replaces the
            schedule (its id: --name, or the notebook and cell).

        %durable list [--status S] [--task T] [--limit N]
        %durable status RUN            attempts, steps, waits and error as a tree
        %durable attach RUN [--wait] [--out a,b]
            shows the run here; once it has finished, brings back its variables (a cell)
            or returns its result (a task, also in `_`)
        %durable approve RUN [--name APPROVAL] [--comment TEXT] [--by WHO] [--field K=V ...]
        %durable reject RUN [...]      %durable cancel RUN
        %durable resume RUN [--wait]   continue a failed run after its last step or checkpoint
        %durable fork RUN [--from STEP] [--wait]
            a new run of a finished run that reuses what it recorded before STEP (a step
            key; default: the failed step) and runs the rest with the task's current
            code; a cell run: STEP is N, its checkpoint after statement N is restored
        %%durable fork RUN [--from N] [options]
            forks a cell run with the text below: the checkpoint after statement N is
            restored and this text runs from statement N+1
        %durable debug RUN [--step KEY]
            raises the run's failure again in this kernel: the failed step called with
            its recorded arguments (also in `_durable_args`, `_durable_kwargs`), or a
            cell's failing statement run on its last checkpoint's variables; `%debug`
            then opens at the failing line, and `%durable resume RUN` continues the run
            RUN is a run id, a variable holding a run, or `last`.
        """
        try:
            if cell is None:
                return self._line(line)
            return self._cell(line, cell)
        except HelpShown:
            return None
        except DurableError as exc:
            if hasattr(exc, "_render_traceback_"):
                raise
            raise shown(exc) from None

    def _kernel(self) -> InteractiveShell:
        """The IPython shell these magics are registered with."""
        if self.shell is None:
            raise UsageError("the durable_nb magics are not registered with an IPython shell")
        return self.shell

    # ------------------------------------------------------------------ %%durable

    def _cell(self, line: str, cell: str) -> RunHandle | None:
        from IPython.core.inputtransformer2 import TransformerManager

        if line.split()[:1] == ["fork"]:  # %%durable fork RUN: a fork with this text
            from .fork import fork_cell

            return fork_cell(self, line, cell)
        opts, timeout, max_duration = _cell_options(line)
        source = rename_get_ipython(TransformerManager().transform_cell(cell))
        try:
            reads, assigns, magics = names_read(source), names_assigned(source), magics_in(source)
        except SyntaxError as exc:
            raise _syntax_error(exc) from None
        if magics:
            line_no, name = magics[0]
            raise UsageError(
                f"%{name} (line {line_no + 1} of the cell) is an IPython magic: magics act on "
                "the kernel, and a %%durable cell runs in a worker process. Nothing ran; "
                "move the magic to a normal cell.")
        origin = cell_origin(self._kernel())
        run_name = opts.name or _cell_name(origin)
        pending = depends.registry(self._kernel())
        if pending.pending:  # its inputs are the values those runs end with
            pending.wait_for(self._kernel(), names_needed(source))
            if not opts.schedule:  # a scheduled cell assigns nothing here
                pending.shadow(assigns)
        ns = self._kernel().user_ns
        if SHELL_NAME in reads:
            ns = {**ns, SHELL_NAME: shell}
        if opts.schedule:
            self._schedule(opts, source, ns, origin, timeout, max_duration)
            return None
        try:
            run = trigger_cell(
                source, ns, name=run_name, retries=opts.retries,
                queue=opts.queue,
                concurrency=opts.concurrency, timeout=timeout, max_duration=max_duration,
                idempotency_key=opts.idempotency_key, transient=opts.transient, first_line=2,
                origin=origin, resources=dict(opts.resource))
        except SyntaxError as exc:
            raise _syntax_error(exc) from None
        if not opts.wait:  # later cells that read what it assigns wait for it
            pending.add(run, assigns, run_name)
        hint = f"`%durable attach {run.id}` brings its variables into the namespace"
        source = f"%%durable {line}\n{source}"  # as the editor numbers the lines
        follower = Follower(run, announce_end=not opts.wait, source=source,
                            end_hint=hint).start()
        run.outputs_in_cell = True  # its view keeps the output folded: the follower prints it
        if not opts.wait:
            return run
        summary = self._wait(run, follower)
        if summary is None:
            return run
        if summary["status"] != RunStatus.COMPLETED:
            raise _failure(summary, source)
        self._bring_back(run, summary, opts.out, opts.transient,
                         [name for name, _ in opts.resource])
        return None

    def _schedule(self, opts: Any, source: str, ns: dict, origin: dict | None,
                  timeout: float | None, max_duration: float | None) -> None:
        """``--schedule``: define (or replace) the cell's schedule; one line says when."""
        try:
            s = schedule_cell(
                source, ns, opts.schedule, name=opts.name, timezone=opts.timezone or "UTC",
                overlap=opts.overlap or "skip", catch_up=opts.catch_up or "once", origin=origin,
                retries=opts.retries, queue=opts.queue, concurrency=opts.concurrency,
                timeout=timeout, max_duration=max_duration, transient=opts.transient,
                first_line=2, resources=dict(opts.resource))
        except SyntaxError as exc:
            raise _syntax_error(exc) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        when = f"cron {s.cron!r} ({s.timezone})" if s.cron else f"every {opts.schedule}"
        say(f"scheduled this cell as '{s.id}', {when}: next run at "
            f"{_show.fmt_time(s.next_tick)}; `durable-nb schedules pause {shlex.quote(s.id)}` "
            "pauses it")

    def _wait(self, run: RunHandle, follower: Follower) -> dict | None:
        """Block until the run ends; None when a kernel interrupt stopped the waiting."""
        try:
            run.wait()
            follower.join(5.0)  # let the last log lines print before the summary
        except KeyboardInterrupt:
            drop_connection(run)
            follower.announce_end = True
            say(f"stopped waiting (kernel interrupt). The run goes on in its worker; "
                f"`%durable attach {run.id} --wait` brings its results back when it is done.",
                err=True)
            return None
        follower.stop()
        return run._summary

    def _bring_back(self, run: RunHandle, summary: dict, names: list[str] | None,
                    transient: Collection[str] = (), resources: Collection[str] = ()) -> None:
        """Put a completed cell run's variables into the notebook's namespace (not its
        transient variables nor its resources, which were never checkpointed)."""
        values = fetch_variables(run, names)
        values.pop(SHELL_NAME, None)
        self._kernel().push(values)
        depends.registry(self._kernel()).discard(run.id)  # later cells need not wait for it
        listing = ", ".join(sorted(values)) or "none"
        skipped = f"; not brought back (transient): {', '.join(transient)}" if transient else ""
        if resources:
            skipped += f"; not brought back (resources): {', '.join(resources)}"
        say(f"{end_line(summary)}; variables in the namespace: {listing}{skipped}")

    # ------------------------------------------------------------------ %durable

    def _line(self, line: str) -> Any:
        args = line_parser().parse_args(_split(line))
        if args.cmd is None:
            line_parser().print_help()
            return None
        if args.cmd == "list":
            from ..widgets.views import in_kernel, runs_widget

            if in_kernel() and not args.text:  # a notebook: the live, paginated table
                return runs_widget(status=args.status, task=args.task, limit=args.limit)
            out = self._client().request("GET", "/runs", query={
                "status": args.status, "task": args.task, "limit": args.limit})
            print(_show.runs_table(out["runs"]))
            return None
        run = self._run(args.run)
        return getattr(self, f"_cmd_{args.cmd}")(run, args)

    def _client(self):
        from ..client.client import get_client

        return get_client()

    def _run(self, ref: str) -> RunHandle:
        """A run from an id, a variable holding a RunHandle, or 'last' (the newest run)."""
        value = self._kernel().user_ns.get(ref)
        if isinstance(value, RunHandle):
            return value
        if ref == "last":
            newest = runs(limit=1)
            if not newest:
                raise UsageError("there are no runs yet")
            return newest[0]
        return get_run(ref)

    def _cmd_status(self, run: RunHandle, args) -> None:
        d = run.info()
        if d.get("error") and d["error"].get("traceback"):
            d["error"]["traceback"] = "\n".join(clean_traceback(d["error"]["traceback"]))
        print(_show.run_tree(d))
        if d.get("kind") == "cell":
            cp = run.client.request("GET", f"/runs/{run.id}/checkpoint")
            sizes = ", ".join(f"{n} ({_show_size(v['size'])})"
                              for n, v in sorted(cp["variables"].items()))
            print(f"checkpoint: statement {cp.get('statement') or 0} of "
                  f"{cp.get('total') or '?'}; variables: {sizes or '-'}")

    def _cmd_attach(self, run: RunHandle, args) -> Any:
        """Show the run here; once it has finished, its variables (cell) or result (task)."""
        from ..widgets.views import display_run, in_kernel

        summary = run._poll()
        print(describe(run))
        if in_kernel():
            display_run(run, outputs_in_cell=True)
        running = summary["status"] not in TERMINAL
        hint = f"`%durable attach {run.id}` again brings its results back"
        follower = Follower(run, announce_end=running and not args.wait, end_hint=hint).start()
        if running:
            if not args.wait:
                return None
            waited = self._wait(run, follower)
            if waited is None:
                return None
            summary = waited
        else:
            follower.join(10.0)  # prints the logs it had
        if summary["status"] != RunStatus.COMPLETED:
            raise _failure(summary, None)
        if summary.get("kind") == "cell":
            self._bring_back(run, summary, args.out)
            return None
        result = run.result(timeout=0)
        say(f"{end_line(summary)}; its result is the output below (and `_`)")
        return result

    def _cmd_approve(self, run: RunHandle, args) -> None:
        out = run.approve(args.name, args.comment, args.by, _field_values(run, args))
        print(f"approved: approval '{out['wait']}' of run {out['run_id']}")

    def _cmd_reject(self, run: RunHandle, args) -> None:
        out = run.reject(args.name, args.comment, args.by, _field_values(run, args))
        print(f"rejected: approval '{out['wait']}' of run {out['run_id']}")

    def _cmd_cancel(self, run: RunHandle, args) -> None:
        run.cancel()
        print(f"canceled run {run.id}")

    def _cmd_fork(self, run: RunHandle, args) -> Any:
        """A new run that reuses what ``run`` recorded before a step (``fork``)."""
        from .fork import fork_line

        return fork_line(self, run, args)

    def _cmd_debug(self, run: RunHandle, args) -> Any:
        """Raise the run's failure again here, with its recorded values (``debug``)."""
        from .debug import debug

        return debug(self._kernel(), run, args.step)

    def _cmd_resume(self, run: RunHandle, args) -> Any:
        """Continue the run in a new attempt, then follow it as ``attach`` does."""
        run.resume()
        print(f"resumed run {run.id}: it continues after its last recorded "
              f"{'checkpoint' if (run._summary or run._poll()).get('kind') == 'cell' else 'step'}")
        from .debug import changed_code_note

        note = changed_code_note(self._kernel(), run)
        if note:
            say(note)
        return self._cmd_attach(run, args)


def _field_values(run: RunHandle, args) -> dict | None:
    """``--field KEY=VALUE`` options as the values of the approval's typed form."""
    if not args.field:
        return None
    try:
        return parse_fields(pending_form(run.waits, args.name), args.field)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _show_size(n: int) -> str:
    from ..core.serial import fmt_size

    return fmt_size(n)


def load(ipython) -> None:
    """Register the magics (a run handle displays itself: see RunHandle._ipython_display_)
    and the hook that makes cells wait for the pending %%durable runs they depend on."""
    ipython.register_magics(DurableMagics)
    depends.install(ipython)
