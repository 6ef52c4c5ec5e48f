"""``%durable fork RUN [--from STEP]`` and ``%%durable fork RUN [--from N] [options]``.

The line form forks any finished run as ``RunHandle.fork`` does: a task run from a step key
(default: its failed step) with the current version of its task, a cell run from a
statement number with the text it ran. The cell form forks a ``%%durable`` cell run with the
text below the line, which is how a cell is forked with edited code: change the failed
cell's first line to ``%%durable fork RUN --from N`` and run it. The checkpoint after
statement N is restored and the edited text runs from statement N+1; the notebook variables
it reads travel as for ``%%durable`` (those its first N statements assign come from the
checkpoint, the others from the notebook as it is now).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..client.cells import auto_cell_name
from ..client.forks import fork_cell as fork_cell_run
from ..client.tasks import RunHandle
from ..core.source import names_assigned, names_needed, names_read, split_statements
from . import depends
from .args import fork_cell_parser
from .follow import Follower, say
from .shell import SHELL_NAME, cell_origin, magics_in, rename_get_ipython, shell

if TYPE_CHECKING:
    from .magics import DurableMagics


def fork_line(magics: DurableMagics, run: RunHandle, args: Any) -> Any:
    """``%durable fork``: start the fork, say what it reuses, then show and follow it as
    ``%durable attach`` does (``--wait`` brings its variables or result back)."""
    summary = run._summary if run._summary and "kind" in run._summary else run._poll()
    new = run.fork(from_step=args.from_step)
    step = new.info().get("fork_step")
    if summary.get("kind") == "cell":
        what = (f"the checkpoint after statement {step} restored, the cell runs from "
                f"statement {int(step or 0) + 1} with the text it ran")
    elif step:
        what = f"steps before {step} reused, {step} and the rest run with the current code"
    else:
        what = "every step it recorded reused, the rest run with the current code"
    say(f"fork {new.id} of run {run.id}: {what}")
    return magics._cmd_attach(new, args)


def fork_cell(magics: DurableMagics, line: str, cell: str) -> RunHandle | None:
    """``%%durable fork RUN [--from N] [options]`` with the cell's (edited) text below."""
    from .magics import _cell_options, _failure, _split

    words = _split(line)[1:]
    if not words or words[0].startswith("-"):
        raise UsageError("%%durable fork RUN [--from N] [options]: name the cell run to fork "
                         "(an id, a variable holding it, or 'last')")
    where, rest = fork_cell_parser().parse_known_args(words[1:])
    opts, timeout, max_duration = _cell_options(" ".join(shlex.quote(w) for w in rest))
    if opts.schedule or opts.idempotency_key:
        raise UsageError("a fork runs now and once: it takes neither --schedule nor "
                         "--idempotency-key")
    kernel = magics._kernel()
    run = magics._run(words[0])
    summary = run._summary if run._summary and "kind" in run._summary else run._poll()
    if summary.get("kind") != "cell":
        raise UsageError(f"run {run.id} is a task run: fork it with `%durable fork {run.id} "
                         "--from STEP` (a line, no cell below) or run.fork(...)")
    source, reads, assigns, total = _prepared(cell)
    origin = cell_origin(kernel)
    name = opts.name or auto_cell_name(origin)
    pending = depends.registry(kernel)
    if pending.pending:  # its inputs are the values those runs end with
        pending.wait_for(kernel, names_needed(source))
        pending.shadow(assigns)
    ns = {**kernel.user_ns, SHELL_NAME: shell} if SHELL_NAME in reads else kernel.user_ns
    try:
        new, n = fork_cell_run(run, source, ns, where.from_step, name=name, retries=opts.retries,
                           queue=opts.queue, concurrency=opts.concurrency, timeout=timeout,
                           max_duration=max_duration, transient=opts.transient, first_line=2,
                           origin=origin, resources=dict(opts.resource))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    runs_now = f"statements {n + 1}–{total} run now" if n < total else "no statement runs"
    say(f"fork {new.id} of run {run.id}: statements 1–{n} restored from its checkpoint, "
        f"{runs_now}" if n else f"fork {new.id} of run {run.id}: the whole cell runs")
    if not opts.wait:
        pending.add(new, assigns, name)
    hint = f"`%durable attach {new.id}` brings its variables into the namespace"
    text = f"%%durable {line}\n{source}"  # as the editor numbers the lines
    follower = Follower(new, announce_end=not opts.wait, source=text, end_hint=hint).start()
    new.outputs_in_cell = True
    if not opts.wait:
        return new
    done = magics._wait(new, follower)
    if done is None:
        return new
    if done["status"] != "COMPLETED":
        raise _failure(done, text)
    magics._bring_back(new, done, opts.out, opts.transient,
                       [name for name, _ in opts.resource])
    return None


def _prepared(cell: str) -> tuple[str, set[str], set[str], int]:
    """The cell's text as a worker runs it, the names it reads and assigns, and how many
    statements it has; a syntax error or a magic in it is refused before anything runs."""
    from IPython.core.inputtransformer2 import TransformerManager

    from .magics import _syntax_error

    source = rename_get_ipython(TransformerManager().transform_cell(cell))
    try:
        reads, assigns, found = names_read(source), names_assigned(source), magics_in(source)
        total = len(split_statements(source))
    except SyntaxError as exc:
        raise _syntax_error(exc) from None
    if found:
        raise UsageError(f"%{found[0][1]} (line {found[0][0] + 1} of the cell) is an IPython "
                         "magic, and a %%durable cell runs in a worker process. Nothing ran; "
                         "move the magic to a normal cell.")
    return source, reads, assigns, total
