"""Lifecycle hooks and cancellation modes: the names the client, the engine and the API
share.

A task may name hook tasks in its options (``{"hooks": {"on_failure": "<task hash>"}}``);
when one of its runs ends, the engine starts the hook task's run for that ending (a hook
run: ``runs.hook_of`` is the run it is for, ``runs.hook_kind`` which ending). A cancel
takes the run's unfinished descendants with it (``"cancel"``) or leaves them running
(``"abandon"``).
"""

from __future__ import annotations

import re
from typing import Any

from .status import RunStatus

HOOK_KINDS = ("on_success", "on_failure", "on_cancel")

# which hook a terminal status fires
KIND_OF_STATUS: dict[str, str] = {
    RunStatus.COMPLETED: "on_success",
    RunStatus.FAILED: "on_failure",
    RunStatus.CRASHED: "on_failure",
    RunStatus.TIMED_OUT: "on_failure",
    RunStatus.EXPIRED: "on_failure",
    RunStatus.CANCELED: "on_cancel",
}

CHILDREN_MODES = ("cancel", "abandon")  # what a cancel does to the run's descendants

_HASH = re.compile(r"[0-9a-f]{64}")


def hook_task_id(task_id: str, kind: str) -> str:
    """The id of the task that runs ``task_id``'s ``kind`` hook, e.g. ``report.on_failure``."""
    return f"{task_id}.{kind}"


def hook_key(run_id: str, kind: str, generation: int) -> str:
    """The idempotency key of the hook run for one ending of a run: one per ending, so a
    restart never doubles it and a resumed run that ends again fires again."""
    return f"hook:{run_id}:{kind}:{generation}"


def check_hooks(value: Any) -> dict[str, str] | None:
    """``value`` as a task's hooks ({kind: hook task hash}); ValueError naming what is
    wrong. None or {} means none."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"hooks must map {', '.join(HOOK_KINDS)} to task hashes, not "
                         f"{value!r:.100}")
    for kind, h in value.items():
        if kind not in HOOK_KINDS:
            raise ValueError(f"unknown hook {kind!r:.50}; the hooks are "
                             f"{', '.join(HOOK_KINDS)}")
        if not isinstance(h, str) or not _HASH.fullmatch(h):
            raise ValueError(f"hook {kind} must name a registered task by its hash (64 hex "
                             f"digits), not {h!r:.100}")
    return dict(value)


def check_children(value: Any) -> str:
    """``value`` as a cancel's mode for descendants (default ``"cancel"``); ValueError
    when it is not one."""
    if value is None:
        return "cancel"
    if value not in CHILDREN_MODES:
        raise ValueError(f"children must be 'cancel' (cancel the run's unfinished "
                         f"descendants too) or 'abandon' (leave them running), not "
                         f"{value!r:.50}")
    return str(value)


def check_hook_tasks(value: Any, known: Any) -> None:
    """ValueError unless ``value`` is valid hooks (``check_hooks``) whose tasks are all in
    ``known`` (task hashes): a hook task is registered before the task that names it."""
    for kind, h in (check_hooks(value) or {}).items():
        if h not in known:
            raise ValueError(f"the {kind} hook names task {h[:12]}..., which is not "
                             "registered; register the hook's task first (PUT /tasks/{hash})")
