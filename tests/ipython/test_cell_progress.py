"""dn.progress, tqdm and dn.metadata in `%%durable` cells run from a real kernel against a
real engine: a tqdm loop feeds the run's progress, and a cell's metadata and progress are
read live while it waits and stay whole after it resumes."""

from __future__ import annotations

import os

from _support import wait_for
from test_magics import run_id


def test_a_tqdm_loop_in_a_durable_cell_feeds_its_progress(kernel):
    out = kernel.ok("%%durable --wait --name tqdm-cell\n"
                    "from tqdm.auto import tqdm\n"
                    "import time\n"
                    "total = 0\n"
                    "for i in tqdm(range(40), desc='cells'):\n"
                    "    time.sleep(0.005)\n"
                    "    total += i\n"
                    "dn.metadata.set('total', total)\n")
    assert "COMPLETED" in out.stdout, out.text
    rid = run_id(out.text)
    progress = kernel.value(f"dn.get_run({rid!r}).progress")
    assert (progress["done"], progress["total"], progress["text"]) == (40, 40, "cells")
    assert kernel.value(f"dn.get_run({rid!r}).metadata") == {"total": sum(range(40))}


def test_a_cells_reports_are_live_while_it_waits_and_whole_after(kernel):
    event = f"cell-go-{os.urandom(4).hex()}"
    out = kernel.ok("%%durable --name reporting-cell\n"
                    "dn.metadata.set('phase', 'one')\n"
                    "dn.metadata.increment('statements')\n"
                    "dn.progress(5, text='rows so far')\n"
                    f"dn.wait_for_event({event!r})\n"
                    "dn.metadata.increment('statements')\n")
    rid = run_id(out.text)
    wait_for(lambda: kernel.value(f"dn.get_run({rid!r}).status") == "WAITING", 30,
             "the cell to wait for its event")
    progress = kernel.value(f"dn.get_run({rid!r}).progress")
    assert (progress["done"], progress["total"], progress["text"]) == (5, None, "rows so far")
    assert kernel.value(f"dn.get_run({rid!r}).metadata") == {"phase": "one", "statements": 1}
    kernel.ok(f"dn.send_event({event!r})")
    wait_for(lambda: kernel.value(f"dn.get_run({rid!r}).status") == "COMPLETED", 30,
             "the cell to complete")
    # the statement that waited ran again after the event; what came before it did not
    assert kernel.value(f"dn.get_run({rid!r}).metadata") == {"phase": "one", "statements": 2}
