"""engine.model: the JSON view of a run row, attempt ids and stored errors."""

from __future__ import annotations

import json

from durable_nb.engine.model import error_json, summarize


def test_summarize_leaves_bytes_out_and_derives_durations():
    row = {"id": "r", "payload": b"p", "output": b"o", "error": None, "tags": None,
           "created_at": 10.0, "started_at": 12.5, "finished_at": 20.0}
    out = summarize(row)
    assert "payload" not in out and "output" not in out and out["has_output"] is True
    assert out["duration"] == 7.5 and out["queued_for"] == 2.5 and out["tags"] == []


def test_error_json_keeps_the_three_fields_users_see():
    stored = error_json({"type": "ValueError", "message": "bad", "traceback": "tb",
                         "abort": True})
    assert json.loads(stored) == {"type": "ValueError", "message": "bad", "traceback": "tb"}
    assert error_json(None) is None and error_json({}) is None
