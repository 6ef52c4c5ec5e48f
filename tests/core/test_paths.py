"""Where the default database and the runtime files live, and files private from creation."""

import os
import stat

import pytest

from durable_nb.core import paths


def test_the_default_database_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DURABLE_NB_DB", str(tmp_path / "x" / ".." / "mine.duckdb"))
    assert paths.default_db_path() == tmp_path / "mine.duckdb"
    assert paths.resolve_db(None) == tmp_path / "mine.duckdb"
    monkeypatch.delenv("DURABLE_NB_DB")
    assert paths.default_db_path().parts[-2:] == ("durable_nb", "durable.duckdb")
    assert paths.resolve_db(tmp_path / "other.duckdb") == tmp_path / "other.duckdb"


def test_each_database_has_its_own_runtime_and_log_file(tmp_path):
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    assert paths.runtime_file(a) != paths.runtime_file(b)
    assert paths.runtime_file(a) == paths.runtime_file(a)
    assert paths.runtime_file(a).suffix == ".json" and paths.engine_log_file(a).suffix == ".log"
    assert paths.runtime_file(a).with_suffix("") == paths.engine_log_file(a).with_suffix("")


def test_write_private_is_0600_in_a_0700_folder_and_replaces_atomically(tmp_path):
    target = tmp_path / "new" / "rt.json"
    paths.write_private(target, "one")
    paths.write_private(target, "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert os.listdir(target.parent) == ["rt.json"]  # no temporary file left behind


def test_write_private_leaves_no_temporary_file_when_it_fails(tmp_path):
    target = tmp_path / "rt.json"
    with pytest.raises(TypeError):
        paths.write_private(target, b"not text")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []
