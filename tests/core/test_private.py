"""Files private from their first byte: a private block or thread creates 0600 files, and
the rest of the process keeps its own umask."""

import os
import stat
import threading

import pytest

from durable_nb.core.private import call_private, private_thread, private_umask


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_call_private_creates_private_files_and_returns_the_value(tmp_path):
    def make(name):
        (tmp_path / name).write_text("x")
        return name.upper()

    old = os.umask(0o022)
    try:
        assert call_private(make, "inside") == "INSIDE"
        (tmp_path / "outside").write_text("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "inside") == 0o600
    assert _mode(tmp_path / "outside") == 0o644


def test_call_private_raises_the_callees_error():
    def fail():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        call_private(fail)


def test_a_private_umask_block_restores_the_umask_after(tmp_path):
    def in_thread():
        with private_umask():
            (tmp_path / "a").write_text("x")
        (tmp_path / "b").write_text("x")

    old = os.umask(0o022)
    try:
        t = threading.Thread(target=in_thread)
        t.start()
        t.join(10)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a") == 0o600
    assert _mode(tmp_path / "b") == 0o644


def test_a_private_thread_stays_private_and_the_process_does_not(tmp_path):
    out: dict = {}

    def worker():
        out["per_thread"] = private_thread()
        (tmp_path / "t").write_text("x")

    old = os.umask(0o022)
    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join(10)
        (tmp_path / "main").write_text("x")
    finally:
        os.umask(old)
    if not out["per_thread"]:
        pytest.skip("this platform cannot give a thread its own umask")
    assert _mode(tmp_path / "t") == 0o600
    assert _mode(tmp_path / "main") == 0o644
