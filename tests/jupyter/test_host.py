"""An engine host in a server process: it proxies to the engine that owns the database, and
takes the database over when that owner goes away."""

import asyncio
import json

from durable_nb.core.config import EngineConfig
from durable_nb.jupyter.host import EngineHost


async def _health(host: EngineHost) -> tuple[int, dict]:
    status, body = await host.request("GET", "/health", {}, None, "tester")
    return status, json.loads(body)


def test_a_host_proxies_to_the_owner_then_takes_over_when_it_stops(engine, tmp_path):
    async def main() -> None:
        host = EngineHost(EngineConfig(db_path=engine.db, max_workers=1), owner_wait=0.5)
        await host.start("http://127.0.0.1:9/")
        try:
            assert host.mode == "proxy" and host.owner["pid"] == engine.pid
            status, out = await _health(host)
            assert status == 200 and out["ok"] is True
            env = host.env()
            assert env["DURABLE_NB_TOKEN"] == host.token != engine.client.token
            assert env["DURABLE_NB_DB"] == str(engine.db)

            engine.stop()
            status, out = await _health(host)  # the owner is gone: this host now owns it
            assert status == 200 and host.mode == "owner" and host.engine is not None
            status, body = await host.request("GET", "/runs/run_missing", {}, None, "tester")
            assert status == 404 and json.loads(body)["code"] == "run_not_found"
        finally:
            await host.stop()
        assert host.mode == "stopped"

    asyncio.run(main())


def test_a_host_alone_owns_the_engine_and_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DURABLE_NB_URL", raising=False)

    async def main() -> None:
        import os

        host = EngineHost(EngineConfig(db_path=tmp_path / "own.duckdb", max_workers=1))
        await host.start("http://127.0.0.1:9")
        try:
            assert host.mode == "owner"
            assert os.environ["DURABLE_NB_URL"] == "http://127.0.0.1:9/"  # kernels inherit it
            assert (await _health(host))[0] == 200
        finally:
            await host.stop()
        assert "DURABLE_NB_URL" not in os.environ

    asyncio.run(main())
