"""Code versions, as the client, the engine and the views name them.

Each registered task hash is a version of its task id. Versions are numbered per *lineage*
(``v1``, ``v2``, ... by first registration): the task id, except for an unnamed
``%%durable`` cell, whose runs are named after their execution count (``analysis.ipynb
[5]``) and whose lineage is its notebook cell (``options["lineage"]``). A task's version is
its hash; a cell's is the hash of its text (``options["source_hash"]``), so that two runs
of the same text are one version whatever their names or options.

The source text (``tasks.source``) is kept beside the code for diffs; it is not part of the
task's hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_SOURCE = 1_000_000  # characters of a task's source text the engine keeps
SHORT = 7  # hex digits of a hash shown beside a version number


def source_digest(text: str) -> str:
    """The hash of a source text (sha256, hex): a cell's version."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cell_lineage(origin: dict | None) -> str | None:
    """The lineage of an unnamed cell: its notebook and cell id (None without a cell id:
    its runs are then versions of their name)."""
    cell_id = (origin or {}).get("cell_id")
    if not cell_id:
        return None
    return f"{(origin or {}).get('notebook') or ''}#{cell_id}"


def options_of(options: Any) -> dict:
    """A task's options as a dict (stored as JSON text)."""
    if isinstance(options, dict):
        return options
    try:
        value = json.loads(options) if options else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def lineage_of(task_id: str, options: Any) -> str:
    """Whose versions a task is: its ``lineage`` option, else its id."""
    value = options_of(options).get("lineage")
    return value if isinstance(value, str) and value else task_id


def identity_of(task_hash: str, options: Any) -> str:
    """A task's version: a cell's text hash, else the task hash."""
    value = options_of(options).get("source_hash")
    return value if isinstance(value, str) and value else task_hash


def checked_source(source: Any) -> str | None:
    """A source text to store: text of at most ``MAX_SOURCE`` characters, else None
    (a task sent by a worker skips the API's schema)."""
    if isinstance(source, str) and len(source) <= MAX_SOURCE:
        return source
    return None


def label(version: dict | None) -> str:
    """``v3 (3fa2b1c)``: a version's number and short hash; "" when unknown."""
    if not version or not version.get("number"):
        return ""
    return f"v{version['number']} ({str(version.get('hash') or '')[:SHORT]})"
