"""The one vocabulary of statuses (durable_nb/core/status.py) and the copies the views keep.

The JavaScript views and the Lab extension cannot import Python, so they spell the statuses
out; these tests parse their sources and check every list and grouping against the enums.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import cloudpickle
import pytest

from durable_nb.client import tasks as _tasks
from durable_nb.core import status as _status
from durable_nb.core.status import (
    ACTIVE,
    BUSY,
    CANCELED_OR_EXPIRED,
    FAILURES,
    FILTER_GROUPS,
    RESUMABLE,
    STATUSES,
    TERMINAL,
    VIEW_KIND,
    AttemptOutcome,
    RunStatus,
    ShownState,
    StepStatus,
    WaitOutcome,
)
from durable_nb.engine import engine as _engine
from durable_nb.widgets import timeline as _timeline

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "durable_nb" / "widgets" / "static"
LAB_SRC = ROOT / "labextension" / "src"
LAB_BUILT = ROOT / "durable_nb" / "labextension" / "static"
ALL_VALUES = {*RunStatus, *AttemptOutcome, *StepStatus, *WaitOutcome, *ShownState}


def _block(source: str, name: str) -> str:
    """The text of the declaration of ``name`` (from its name to the ``;`` that ends it)."""
    m = re.search(rf"\b(?:const|type)\s+{name}\b[^=]*=(.*?);\s*\n", source, re.S)
    assert m, f"no declaration of {name}"
    return m.group(1)


def _strings(text: str) -> list[str]:
    return re.findall(r"""["']([^"']*)["']""", text)


def _filters(text: str, constants: dict[str, list[str]]) -> dict[str, set[str]]:
    """label -> statuses of a ``[[value, label], ...]`` list (values may be ``X.join(',')``)."""
    out = {}
    for value, label in re.findall(
            r"""\[\s*((?:["'][^"']*["'])|(?:\w+\.join\(['"],['"]\)))\s*,\s*["']([^"']*)["']\s*\]""",
            text):
        if value[0] in "\"'":
            names = value[1:-1]
            out[label] = set(names.split(",")) if names else set()
        else:
            out[label] = set(constants[value.split(".")[0]])
    return out


# ------------------------------------------------------------------------ the enums

def test_values_never_change():
    """Values are stored in databases and sent over the API."""
    assert [s.value for s in RunStatus] == [
        "QUEUED", "DELAYED", "EXECUTING", "WAITING", "COMPLETED", "FAILED", "CANCELED",
        "CRASHED", "TIMED_OUT", "EXPIRED"]
    assert {s.value for s in AttemptOutcome} == {
        "COMPLETED", "FAILED", "CRASHED", "SUSPENDED", "INTERRUPTED", "CANCELED", "TIMED_OUT"}
    assert {s.value for s in StepStatus} == {"COMPLETED", "FAILED", "ERRORED"}
    assert {s.value for s in WaitOutcome} == {
        "approved", "rejected", "timed_out", "elapsed", "event", "completed", "abandoned",
        "canceled"}


def test_sets_partition_the_statuses():
    assert ACTIVE | TERMINAL == set(RunStatus) and not ACTIVE & TERMINAL
    assert BUSY <= ACTIVE
    assert FAILURES | CANCELED_OR_EXPIRED | {RunStatus.COMPLETED} == TERMINAL
    assert not FAILURES & CANCELED_OR_EXPIRED
    assert RunStatus.EXPIRED in CANCELED_OR_EXPIRED  # never started: nothing failed
    assert STATUSES == ("QUEUED", "DELAYED", "EXECUTING", "WAITING", "CANCELED", "COMPLETED",
                        "CRASHED", "EXPIRED", "FAILED", "TIMED_OUT")
    assert {s for group in FILTER_GROUPS.values() for s in group} == set(RunStatus)
    assert set(VIEW_KIND) == {s.value for s in ALL_VALUES}


def test_members_are_plain_strings_outside_the_process():
    """Equal to, hashed and formatted as their value; pickled (journal, stored resolutions,
    worker messages) as str, so nothing stored refers to the module."""
    s = WaitOutcome.APPROVED
    assert s == "approved" and hash(s) == hash("approved") and {"approved": 1}[s] == 1
    assert f"{s}|{s:>9}" == "approved| approved" and str(s) == "approved"
    assert json.dumps({"o": s}) == '{"o": "approved"}'
    for dump in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dump({"outcome": s, "status": RunStatus.QUEUED}))
        assert back == {"outcome": "approved", "status": "QUEUED"}
        assert {type(v) for v in back.values()} == {str}
        assert b"_status" not in dump(s)
    assert _status.sql_list({RunStatus.FAILED, RunStatus.CANCELED}) == "'CANCELED','FAILED'"
    assert _status.csv(BUSY) == "QUEUED,EXECUTING"


def test_old_names_still_import():
    assert _engine.TERMINAL == TERMINAL and _engine.STATUSES == STATUSES
    assert set(_tasks.TERMINAL) == TERMINAL


def test_timeline_colors_every_value():
    """Each value has its category; canceled and expired share one, failures share one."""
    listed = {s for _, statuses in _timeline.CATEGORIES.values() for s in statuses}
    assert listed == {s.value for s in ALL_VALUES}
    cat = _timeline.category
    assert len({cat(s) for s in CANCELED_OR_EXPIRED}) == 1
    assert len({cat(s) for s in FAILURES}) == 1
    assert cat(RunStatus.EXPIRED) != cat(RunStatus.FAILED)


# ------------------------------------------------------------------- the JavaScript copies

def test_run_graph_js_agrees():
    src = (STATIC / "run_graph.js").read_text()
    assert set(_strings(_block(src, "TERMINAL"))) == TERMINAL
    colors = set(re.findall(r"(\w+):\s*\"#", _block(src, "STATUS_COLORS")))
    shown = {*RunStatus, *AttemptOutcome, *StepStatus, *ShownState}
    assert colors == {s.value for s in shown}
    kinds = dict(re.findall(r"(\w+):\s*\"(\w+)\"", _block(src, "KIND_OF")))
    # statusKind upper-cases what it is given, so wait outcomes are listed upper-case
    assert kinds == {v.upper(): k for v, k in VIEW_KIND.items()}


def test_widgets_js_filters_agree():
    src = (STATIC / "widgets.js").read_text()
    filters = _filters(_block(src, "STATUS_FILTERS"), {})
    assert filters.pop("all statuses") == set()
    for label, statuses in FILTER_GROUPS.items():
        assert filters.pop(label) == set(statuses), label
    for label, statuses in filters.items():  # the rest: one status each
        assert statuses == {label.upper()} and label.upper() in STATUSES


# ------------------------------------------------------------------ the Lab extension copies

def _api_ts() -> tuple[str, dict[str, list[str]]]:
    src = (LAB_SRC / "api.ts").read_text()
    names = ("ACTIVE", "FAILURES", "CANCELED_OR_EXPIRED", "RESUMABLE")
    return src, {n: _strings(_block(src, n)) for n in names}


def test_lab_api_ts_agrees():
    src, constants = _api_ts()
    assert _strings(_block(src, "RunStatus")) == [s.value for s in RunStatus]
    assert set(constants["ACTIVE"]) == ACTIVE
    assert set(constants["FAILURES"]) == FAILURES
    assert set(constants["CANCELED_OR_EXPIRED"]) == CANCELED_OR_EXPIRED
    assert set(constants["RESUMABLE"]) == RESUMABLE


def test_lab_panel_filters_agree():
    _, constants = _api_ts()
    filters = _filters(_block((LAB_SRC / "panel.ts").read_text(), "FILTERS"), constants)
    assert filters.pop("All") == set()
    assert filters.pop("Waiting") == {RunStatus.WAITING}
    assert filters == {label.capitalize(): set(s) for label, s in FILTER_GROUPS.items()}


def test_lab_build_is_current():
    """The built panel (what Jupyter serves) has the labels of panel.ts: it was rebuilt."""
    bundles = list(LAB_BUILT.glob("*.js")) if LAB_BUILT.is_dir() else []
    if not bundles:
        pytest.skip("the Lab extension is not built (cd labextension && npm run build)")
    built = "".join(p.read_text(errors="replace") for p in bundles)
    _, constants = _api_ts()
    filters = _filters(_block((LAB_SRC / "panel.ts").read_text(), "FILTERS"), constants)
    missing = [label for label in filters if f'"{label}"' not in built
               and f"'{label}'" not in built]
    assert not missing, f"rebuild the Lab extension: {missing} not in the built panel"
