"""A run's step tries as ``RunHandle.steps`` gives them: the rows of GET /runs/{id} (dicts, as
before), with what each try was called with and returned.

``steps[i].args`` and ``.kwargs`` are the recorded call, ``.output`` the recorded output
(unpickled here, fetched from GET /runs/{id}/steps/{key}?values=1 when first read);
``.args_preview`` and ``.output_preview`` are the safe JSON previews the views show.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from ..core import serial as _serial
from ..core.errors import StepNotRecorded
from .client import Client


def step_path(run_id: str, key: str) -> str:
    """The API path of one step's tries (the key URL-encoded: it holds '#')."""
    return (f"/runs/{urllib.parse.quote(run_id, safe='')}/steps/"
            f"{urllib.parse.quote(key, safe='')}")


class StepRecord(dict):
    """One try of a step: its row (``step_key``, ``name``, ``attempt``, ``status``, times
    and error) with ``args``, ``kwargs``, ``output``, ``args_preview``, ``output_preview``."""

    def __init__(self, row: dict, run_id: str, client: Client, cache: dict):
        super().__init__(row)
        self._run_id = run_id
        self._client = client
        self._cache = cache  # step key -> its tries with values, shared by one listing

    def __reduce__(self) -> Any:  # pickles (and copies) as the plain row
        return dict, (dict(self),)

    @property
    def key(self) -> str:
        return self["step_key"]

    def _try(self) -> dict:
        key = self.key
        if key not in self._cache:
            self._cache[key] = self._client.request(
                "GET", step_path(self._run_id, key), query={"values": 1})["tries"]
        for t in self._cache[key]:
            if (t["attempt"] == self["attempt"] and t["started_at"] == self["started_at"]
                    and t.get("generation") == self.get("generation", t.get("generation"))):
                return t
        raise StepNotRecorded(f"run {self._run_id} has no try {self['attempt']} of step "
                              f"{key!r} any more")

    def _call(self) -> tuple[tuple, dict]:
        t = self._try()
        if t.get("args_b64") is None:
            why = (t.get("args_preview") or {}).get("note") or (
                "the run was recorded by an earlier release of durable_nb, which kept no step "
                "arguments" if t.get("args_preview") is None else "no arguments were recorded")
            raise StepNotRecorded(f"the call of step {self.key!r} (try {self['attempt']}) of "
                                  f"run {self._run_id} was not recorded: {why}. Its preview "
                                  "is in .args_preview.")
        args, kwargs = _serial.loads(base64.b64decode(t["args_b64"]))
        return tuple(args), dict(kwargs)

    @property
    def args(self) -> tuple:
        """The positional arguments the try was called with (unpickled)."""
        return self._call()[0]

    @property
    def kwargs(self) -> dict:
        """The keyword arguments the try was called with (unpickled)."""
        return self._call()[1]

    @property
    def output(self) -> Any:
        """What the try returned (unpickled); StepNotRecorded for a try that failed."""
        if self["status"] != "COMPLETED":
            err = f": {self.get('error_type')}: {self.get('error_message')}" \
                if self.get("error_type") else ""
            raise StepNotRecorded(f"step {self.key!r} (try {self['attempt']}) of run "
                                  f"{self._run_id} ended {self['status']}{err}; it has no "
                                  "output")
        data = self._try().get("output_b64")
        return _serial.loads(base64.b64decode(data)) if data else None

    @property
    def args_preview(self) -> dict | None:
        """The JSON preview of the arguments: {"args": [...], "kwargs": {...}, "recorded",
        "note"?}, each value {"type", "repr", ...}; None for runs of earlier releases."""
        return self._try().get("args_preview")

    @property
    def output_preview(self) -> dict | None:
        """The JSON preview of the output ({"type", "repr", ...}); None if the try failed."""
        return self._try().get("output_preview")


def step_records(run_id: str, client: Client, rows: list[dict]) -> list[StepRecord]:
    cache: dict = {}
    return [StepRecord(r, run_id, client, cache) for r in rows]
