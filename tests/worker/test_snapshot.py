"""A namespace as content-addressed pieces: what is written, what is skipped, what comes
back, and what a damaged piece gives (``worker.snapshot`` with ``core.checkpoints``)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from durable_nb.core.checkpoints import (
    EXTERNAL_BLOB_BYTES,
    PIECE,
    CorruptCheckpoint,
    file_reader,
    load,
    manifest_blobs,
)
from durable_nb.core.errors import NotPicklable, PayloadTooLarge
from durable_nb.worker import piecefiles, snapshot


def _store(snap: snapshot.Snapshot, folder: str, rows: dict[str, bytes]) -> dict[str, int]:
    """Write a snapshot as the worker and engine do: files, then the small pieces as rows."""
    files = piecefiles.write_files(snap, folder)
    rows.update({h: bytes(v) for h, v in snap.new.items() if h not in files})
    return files


def _restore(snap: snapshot.Snapshot, folder: str, rows: dict[str, bytes],
             sizes: dict[str, int]) -> dict:
    read, placed = file_reader(folder, rows), []
    out = {n: load(n, e, read, sizes, placed) for n, e in snap.entries.items()}
    snapshot.remember(placed)  # as a resuming worker does
    return out


def _frame(rows: int = 400_000, cols: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(rng.random((rows, cols)), columns=[f"c{i}" for i in range(cols)])


def test_a_frame_round_trips_and_an_unchanged_one_writes_nothing(tmp_path):
    folder, rows = str(tmp_path / "blobs"), {}
    df = _frame()
    ns = {"df": df, "x": 1, "s": "text"}
    first = snapshot.take(ns, set(), 1)
    assert first.new_bytes() >= df.values.nbytes  # the frame's memory, out of band
    files = _store(first, folder, rows)
    sizes = {**files, **{h: len(d) for h, d in rows.items()}}
    stored = set(files) | set(rows)

    again = snapshot.take({**ns, "x": 2}, stored, 2)  # a trivial statement later
    assert again.new_bytes() < 200  # only the small pickle of x
    back = _restore(first, folder, rows, sizes)
    pd.testing.assert_frame_equal(back["df"], df)
    assert back["x"] == 1 and back["s"] == "text"
    back["df"]["c1"] += 1  # the restored frame is writable, as the original was


def test_one_changed_column_writes_about_that_column(tmp_path):
    folder, rows = str(tmp_path / "blobs"), {}
    df = _frame(rows=1_000_000, cols=8)  # 64 MB; one column is 8 MB of it
    first = snapshot.take({"df": df}, set(), 1)
    stored = set(_store(first, folder, rows)) | set(rows)
    df["c3"] = df["c3"] + 1
    second = snapshot.take({"df": df}, stored, 2)
    column = df["c3"].values.nbytes
    assert column <= second.new_bytes() <= column + 2 * PIECE


def test_files_are_private_and_small_pieces_stay_rows(tmp_path):
    folder, rows = str(tmp_path / "blobs"), {}
    snap = snapshot.take({"a": np.arange(1_000_000), "b": [1, 2, 3]}, set(), 1)
    files = _store(snap, folder, rows)
    assert files and all(size >= EXTERNAL_BLOB_BYTES for size in files.values())
    assert rows and all(len(d) < EXTERNAL_BLOB_BYTES for d in rows.values())
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for h in files:
        assert stat.S_IMODE(os.stat(os.path.join(folder, h)).st_mode) == 0o600
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert manifest_blobs(snap.entries) == set(files) | set(rows)


def test_a_non_contiguous_array_is_pickled_in_band(tmp_path):
    folder, rows = str(tmp_path / "blobs"), {}
    a = np.arange(2_000_000, dtype=np.float64).reshape(1000, 2000)[:, ::2]
    snap = snapshot.take({"a": a}, set(), 1)
    files = _store(snap, folder, rows)
    sizes = {**files, **{h: len(d) for h, d in rows.items()}}
    np.testing.assert_array_equal(_restore(snap, folder, rows, sizes)["a"], a)


def test_a_damaged_or_missing_piece_is_an_error_not_wrong_data(tmp_path):
    folder, rows = str(tmp_path / "blobs"), {}
    snap = snapshot.take({"a": np.arange(1_000_000)}, set(), 1)
    files = _store(snap, folder, rows)
    sizes = {**files, **{h: len(d) for h, d in rows.items()}}
    h = next(iter(files))
    path = os.path.join(folder, h)
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(CorruptCheckpoint, match=f"variable 'a': stored piece {h} does not hold"):
        _restore(snap, folder, rows, sizes)
    os.unlink(path)
    with pytest.raises(CorruptCheckpoint, match="is missing"):
        _restore(snap, folder, rows, sizes)


def test_limits_and_unpicklable_values_are_clear_errors(tmp_path):
    snap = snapshot.take({"a": np.zeros(3_000_000)}, set(), 4)
    with pytest.raises(PayloadTooLarge, match=r"after statement 4 is 22\.9 MB.*'a' 22\.9 MB"):
        snapshot.check_size(snap.sizes, 4, 10_000_000)
    snapshot.check_size(snap.sizes, 4, 0)  # no fixed limit
    with pytest.raises(NotPicklable, match=r"variable 'g'.*--transient g"):
        snapshot.take({"g": (i for i in range(3))}, set(), 2)


def test_a_restored_value_is_unchanged_for_the_next_checkpoint(tmp_path):
    """After a resume the value lives at a new address; it is placed so that its pieces
    are cut where they were, and the first checkpoint after the resume writes nothing."""
    folder, rows = str(tmp_path / "blobs"), {}
    a = np.random.default_rng(2).random(1_500_000)[3:]  # 12 MB, not at a piece boundary
    first = snapshot.take({"a": a}, set(), 1)
    files = _store(first, folder, rows)
    sizes = {**files, **{h: len(d) for h, d in rows.items()}}
    back = _restore(first, folder, rows, sizes)["a"]
    np.testing.assert_array_equal(back, a)
    assert snapshot.take({"a": back}, set(files) | set(rows), 2).new_bytes() == 0


def test_pieces_named_again_are_written_even_when_a_file_seems_there(tmp_path):
    folder, rows = str(tmp_path / "blobs"), {}
    snap = snapshot.take({"a": np.arange(1_000_000)}, set(), 1)
    files = _store(snap, folder, rows)
    h = next(iter(files))
    path = os.path.join(folder, h)
    with open(path, "r+b") as f:  # same size, other bytes: only a rewrite repairs it
        f.write(b"\0" * 64)
    piecefiles.write_files(snap, folder)
    with open(path, "rb") as f:
        assert f.read(64) == b"\0" * 64, "a file of the right size is taken as written"
    piecefiles.write_files(snap, folder, again=[h])
    sizes = {**files, **{k: len(d) for k, d in rows.items()}}
    np.testing.assert_array_equal(_restore(snap, folder, rows, sizes)["a"], np.arange(1_000_000))
