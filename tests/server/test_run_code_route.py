"""GET /runs/{run_id}/code (what `%durable debug` loads in a kernel): the run's registered
task code and its pickled arguments, through the API's dispatch on an in-process engine;
it hands out code, so it needs the execute permission; an unknown run is a 404, a
malformed id a 400."""

from __future__ import annotations

import asyncio
import base64
import json

from durable_nb.core import serial as _serial
from durable_nb.core.errors import Forbidden
from durable_nb.server.api import dispatch, openapi_document
from durable_nb.testing import EngineHarness


def _call(h: EngineHarness, allowed=("read", "write", "execute")):
    async def authorize(action: str) -> None:
        if action not in allowed:
            raise Forbidden(f"not authorized to {action}")

    async def call(path: str):
        return await dispatch(h.engine, "GET", path, {}, None, "tester", authorize)

    return call


def test_the_route_gives_the_runs_code_and_arguments_to_the_execute_permission(tmp_path):
    async def check():
        async with EngineHarness(tmp_path) as h:
            task = h.task("debugged")
            run = await h.trigger(task, {"id": 3, "text": ""}, delay=60)
            status, out = await _call(h)(f"/runs/{run}/code")
            assert status == 200, out
            assert (out["run_id"], out["kind"], out["task_id"], out["task_hash"]) == \
                (run, "task", "debugged", task)
            assert callable(_serial.loads(base64.b64decode(out["code_b64"])))
            assert _serial.loads(base64.b64decode(out["payload_b64"])) == \
                (({"id": 3, "text": ""},), {})
            for allowed in (("read",), ("read", "write")):
                status, out = await _call(h, allowed)(f"/runs/{run}/code")
                assert (status, out["code"]) == (403, "forbidden"), out
            status, out = await _call(h)("/runs/run_nope/code")
            assert (status, out["code"]) == (404, "run_not_found")
            assert "no run with id 'run_nope'" in out["error"]
            status, out = await _call(h)("/runs/" + "x" * 300 + "/code")
            assert status == 400 and "run_id" in json.dumps(out), out
            await h.restart()  # the code and payload come back from the store
            status, again = await _call(h)(f"/runs/{run}/code")
            assert status == 200 and again["task_hash"] == task, again
            assert _serial.loads(base64.b64decode(again["payload_b64"])) == \
                (({"id": 3, "text": ""},), {})

    asyncio.run(check())


def test_the_openapi_document_says_it_needs_execute():
    op = openapi_document()["paths"]["/runs/{run_id}/code"]["get"]
    assert op["x-action"] == "execute" and "payload_b64" in json.dumps(op["responses"]["200"])
