"""Code versions from Python: the source a task registers with its code, ``dn.versions``
(a task's versions and the runs still unfinished on each), ``dn.diff`` (the source diff of
two runs, as ``durable-nb diff`` prints it) and the notice a kernel prints when a task or a
``%%durable`` cell is redefined while runs of its previous version are unfinished.

The engine numbers versions (``engine.versions``, ``core.versions``); this module reads them.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.versions import MAX_SOURCE, SHORT, label
from ..worker import context as _context
from . import client as _client
from .client import Client, get_client

NOTICE_IDS = 5  # run ids a notice names before "and N more"


def function_source(func: Callable) -> str | None:
    """A task function's source text (``inspect.getsource``: a module's file, or a notebook
    cell's lines as IPython keeps them), or None when there is none or it is too large."""
    target = func
    for _ in range(5):  # a hook task wraps the user's function (``HookCall.fn``)
        if inspect.isfunction(target) or inspect.ismethod(target):
            break
        inner = getattr(target, "fn", None) or getattr(target, "__wrapped__", None)
        if inner is None:
            break
        target = inner
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        return None
    return text if len(text) <= MAX_SOURCE else None


@dataclass
class Version:
    """One version of a task: ``v{number}``, its ``hash`` (a task's code hash; a cell's text
    hash), when it was first registered, whether it is the ``latest`` and the runs still
    unfinished on it (``unfinished`` of them; the first 100 ids in ``runs``)."""

    number: int
    hash: str
    created_at: float
    latest: bool
    unfinished: int = 0
    runs: list[str] = field(default_factory=list)
    task_hashes: list[str] = field(default_factory=list)
    has_source: bool = False

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created_at))
        state = ", latest" if self.latest else ""
        return (f"v{self.number}  {self.hash[:SHORT]}  {when}{state}  "
                f"{self.unfinished} unfinished")


def lineage(target: Any) -> str:
    """The task id whose versions ``target`` (a Task, a task id) names."""
    if isinstance(target, str):
        return target
    value = getattr(target, "lineage", None) or getattr(target, "id", None)
    if not isinstance(value, str):
        raise TypeError(f"dn.versions() takes a task or a task id, not {type(target).__name__}")
    return value


def versions(task: Any, client: Client | None = None) -> list[Version]:
    """The versions of ``task`` (a task, or a task id or cell name), oldest first, each with
    the runs still unfinished on it."""
    out = (client or get_client()).request("GET", "/versions",
                                           query={"task_id": lineage(task)})
    return [Version(v["number"], v["hash"], v["created_at"], v["latest"], v["unfinished"],
                    list(v["runs"]), list(v["task_hashes"]), bool(v["has_source"]))
            for v in out["versions"]]


# ---------------------------------------------------------------------- diffs

def _run_id(run: Any) -> str:
    rid = getattr(run, "id", run)
    if not isinstance(rid, str) or not rid:
        raise TypeError(f"a run id or a RunHandle, not {type(run).__name__}")
    return rid


def _header(src: dict) -> str:
    ver = label(src.get("version"))
    return f"{src['run_id']} ({src.get('task_id')}{' ' + ver if ver else ''})"


def diff_text(a: dict, b: dict) -> str:
    """The unified diff of two runs' sources (the answers of GET /runs/{id}/source), or a
    sentence saying why there is none."""
    for src in (a, b):
        if src.get("source") is None:
            return (f"the source of run {_header(src)} was not recorded: its task was "
                    "registered by an earlier release of durable_nb, which kept only its code")
    va, vb = a.get("version") or {}, b.get("version") or {}
    if va.get("hash") and va.get("hash") == vb.get("hash"):
        return (f"runs {a['run_id']} and {b['run_id']} ran the same version of "
                f"'{a.get('task_id')}' ({label(va)}): no difference")
    if a["source"] == b["source"]:
        return (f"runs {_header(a)} and {_header(b)} ran the same source; their versions "
                "differ in the task's options or in the values its code captured")
    lines = difflib.unified_diff(a["source"].splitlines(True), b["source"].splitlines(True),
                                 fromfile=_header(a), tofile=_header(b))
    return "".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines).rstrip("\n")


