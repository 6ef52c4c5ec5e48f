"""The host's private loopback listener: the durable API with the host's own token, for
servers that plain HTTP on loopback cannot reach."""

import asyncio

from _support import http_call

from durable_nb.core.config import EngineConfig
from durable_nb.jupyter.host import EngineHost
from durable_nb.jupyter.web import listen_private


def test_the_private_listener_serves_the_api_behind_the_hosts_token(tmp_path):
    async def main() -> None:
        host = EngineHost(EngineConfig(db_path=tmp_path / "web.duckdb", max_workers=1))
        await host.start("http://127.0.0.1:9/")
        try:
            url = listen_private(host)
            assert url.startswith("http://127.0.0.1:")
            api = url + "durable/api"
            calls = [(api + "/health", None), (api + "/health", host.token),
                     (api + f"/health?token={host.token}", None), (api + "/runs", host.token)]
            # http_call blocks: run it off the loop that serves the listener
            answers = [await asyncio.to_thread(http_call, "GET", u, t) for u, t in calls]
            assert [status for status, _ in answers] == [403, 200, 403, 200]
            assert answers[1][1]["ok"] is True and answers[3][1]["runs"] == []
        finally:
            await host.stop()

    asyncio.run(main())
