"""Replay divergence: a re-executed task calling its steps differently from the record.

After a crash, a retry or a wait, a task runs again from the top and each recorded step
returns its recorded output (a cell: the statements after its last checkpoint). That is
right only if the code makes the same calls. ``ReplayCheck`` checks two things:

- **arguments**: a recorded step key called with arguments whose canonical hash
  (``worker.arghash``) differs from the recorded one. Raised before anything runs.
- **order**: while the attempt is still replaying (no step has run anew yet), a step that
  was never recorded is called where the record has another one: the recorded steps,
  in the order their first tries started (steps called inside another step left out),
  must come first. It is raised when the new step returns (or at the next step call, or
  when the attempt ends), unless the recorded step it stood in for was called meanwhile,
  since a step that crashed midway runs again and replays the steps it had called.
  Checked on the attempt's own thread only: steps that threads call side by side may
  start in any order.

A divergence raises ``ReplayDivergence`` (the run fails at once, without retry: a retry
meets the same record), naming the step, the recorded and the new call and the user's
line; it stays raised at every later step call, so that code catching it does not go on.
With ``@dn.task(on_divergence="warn")`` it is a ``ReplayDivergenceWarning`` and a line in
the run's stderr instead, and a recorded step returns its recorded output. A call whose
arguments have no canonical hash (a connection, a lock) is not checked.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from ..core.codepickle import cell_label
from ..core.errors import ReplayDivergence, ReplayDivergenceWarning
from . import previews
from .arghash import args_hash

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_PKG_REAL = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep
_MAX_CALL = 300  # characters of a call in a divergence's message
_REPR_FIELD = re.compile(r'"repr":\s*("(?:[^"\\]|\\.)*")')

StepCalls = Mapping[str, tuple[float, float, str | None, str | None]]


def top_level_order(calls: StepCalls) -> list[str]:
    """Recorded step keys in the order their first tries started, without those that ran
    inside another step (their span lies in an earlier step's span)."""
    spans = sorted(((c[0], -c[1], k) for k, c in calls.items()), key=lambda t: (t[0], t[1]))
    order: list[str] = []
    reach = float("-inf")
    for _start, neg_end, key in spans:
        if -neg_end <= reach:
            continue
        order.append(key)
        reach = -neg_end
    return order


class ReplayCheck:
    """The record of an attempt's run and the check of each step call against it."""

    def __init__(self, msg: Mapping[str, Any]):
        calls: StepCalls = msg.get("step_calls") or {}
        self.calls = calls
        self.mode = msg.get("on_divergence") or "raise"
        self.hashes: dict[str, str | None] = {}  # step key -> the hash its new tries record
        self._order = top_level_order(calls)
        self._pos = 0
        self._seen: set[str] = set()
        # a resumed cell does not call again the steps of its checkpointed statements
        counts = (msg.get("checkpoint") or {}).get("counts") or {}
        self._restored: dict[str, int] = dict(counts)
        self._replaying = bool(calls)
        self._thread = threading.get_ident()
        # a new step where a recorded one was expected: (its key, that one, where, its call)
        self._pending: tuple[str, str, Where, str] | None = None
        self.error: ReplayDivergence | None = None

    def call(self, key: str, name: str, args: tuple, kwargs: dict, recorded: bool,
             nested: bool) -> str | None:
        """Check a call of step ``key``; returns the hash its new try records."""
        if self.error is not None:
            raise self.error  # code that caught the divergence does not go on
        main = not nested and threading.get_ident() == self._thread
        if main:
            self._settle()
        if recorded:
            self._seen.add(key)
            old = self.calls.get(key, (0.0, 0.0, None, None))
            digest = args_hash(args, kwargs) if old[2] is not None else None
            if digest is not None and digest != old[2]:
                where = user_frame()
                self._diverged(ReplayDivergence(
                    key, _recorded_call(name, old[3]), _new_call(name, args, kwargs),
                    where.text), where)
            return digest
        if main and self._replaying:
            expected = self._expected()
            if expected is not None and expected != key:
                self._pending = (key, expected, user_frame(), _new_call(name, args, kwargs))
        self._seen.add(key)
        self._replaying = False
        digest = self.hashes[key] = args_hash(args, kwargs)
        return digest

    def finish(self) -> None:
        """The attempt's code returned: a pending order divergence is raised now."""
        if self.error is not None:
            raise self.error
        self._settle()

    def _settle(self) -> None:
        """A new step stood where a recorded one was expected: a divergence, unless that
        recorded step was called meanwhile (inside the new one)."""
        pending, self._pending = self._pending, None
        if pending is None or pending[1] in self._seen:
            return
        key, expected, where, call = pending
        self._diverged(ReplayDivergence(key, expected, call, where.text, kind="step"), where)

    def _expected(self) -> str | None:
        """The first recorded step (in order) this attempt has not called yet."""
        while self._pos < len(self._order) and self._done(self._order[self._pos]):
            self._pos += 1
        return self._order[self._pos] if self._pos < len(self._order) else None

    def _done(self, key: str) -> bool:
        if key in self._seen:
            return True
        name, _, n = key.rpartition("#")
        return n.isdigit() and int(n) <= self._restored.get(name, 0)

    def _diverged(self, exc: ReplayDivergence, where: Where) -> None:
        if self.mode != "warn":
            self.error = exc
            raise exc
        # shown on the run's stderr (its logs, the widget) as a warning of the user's line;
        # a fresh registry: each divergence shows, also when one repeats in this process
        warnings.warn_explicit(f"{exc} (on_divergence=\"warn\": the run goes on)",
                               ReplayDivergenceWarning, where.label, where.lineno,
                               registry={})


@dataclass(frozen=True)
class Where:
    """The user's line that made a step call."""

    label: str  # its file, or its notebook cell's label (``Cell In[5]``)
    lineno: int
    text: str  # as a divergence names it: ``File "Cell In[5]", line 7, in f: x()``


def user_frame(frame: FrameType | None = None) -> Where:
    """The user's frame that called the step: the first frame outside durable_nb (and
    not a step's wrapper, which is pickled by value with a step from a notebook)."""
    f: FrameType | None = frame or sys._getframe(1)
    while f is not None:
        filename = f.f_code.co_filename
        if not filename.startswith((_PKG, _PKG_REAL)) and not _step_wrapper(f.f_code):
            label = cell_label(filename) or filename
            source = linecache.getline(filename, f.f_lineno).strip()
            text = f'File "{label}", line {f.f_lineno}, in {f.f_code.co_name}'
            return Where(label, f.f_lineno, f"{text}: {source}" if source else text)
        f = f.f_back
    return Where("<unknown>", 0, "")


def _step_wrapper(code: CodeType) -> bool:
    """The code of ``client.tasks.step``'s wrappers, wherever it was unpickled from."""
    return code.co_name in ("wrapper", "async_wrapper") and "sname" in code.co_freevars


def _new_call(name: str, args: tuple, kwargs: dict) -> str:
    parts = [previews.safe_repr(a) for a in args]
    parts += [f"{k}={previews.safe_repr(v)}" for k, v in kwargs.items()]
    return _short(f"{name}({', '.join(parts)})")


def _recorded_call(name: str, preview: str | None) -> str:
    """The recorded call as text, from (the start of) its JSON preview."""
    if not preview:
        return f"{name}(...) (its arguments were not recorded)"
    try:
        data = json.loads(preview)
        parts = [a.get("repr", "?") for a in data.get("args", [])]
        parts += [f"{k}={v.get('repr', '?')}" for k, v in data.get("kwargs", {}).items()]
        return _short(f"{name}({', '.join(parts)})")
    except (ValueError, AttributeError, TypeError):  # cut short: its reprs, as far as they go
        reprs = [json.loads(m.group(1)) for m in _REPR_FIELD.finditer(preview)]
        return _short(f"{name}({', '.join(reprs)}, ...)")


def _short(text: str) -> str:
    return text if len(text) <= _MAX_CALL else text[:_MAX_CALL - 4] + "...)"