def diff(run_a: Any, run_b: Any, client: Client | None = None) -> str:
    """The unified diff of the source of the code two runs ran (run ids or RunHandles), as
    ``durable-nb diff RUN_A RUN_B`` prints it."""
    c = client or getattr(run_a, "_client", None) or get_client()
    a = c.request("GET", f"/runs/{_run_id(run_a)}/source")
    b = c.request("GET", f"/runs/{_run_id(run_b)}/source")
    return diff_text(a, b)


# ---------------------------------------------------------------------- notices

def notice_line(name: str, listing: dict, current: str | None,
                same_source: Callable[[dict], bool] = lambda v: False) -> str | None:
    """"3 runs still on the previous version of 'ingest' (v2): run_a, run_b, run_c" for the
    unfinished runs of versions other than ``current`` (a version hash) in ``listing`` (the
    answer of GET /versions); None when there are none. Versions whose source is the one
    being defined (``same_source``) are left out: re-running an unchanged definition in a
    new kernel makes a new hash, not a new version the user would call one."""
    older = [v for v in listing.get("versions") or []
             if v["hash"] != current and v.get("unfinished") and not same_source(v)]
    if not older:
        return None
    n = sum(v["unfinished"] for v in older)
    ids = [i for v in older for i in v["runs"]]
    shown = ", ".join(ids[:NOTICE_IDS]) + (f" and {n - NOTICE_IDS} more"
                                           if n > NOTICE_IDS else "")
    nums = ", ".join(f"v{v['number']}" for v in older)
    which = "the previous version" if len(older) == 1 else "previous versions"
    return f"{n} run{'s' if n != 1 else ''} still on {which} of '{name}' ({nums}): {shown}"


def _say(line: str) -> None:
    print(f"[durable] {line}", flush=True)


def _in_kernel() -> bool:
    """Whether this is an IPython kernel's own code (not a script, not a run's worker)."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None \
        and _context.current() is None


def _kernel_client() -> Client | None:
    """The client of an IPython kernel that already has an engine: one connected, or one
    the Jupyter server gave it (``DURABLE_NB_URL``); None anywhere else (a worker, a
    script), so that no engine is started just for a notice."""
    if not _in_kernel():
        return None
    if _client._default is not None:
        return _client._default
    if os.environ.get("DURABLE_NB_URL"):
        return _client.connect()
    return None


def notice_redefined(task: Any) -> None:
    """In a kernel, when ``@dn.task`` defines a task whose code differs from the versions
    that runs still execute: one line naming them. Costs one request; never raises."""
    try:
        client = _kernel_client()
        if client is None:
            return
        spec = task.spec()
        for t in (task, *(task.hooks or {}).values()):  # pickled again at the trigger,
            t._spec = None  # with the globals as they are then
        listing = client.request("GET", "/versions", timeout=5, query={
            "task_id": lineage(task), "except_version": spec["hash"]})
        source = spec.get("source")
        digest = _md5(source) if source is not None else None
        line = notice_line(task.id, listing, spec["hash"],
                           lambda v: digest is not None and v.get("source_digest") == digest)
    except Exception:  # a notice must never break the cell that defines a task
        return
    if line:
        _say(line)


def notice_cell(run: Any, task: Any, name: str) -> None:
    """After a ``%%durable`` cell started: one line when runs of the cell's previous text
    are unfinished. Never raises."""
    if not _in_kernel():
        return
    try:
        current = task.spec()["options"].get("source_hash")
        listing = run.client.request("GET", "/versions", timeout=5, query={
            "task_id": lineage(task), "except_version": current})
        line = notice_line(name, listing, current)
    except Exception:
        return
    if line:
        _say(line)


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()


def version_line(detail: dict) -> str | None:
    """``code version v2 (3fa2b1c) of 'ingest'; v3 is the latest`` for a run's detail."""
    v = detail.get("version")
    if not v:
        return None
    newer = "" if v.get("latest") else f"; v{v.get('latest_number')} is the latest"
    return f"code version {label(v)}{newer}"

