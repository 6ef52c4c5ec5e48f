"""POST /prune at the API boundary: the body is checked before the engine sees it, and
what the engine refuses comes back as a clear 4xx."""

from _support import http_call


def test_prune_requests_are_validated_with_clear_errors(engine):
    api, token = engine.client.url + "durable/api", engine.client.token

    def prune(body):
        return http_call("POST", api + "/prune", token, body)

    status, out = prune({})
    assert status == 400 and out["field"] == "older_than"
    status, out = prune({"older_than": "30d", "keep": True})
    assert status == 400
    status, out = prune({"older_than": True})
    assert status == 400
    status, out = prune({"older_than": "fortnight"})
    assert status == 422 and "not a duration" in out["error"]
    status, out = prune({"older_than": "1d", "status": "EXECUTING"})
    assert status == 422 and "never pruned" in out["error"]
    status, out = prune({"older_than": "1d", "status": ["COMPLETED", "NOPE"]})
    assert status == 422 and "unknown status 'NOPE'" in out["error"]
    status, out = prune({"older_than": 86400, "status": ["COMPLETED"], "dry_run": True})
    assert status == 200 and out["runs"] == 0 and out["dry_run"] is True
    status, _ = http_call("POST", api + "/prune", None, {"older_than": "1d"})
    assert status in (401, 403)
