"""Where the embedded default database and the engines' runtime files live."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir


def default_db_path() -> Path:
    """``DURABLE_NB_DB`` if set, else a DuckDB file under the Jupyter data directory."""
    env = os.environ.get("DURABLE_NB_DB")
    if env:
        return Path(env).expanduser().resolve()
    return Path(jupyter_data_dir()) / "durable_nb" / "durable.duckdb"


def resolve_db(db: str | os.PathLike | None) -> Path:
    return Path(db).expanduser().resolve() if db else default_db_path()


def _db_tag(db: Path) -> str:
    return hashlib.sha256(str(db).encode()).hexdigest()[:16]


def runtime_file(db: Path) -> Path:
    """The 0600 file where the engine owning ``db`` writes its URL, token and pid."""
    return Path(jupyter_runtime_dir()) / f"durable-nb-{_db_tag(db)}.json"


def engine_log_file(db: Path) -> Path:
    """Where a detached engine writes its log (never secrets)."""
    return Path(jupyter_runtime_dir()) / f"durable-nb-{_db_tag(db)}.log"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700 when new) and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 from the start: a new temporary
    file (never one left behind, whose mode could be wider), renamed over ``path``."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: O_EXCL, mode 0600
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
