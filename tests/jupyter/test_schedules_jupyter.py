"""Schedules through the Jupyter server extension (its handlers, behind Jupyter's token):
define one with the Python client, list, pause and DELETE it over HTTP under the base URL."""

from __future__ import annotations

import urllib.parse

from _support import Jupyter, http_call

import durable_nb as dn


@dn.task(id="jupyter-scheduled")
def scheduled() -> int:
    return 1


def test_schedule_routes_in_the_jupyter_server(tmp_path):
    server = Jupyter(tmp_path, tmp_path / "jp.duckdb", base_url="/jp/").start()
    try:
        dn.connect(url=server.url, token=server.token)
        s = dn.schedule(scheduled, cron="15 4 * * *", timezone="Asia/Kolkata", id="jp nightly")
        assert s.timezone == "Asia/Kolkata" and s.next_tick
        api, path = server.api, "/schedules/" + urllib.parse.quote("jp nightly", safe="")
        status, out = http_call("GET", api + "/schedules", server.token)
        assert status == 200 and [x["id"] for x in out["schedules"]] == ["jp nightly"]
        status, out = http_call("POST", api + path + "/pause", server.token, body={})
        assert status == 200 and out["paused"] is True and out["next_tick"] is None
        status, out = http_call("DELETE", api + path, server.token)
        assert (status, out) == (200, {"id": "jp nightly", "deleted": True})
        status, out = http_call("DELETE", api + path, server.token)
        assert status == 404 and out["code"] == "schedule_not_found"
        assert dn.schedules() == []
    finally:
        server.stop()
