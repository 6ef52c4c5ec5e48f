"""Fixtures of the `durable-nb` command's tests."""

import pytest
from _support import run_cli


@pytest.fixture
def fresh_db(tmp_path):
    """``DURABLE_NB_DB`` naming a new database; its engine is stopped afterwards."""
    db = tmp_path / "demo.duckdb"
    yield {"DURABLE_NB_DB": str(db)}
    run_cli("stop", env={"DURABLE_NB_DB": str(db)})
