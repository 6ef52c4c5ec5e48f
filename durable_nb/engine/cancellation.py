"""Which runs a cancel takes with it: the unfinished descendants of a run (its child runs,
theirs, and so on), found in memory, through finished runs of the tree too when the store
names them.

The engine keeps only unfinished runs in memory, each with its ``parent_run_id``, so the
unfinished runs below a run are found by walking down from it. A finished child between
them (a child that triggered a grandchild without waiting for it, then completed) is not
in memory: ``tree_ids`` reads every descendant's id from the store, and the walk starts
from those too.
"""

from __future__ import annotations

from collections import defaultdict, deque

from .model import Run
from .state import EngineState

# every descendant of a run (any status), by following parent_run_id down
TREE_SQL = ("WITH RECURSIVE tree(id) AS (SELECT id FROM runs WHERE parent_run_id = ? "
            "UNION SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id) "
            "SELECT id FROM tree")


def has_finished_children(s: EngineState, run: Run) -> bool:
    """Whether some child of ``run`` has finished (its own children are then out of
    memory's reach: ``tree_ids`` is needed to find them)."""
    return bool(s.children_of.get(run.id)) or any(c not in s.runs for c in run.children)


def unfinished_descendants(s: EngineState, root: str, via: list[str] | tuple = ()) -> list[Run]:
    """The unfinished runs below ``root``, parents before their children. ``via``: ids of
    descendants from the store (``tree_ids``), so the walk goes on below finished ones."""
    below: dict[str, list[Run]] = defaultdict(list)
    for r in s.runs.values():
        if r.parent_run_id is not None:
            below[r.parent_run_id].append(r)
    out: list[Run] = []
    seen = {root}
    frontier = deque([root, *via])
    while frontier:
        for r in below.get(frontier.popleft(), ()):
            if r.id not in seen:
                seen.add(r.id)
                out.append(r)
                frontier.append(r.id)
    return out
