"""``%%durable fork RUN --from N`` and ``%durable fork RUN`` in a real kernel against a real
engine: a failed cell run is forked with its text edited; the statements up to N do not run
again (marker files), their values come from the checkpoint, and the edited statements run,
with the notebook variables the first N statements only read taken as they are now."""

from __future__ import annotations

import pytest
from test_magics import run_id

from durable_nb.client.client import Client

SOURCE = ("hit('s1')\n"
          "rows = [1, 2, 3]\n"
          "total = sum(rows) * scale\n"
          "ratio = total / 0\n")
EDITED = ("hit('s1')\n"
          "rows = [1, 2, 3]\n"
          "total = sum(rows) * scale\n"
          "hit('s3')\n"
          "ratio = total / len(rows)\n")


@pytest.fixture
def api(engine_env, kernel):
    return Client(engine_env["DURABLE_NB_URL"], engine_env["DURABLE_NB_TOKEN"])


def _hits(scratch, name: str) -> int:
    p = scratch / name
    return p.stat().st_size if p.exists() else 0


def _failed_cell(kernel, api, scratch) -> str:
    kernel.ok("import os\n"
              "def hit(name):\n"
              "    with open(os.path.join(scratch, name), 'a') as f:\n"
              "        f.write('x')\n"
              "scale = 10\n")
    rid = run_id(kernel.ok("%%durable --name fork-me\n" + SOURCE).results[0])
    done = api.request("GET", f"/runs/{rid}/result", query={"timeout": 60}, timeout=90)
    assert done["status"] == "FAILED" and _hits(scratch, "s1") == 1
    return rid


def test_a_cell_is_forked_with_edited_text_from_a_statement(kernel, api, scratch):
    rid = _failed_cell(kernel, api, scratch)
    kernel.ok("scale = 100\nrows = ['from the notebook']")  # the user changed both since
    out = kernel.ok(f"%%durable fork {rid} --from 2 --wait\n" + EDITED)
    fork = run_id(out.stdout)
    assert f"fork {fork} of run {rid}: statements 1–2 restored from its checkpoint, " \
           "statements 3–5 run now" in out.stdout
    assert "COMPLETED" in out.stdout
    assert _hits(scratch, "s1") == 1, "statements up to N do not run again"
    assert _hits(scratch, "s3") == 1, "the edited statements run"
    assert kernel.value("rows") == [1, 2, 3], "assigned by statement 2: from the checkpoint"
    assert kernel.value("total") == 600, "scale only read there: the notebook's value now"
    assert kernel.value("ratio") == 200
    info = api.request("GET", f"/runs/{fork}")
    assert (info["fork_of"], info["fork_step"], info["kind"]) == (rid, "2", "cell")
    assert [r["id"] for r in info["fork_tree"]["runs"]] == [rid, fork]

    # the line form: the text the run ran, from the checkpoint after statement 4
    out = kernel.ok(f"%durable fork {fork} --from 4 --wait")
    again = run_id(out.stdout.split("fork ", 1)[1])
    assert f"fork {again} of run {fork}: the checkpoint after statement 4 restored" \
        in out.stdout
    assert (_hits(scratch, "s1"), _hits(scratch, "s3")) == (1, 1), "statement 5 only"
    assert api.request("GET", f"/runs/{again}")["fork_step"] == "4"


def test_fork_mistakes_are_one_line_usage_errors(kernel, api, scratch):
    rid = _failed_cell(kernel, api, scratch)
    out = kernel.run(f"%%durable fork {rid} --from 7\nx = 1\n")
    assert out.ename == "UsageError" and "--from 7: the cell has 1 statements" in out.evalue
    out = kernel.run(f"%%durable fork {rid} --from 2 --schedule 1m\nx = 1\n")
    assert out.ename == "UsageError" and "neither --schedule" in out.evalue
    out = kernel.run("%%durable fork --from 2\nx = 1\n")
    assert out.ename == "UsageError" and "name the cell run to fork" in out.evalue
    out = kernel.run(f"%%durable fork {rid} --from 9 --wait\n" + EDITED)
    assert out.ename == "UsageError" and "--from 9: the cell has 5 statements" in out.evalue
    out = kernel.run(f"%durable fork {rid} --from 9")
    assert "no checkpoint after statement 9" in "\n".join(out.traceback) + out.evalue
    kernel.ok("@dn.task(id='fork-magic-task')\n"
              "def tiny():\n"
              "    return 1\n"
              "task_run = tiny.trigger()\n"
              "task_run.result(timeout=60)\n")
    out = kernel.run("%%durable fork task_run\nx = 1\n")
    assert out.ename == "UsageError" and "is a task run: fork it with `%durable fork" \
        in out.evalue


def test_a_fork_takes_the_options_of_durable_resources_included(kernel, api, scratch):
    rid = _failed_cell(kernel, api, scratch)
    kernel.ok("import sqlite3")
    out = kernel.ok(f"%%durable fork {rid} --from 3 --wait --name forked-with-db "
                    "--resource db=\"sqlite3.connect(':memory:')\"\n"
                    + SOURCE.replace("total / 0", "db.execute('select ?', (total,)).fetchone()"))
    assert "COMPLETED" in out.stdout and _hits(scratch, "s1") == 1
    assert kernel.value("ratio") == (60,), "total from the checkpoint, the query in the fork"
    fork = api.request("GET", f"/runs/{run_id(out.stdout)}")
    assert (fork["task_id"], fork["fork_of"], fork["fork_step"]) == ("forked-with-db", rid, "3")
