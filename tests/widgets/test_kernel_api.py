"""The views' requests answered by the kernel, against a real in-process engine:
`engine_info` (which engine, and whether the browser can call it itself) and `ApiMixin`
answering a view's comm request (read routes, approve and reject, refused routes, and
errors answered with their status code)."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator

import pytest
from _support import wait_for

import durable_nb as dn
from durable_nb.client.client import Client
from durable_nb.testing import TestEnvironment
from durable_nb.widgets.kernel_api import ApiMixin, engine_info


@dn.step
def double(x: int) -> int:
    print(f"doubling {x}", flush=True)
    return 2 * x


@dn.task(id="kernel-api-gate")
def gate(x: int) -> dict:
    y = double(x)
    d = dn.approval("ship", data={"y": y})
    return {"y": y, "approved": d.approved, "comment": d.comment}


class View(ApiMixin):
    """A widget's kernel side: what it would send to the browser is kept in ``sent``."""

    def __init__(self, client: Client):
        self.client = client
        self.sent: list[dict] = []
        self.decided: list[str] = []
        self.send = self.sent.append

    def _after_decision(self, run_id: str) -> None:
        self.decided.append(run_id)

    def ask(self, method: str, path: str, body: dict | None = None, rid: str = "r1") -> dict:
        """The reply to one request from the view."""
        before = len(self.sent)
        self._answer(self, {"type": "api", "id": rid, "method": method, "path": path,
                            "body": body}, [])
        assert len(self.sent) == before + 1, "one reply per request"
        reply = self.sent[-1]
        assert reply["type"] == "api_reply" and reply["id"] == rid
        return reply


@pytest.fixture
def env() -> Iterator[TestEnvironment]:
    with TestEnvironment() as e:
        yield e


def pending(run) -> dn.RunHandle:
    wait_for(lambda: any(w["outcome"] is None for w in run.waits), 10, "a pending approval")
    return run


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- engine_info

def test_engine_info_names_the_engine_instance(env, monkeypatch):
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    info = engine_info(env.client)
    assert info == {"instance": env.engine.instance, "server": False}
    assert info["instance"]


def test_engine_info_says_server_only_for_the_jupyter_servers_own_engine(env, monkeypatch):
    monkeypatch.setenv("JPY_PARENT_PID", "1")
    monkeypatch.setenv("DURABLE_NB_URL", env.client.url.rstrip("/"))
    assert engine_info(env.client)["server"] is True  # a trailing slash does not matter
    monkeypatch.setenv("DURABLE_NB_URL", "http://127.0.0.1:1/")
    assert engine_info(env.client)["server"] is False  # the kernel uses another engine
    monkeypatch.delenv("DURABLE_NB_URL")
    assert engine_info(env.client)["server"] is False
    monkeypatch.setenv("DURABLE_NB_URL", env.client.url)
    monkeypatch.delenv("JPY_PARENT_PID")
    assert engine_info(env.client)["server"] is False  # not a Jupyter kernel


def test_engine_info_of_an_engine_that_is_not_there(monkeypatch):
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    client = Client(f"http://127.0.0.1:{closed_port()}/", None, None, autostart=False)
    assert engine_info(client) == {"instance": None, "server": False}


# ---------------------------------------------------------------------- read routes

def test_get_routes_answer_with_the_engines_data(env):
    run = gate.trigger(4)
    view = View(env.client)
    pending(run)
    got = view.ask("GET", f"/runs/{run.id}")
    assert got["status"] == 200
    assert got["body"]["id"] == run.id and got["body"]["status"] in ("EXECUTING", "WAITING")
    assert [w["preview"] for w in got["body"]["waits"]] == [{"y": 8}]
    spans = view.ask("GET", f"/runs/{run.id}/spans")
    assert spans["status"] == 200 and isinstance(spans["body"]["spans"], list)
    logs = view.ask("GET", f"/runs/{run.id}/logs?limit=5&limit=3")  # the last value counts
    assert logs["status"] == 200 and "logs" in logs["body"]
    run.approve("ship")
    run.result(timeout=10)
    result = view.ask("GET", f"/runs/{run.id}/result")
    assert result["status"] == 200
    assert result["body"]["status"] == "COMPLETED"
    assert view.decided == []


def test_a_step_s_tries_are_a_read_route(env):
    run = gate.trigger(5)
    pending(run)
    view = View(env.client)
    got = view.ask("GET", f"/runs/{run.id}/steps/double%231")  # the key URL-encoded
    assert got["status"] == 200, got
    (t,) = got["body"]["tries"]
    assert t["args_preview"]["args"] == [{"type": "int", "repr": "5"}]
    assert t["output_preview"] == {"type": "int", "repr": "10"}
    assert view.ask("GET", f"/runs/{run.id}/steps/nothing%231")["status"] == 404
    assert view.ask("GET", f"/runs/{run.id}/steps/a/b")["status"] == 403
    run.approve("ship")
    run.result(timeout=10)


