"""Whether the JupyterLab panel is installed, said once per process when it is not."""

import logging

import pytest

from durable_nb.jupyter import labext


def _panel(root, name=labext.NAME):
    ext = root / name
    (ext / "static").mkdir(parents=True)
    (ext / "package.json").write_text("{}")


def test_a_built_panel_in_any_folder_counts(tmp_path):
    empty, full = tmp_path / "a", tmp_path / "b"
    empty.mkdir()
    _panel(full)
    assert labext.panel_installed([str(empty), str(full)])
    assert not labext.panel_installed([str(empty)])


def test_a_panel_without_its_static_files_does_not_count(tmp_path):
    (tmp_path / labext.NAME).mkdir()
    (tmp_path / labext.NAME / "package.json").write_text("{}")
    assert not labext.panel_installed([str(tmp_path)])


def test_the_missing_panel_is_said_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(labext, "_said", False)
    log = logging.getLogger("durable_nb.test")
    with caplog.at_level(logging.WARNING, logger="durable_nb.test"):
        assert labext.warn_if_panel_missing(log, [str(tmp_path)]) is False
        assert labext.warn_if_panel_missing(log, [str(tmp_path)]) is False
    assert [r.getMessage() for r in caplog.records] == [labext.MISSING]


def test_nothing_is_said_when_the_panel_is_there(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(labext, "_said", False)
    _panel(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert labext.warn_if_panel_missing(logging.getLogger("x"), [str(tmp_path)])
    assert caplog.records == []


@pytest.mark.parametrize("folder", ["labextensions"])
def test_the_folders_searched_are_jupyters_labextension_paths(folder):
    assert labext.labextension_dirs() and all(
        d.rstrip("/").endswith(folder) for d in labext.labextension_dirs())
