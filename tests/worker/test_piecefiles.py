"""Piece files: written private and durable, in a thread while hashing goes on, and a
failed write leaves no partial file behind (``worker.piecefiles``)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from durable_nb.core.checkpoints import EXTERNAL_BLOB_BYTES
from durable_nb.worker import piecefiles, snapshot


def test_the_writer_writes_new_large_pieces_as_they_are_found(tmp_path):
    folder = str(tmp_path / "blobs")
    writer = piecefiles.Writer(folder)
    snap = snapshot.take({"a": np.random.default_rng(1).random(2_000_000), "b": 1}, set(),
                         1, writer.add)
    writer.finish()
    files = piecefiles.large(snap)
    assert sorted(os.listdir(folder)) == sorted(files)
    for h, size in files.items():
        path = os.path.join(folder, h)
        assert os.path.getsize(path) == size >= EXTERNAL_BLOB_BYTES
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, "rb") as f:
            assert f.read() == bytes(snap.new[h])
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_a_failed_write_is_raised_and_leaves_no_partial_file(tmp_path):
    from _support import small_tmpfs

    with small_tmpfs(tmp_path, "6m") as mnt:  # room for one 4 MB piece, not two
        _fail_on(str(mnt / "blobs"))


def _fail_on(folder: str) -> None:
    writer = piecefiles.Writer(folder)
    snapshot.take({"a": np.random.default_rng(2).random(1_500_000)}, set(), 1, writer.add)
    with pytest.raises(OSError):
        writer.finish()
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