def test_a_big_runs_step_groups_and_pages_are_read_routes(env):
    run = gate.trigger(6)
    pending(run)
    view = View(env.client)
    groups = view.ask("GET", f"/runs/{run.id}/step_groups")
    assert groups["status"] == 200, groups
    [group] = groups["body"]["groups"]
    assert (group["steps"], group["completed"]) == (1, 1)
    page = view.ask("GET", f"/runs/{run.id}/steps?name={group['name']}&offset=0&limit=100")
    assert page["status"] == 200 and page["body"]["total"] == 1
    assert view.ask("GET", f"/runs/{run.id}/steps")["status"] == 400  # which name?
    few = view.ask("GET", f"/runs/{run.id}?steps=0")["body"]
    assert few["steps"] == [] and few["step_groups"] == groups["body"]["groups"]
    run.approve("ship")
    run.result(timeout=10)


def test_an_unknown_run_is_answered_404(env):
    reply = View(env.client).ask("GET", "/runs/run_nosuchrun")
    assert reply["status"] == 404 and "run_nosuchrun" in reply["body"]["error"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/runs"),  # the runs list is not a widget route
    ("GET", "/runs/../sql"),
    ("GET", "/runs/x/stepsx"),
    ("POST", "/sql"),
    ("POST", "/runs/x/cancel"),
    ("DELETE", "/runs/x"),
    ("PUT", "/runs/x/approve"),
])
def test_other_routes_are_refused_403(env, method, path):
    reply = View(env.client).ask(method, path, {})
    assert reply["status"] == 403
    assert reply["body"] == {"error": f"{method} {path} is not available to widgets"}


def test_messages_that_are_not_api_requests_are_ignored(env):
    view = View(env.client)
    for content in ({"type": "refresh"}, {}, "api", None):
        view._answer(view, content, [])
    assert view.sent == []


# ---------------------------------------------------------------------- decisions

def test_approve_resumes_the_run(env):
    run = pending(gate.trigger(5))
    view = View(env.client)
    reply = view.ask("POST", f"/runs/{run.id}/approve", {"wait": "ship", "comment": "fine"})
    assert reply["status"] == 200
    assert reply["body"]["outcome"] == "approved" and reply["body"]["run_id"] == run.id
    assert view.decided == [run.id]
    assert run.result(timeout=10) == {"y": 10, "approved": True, "comment": "fine"}
    wait = [w for w in run.waits if w["kind"] == "approval"][0]
    assert wait["outcome"] == "approved" and wait["resolved_by"] == getpass.getuser()


def test_reject_resumes_the_run_with_approved_false(env):
    run = pending(gate.trigger(1))
    view = View(env.client)
    reply = view.ask("POST", f"/runs/{run.id}/reject", {"comment": ""})  # no comment
    assert reply["status"] == 200 and reply["body"]["outcome"] == "rejected"
    assert run.result(timeout=10) == {"y": 2, "approved": False, "comment": None}


def test_a_second_decision_is_answered_409(env):
    run = pending(gate.trigger(2))
    view = View(env.client)
    assert view.ask("POST", f"/runs/{run.id}/approve", {"wait": "ship"})["status"] == 200
    again = view.ask("POST", f"/runs/{run.id}/reject", {"wait": "ship"}, rid="r2")
    assert again["status"] == 409 and again["body"]["error"]
    assert view.decided == [run.id]  # only the decision that counted
    assert run.result(timeout=10)["approved"] is True


def test_deciding_an_unknown_run_is_answered_404(env):
    reply = View(env.client).ask("POST", "/runs/run_nosuchrun/approve", {})
    assert reply["status"] == 404


def test_a_malformed_request_is_answered_500(env):
    run = pending(gate.trigger(3))
    view = View(env.client)
    reply = view.ask("POST", f"/runs/{run.id}/approve", ["not", "an", "object"])  # type: ignore[arg-type]
    assert reply["status"] == 500 and reply["body"]["error"]
    assert [w["outcome"] for w in run.waits] == [None]  # nothing was decided


def test_an_engine_that_is_not_there_is_answered_503():
    client = Client(f"http://127.0.0.1:{closed_port()}/", None, None, autostart=False)
    reply = View(client).ask("GET", "/runs/run_x")
    assert reply["status"] == 503 and "not answering" in reply["body"]["error"]
