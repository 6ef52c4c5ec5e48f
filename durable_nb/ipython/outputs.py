"""A run's output records (log rows of the stream "display", see ``worker.display``) shown
in a kernel as real display outputs of the cell that follows the run."""

from __future__ import annotations

import itertools
import json
from typing import Any

_followers = itertools.count(1)


def parse(line: str) -> dict | None:
    """The record of a "display" log line; None for one that is not a record."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("op") in ("display", "update",
                                                              "clear") else None


def collapse(records: list[dict | None], known: set[str]) -> list[dict | None]:
    """``records`` (None for rows that are not records) as a notebook shows them in the end,
    one for one: a display carries the data of its id's last update, and those updates are
    None. An update of an id whose display is neither here nor in ``known`` (shown already)
    becomes a display: its display was left out of a bounded backfill."""
    out: list[dict | None] = []
    last: dict[str, int] = {}  # id -> index in out of its display, since the last clear
    cleared = False
    for rec in records:
        rid = rec.get("id") if rec is not None else None
        if rec is None or rec["op"] == "clear":
            if rec is not None:
                last.clear()
                cleared = True
            out.append(rec)
        elif rec["op"] == "update" and rid in last:
            shown = out[last[rid]]
            assert shown is not None
            out[last[rid]] = {**shown, "data": rec.get("data"), "metadata": rec.get("metadata")}
            out.append(None)
        elif rec["op"] == "update" and (not rid or rid in known or cleared):
            out.append(rec)
        else:
            if rid:
                last[rid] = len(out)
            out.append({**rec, "op": "display"})
    return out


class Outputs:
    """The displays one follower of a run makes in its cell.

    Each display is an output of the cell with a display id of this follower's own (so that
    two runs, or two views of one run, never update each other's outputs), and an update
    of the run's display id updates the outputs that showed it. A progress bar is one
    display, updated in place.

    ``clear_output()`` in the run cannot remove the cell's outputs without removing the
    run's own view and notices too; it empties the displays the run made here instead
    (printed text stays), and the next displays take their places again, so a loop that
    clears and displays updates one place. ``wait=True`` empties them when the next output
    arrives, as in a notebook."""

    def __init__(self, run_id: str):
        self.prefix = f"durable-{run_id}-{next(_followers)}"
        self._places: list[str] = []  # display ids of the outputs made, in order
        self._used = 0  # how many of them show something since the last clear
        self._ids: dict[str, list[str]] = {}  # the run's display id -> places showing it
        self._clear_waits = False

    def known(self) -> set[str]:
        return set(self._ids)

    def before_output(self) -> None:
        """Another output (text) arrives: a waiting clear happens now."""
        if self._clear_waits:
            self._clear()

    def show(self, rec: dict) -> None:
        """Render one record."""
        if rec["op"] == "clear":
            if rec.get("wait"):
                self._clear_waits = True
            else:
                self._clear()
            return
        self.before_output()
        data, meta, rid = rec.get("data") or {}, rec.get("metadata") or {}, rec.get("id")
        if rec["op"] == "update":
            for place in self._ids.get(rid, []) if rid else []:
                _update(place, data, meta)
            return
        if self._used < len(self._places):  # an emptied place
            place = self._places[self._used]
            _update(place, data, meta)
        else:
            place = f"{self.prefix}-{len(self._places) + 1}"
            self._places.append(place)
            _display(place, data, meta)
        self._used += 1
        if rid:
            self._ids.setdefault(rid, []).append(place)

    def _clear(self) -> None:
        self._clear_waits = False
        for place in self._places[:self._used]:
            _update(place, {"text/plain": ""}, {})
        self._used = 0
        self._ids.clear()


def _display(place: str, data: dict, meta: dict) -> Any:
    from IPython.display import display

    return display(data, raw=True, metadata=meta, display_id=place)


def _update(place: str, data: dict, meta: dict) -> None:
    from IPython.display import update_display

    update_display(data, raw=True, metadata=meta, display_id=place)

