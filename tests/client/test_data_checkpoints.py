"""Data-sized namespaces in %%durable cells, against a real engine and workers: a
checkpoint writes what changed, a killed worker resumes from the files, the kernel brings
the frame back, and a damaged file is an error rather than wrong data."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pandas as pd
import pytest
from _support import count

import durable_nb as dn
from durable_nb.client.cells import fetch_variables, trigger_cell
from durable_nb.core.checkpoints import PIECE, entry_blobs

FRAME = '''
import os, signal
import numpy as np, pandas as pd
df = pd.DataFrame(np.random.default_rng(0).random((1_000_000, 8)), columns=list("abcdefgh"))
x = 1
x = 2
df["c"] = df["c"] + 1
if bump(marks, "frame") == 1:
    os.kill(os.getpid(), signal.SIGKILL)
total = float(df["c"].sum())
'''


def _expected() -> pd.DataFrame:
    df = pd.DataFrame(np.random.default_rng(0).random((1_000_000, 8)), columns=list("abcdefgh"))
    df["c"] = df["c"] + 1
    return df


def _new_bytes(run_id: str) -> dict[int, int]:
    """Bytes each checkpoint added, by statement (the last attempt's, after a resume)."""
    rows = dn.sql(f"select attributes from span_records where run_id = '{run_id}' "
                  "and kind = 'checkpoint' order by start_at")
    out: dict[int, int] = {}
    for (attrs,) in rows:
        a = json.loads(attrs)
        out[a["statement"]] = a["new_bytes"]
    return out


@pytest.mark.slow
def test_a_frame_checkpoint_writes_what_changed_and_survives_a_kill(engine, marks):
    from _support import bump

    run = trigger_cell(FRAME, {"bump": bump, "marks": str(marks)}, name="frame")
    out = run.result(timeout=120)
    assert out["statements"] == 8
    assert [a["outcome"] for a in run.attempts] == ["CRASHED", "COMPLETED"]
    assert count(marks, "frame") == 2
    added = _new_bytes(run.id)
    assert added[3] >= 64_000_000, "the frame, once"
    assert added[4] < 1000 and added[5] < 1000, "trivial statements write no frame data"
    column = 8_000_000
    assert column <= added[6] <= column + 2 * PIECE, "a changed column writes about itself"
    assert added[7] < 1000, "the frame restored after the kill is found unchanged"
    values = fetch_variables(run, ["df", "total"])
    pd.testing.assert_frame_equal(values["df"], _expected())
    assert values["total"] == pytest.approx(float(_expected()["c"].sum()))
    folder = engine.db.with_name(engine.db.name + ".blobs")
    stored = sum(os.path.getsize(folder / f) for f in os.listdir(folder))
    assert stored < 64_000_000 + column + 4 * PIECE, "each piece is stored once"


def test_pieces_come_through_the_api_for_a_remote_kernel(engine):
    run = trigger_cell("import numpy as np\na = np.arange(1_000_000)\n", {}, name="arr")
    run.result(timeout=60)
    cp = run.client.request("GET", f"/runs/{run.id}/checkpoint", query={"values": 1})
    entry = cp["variables"]["a"]["entry"]
    assert cp["variables"]["a"]["size"] >= 8_000_000
    folder = cp["blob_dir"]
    for h in entry_blobs(entry):
        got = run.client.request("GET", f"/runs/{run.id}/checkpoint/pieces/{h}")
        data = base64.b64decode(got["data_b64"])
        if h in cp["pieces_b64"]:
            assert data == base64.b64decode(cp["pieces_b64"][h])
        else:
            with open(os.path.join(folder, h), "rb") as f:
                assert data == f.read()
    other = trigger_cell("b = 1\n", {}, name="other")
    other.result(timeout=60)
    for bad in (entry["b"][0][0], "0" * 32, "..%2F..%2Fetc"):
        with pytest.raises(dn.ApiError, match="has no piece|no API route"):
            other.client.request("GET", f"/runs/{other.id}/checkpoint/pieces/{bad}")


FAILS_ONCE = '''
import numpy as np
a = np.random.default_rng(3).random(1_000_000)
if bump(marks, "fails") == 1:
    raise ConnectionError("the model server is busy")
s = float(a.sum())
'''


def test_a_damaged_piece_is_a_clear_error_not_wrong_data(engine, marks):
    from _support import bump

    run = trigger_cell(FAILS_ONCE, {"bump": bump, "marks": str(marks)}, name="damaged")
    with pytest.raises(dn.RunFailed, match="model server is busy"):
        run.result(timeout=60)
    cp = run.client.request("GET", f"/runs/{run.id}/checkpoint", query={"values": 1})
    files = [h for h in entry_blobs(cp["variables"]["a"]["entry"]) if h not in cp["pieces_b64"]]
    path = os.path.join(cp["blob_dir"], files[0])
    with open(path, "r+b") as f:  # one flipped bit on disk
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 4]))
    with pytest.raises(dn.DurableError, match="does not hold what was written"):
        fetch_variables(run, ["a"])
    run.resume()
    with pytest.raises(dn.RunFailed) as err:
        run.result(timeout=60)
    msg = err.value.error["message"]
    assert "checkpoint after statement 2 cannot be restored" in msg, msg
    assert "does not hold what was written" in msg and "new run" in msg
    assert count(marks, "fails") == 1, "nothing ran on damaged data"


def test_sql_queries_a_checkpointed_frame_by_run_and_name(engine):
    src = ("import pandas as pd\n"
           "sales = pd.DataFrame({'region': ['n', 's', 'n', 'e'], 'amount': [1.5, 2.0, 3.5, 4.0]})\n"
           "note = 'not a frame'\n")
    run = trigger_cell(src, {}, name="sales")
    run.result(timeout=60)
    res = dn.sql("select region, sum(amount) as total from "
                 f"checkpoint_frame('{run.id}', 'sales') group by region order by region")
    assert res.columns == ["region", "total"]
    assert res.rows == [("e", 4.0), ("n", 5.0), ("s", 2.0)]
    joined = dn.sql(f"select count(*) from checkpoint_frame('{run.id}', 'sales') a "
                    f"join checkpoint_frame('{run.id}', 'sales') b using (region)")
    assert joined.rows == [(6,)]
    with pytest.raises(TypeError, match="'note'\\): the variable is a builtins.str, not a"):
        dn.sql(f"select * from checkpoint_frame('{run.id}', 'note')")
    with pytest.raises(dn.ApiError, match="no variable 'nope'"):
        dn.sql(f"select * from checkpoint_frame('{run.id}', 'nope')")
    with pytest.raises(ValueError, match="cannot read the store's tables"):
        dn.sql(f"select * from checkpoint_frame('{run.id}', 'sales'), runs")
