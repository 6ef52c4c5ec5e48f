"""Notebooks against a real Jupyter server hosting the engine (kernels killed, the server
killed, approvals through its REST API), and the example notebooks under nbclient."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _support import Jupyter
from test_magics import Kernel, run_id

from durable_nb.core.auth import server_owner

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


class NotebookServer(Jupyter):
    """The shared `jupyter server` of the tests (`_support.Jupyter`), with the calls these
    tests make: the REST API with the login token, and kernels of notebook sessions."""

    def __init__(self, tmp: Path, db: Path):
        # the engine's own default worker count: the example notebooks run batches
        super().__init__(tmp, db, "--DurableApp.max_workers=8")

    def call(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(
            self.url + path, method=method, data=json.dumps(body).encode() if body else None,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def notebook_kernel(self, path: str) -> Kernel:
        """A kernel for a notebook session, reached through its connection file."""
        sess = self.call("POST", "api/sessions", {"path": path, "type": "notebook",
                                                  "name": path, "kernel": {"name": "python3"}})
        kid = sess["kernel"]["id"]
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        k = Kernel.connect(str(runtime / f"kernel-{kid}.json"))
        k.ok("%load_ext durable_nb\nimport os")
        k.pid = k.value("os.getpid()")
        return k

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jupyter")
    srv = NotebookServer(tmp, tmp / "store.duckdb").start()
    yield srv
    srv.stop()


# A cell of four statements: statement 2 marks that it started, then waits for a file the
# test creates, so a kill lands in statement 2 for sure.
HELPERS = '''
def mark(name):
    import os
    with open(os.path.join(marks, name), "a") as f:
        f.write("x")
    print("marked", name)
    return os.path.getsize(os.path.join(marks, name))

def hold(name):
    import os, time
    while not os.path.exists(os.path.join(marks, name)):
        time.sleep(0.02)
    return 0
'''
CELL = '''%%durable --name {name}
first = mark("s1")
second = mark("s2") + hold("go")
third = first + second
total = third * 10
'''


def _start_cell(k: Kernel, marks: Path, name: str) -> str:
    k.ok(f"marks = {str(marks)!r}\n{HELPERS}")
    cell = k.submit(CELL.format(name=name))
    out = k.wait(cell)
    assert out.status == "ok"
    k.until(cell, "marked s2")  # streamed into the cell through the server's WebSocket
    return run_id(out.results[0])


def _count(marks: Path, name: str) -> int:
    p = marks / name
    return p.stat().st_size if p.exists() else 0


def test_a_cell_goes_on_when_its_kernel_is_killed(server, tmp_path):
    k = server.notebook_kernel("survivor.ipynb")
    try:
        assert k.value("os.environ['DURABLE_NB_URL']") == server.url, "engine in the server"
        rid = _start_cell(k, tmp_path, "survivor")
        os.kill(k.pid, signal.SIGKILL)
        assert _gone(k.pid)
    finally:
        k.kc.stop_channels()
    time.sleep(0.5)  # deliberate: time in which a run wrongly tied to its kernel would end
    assert server.call("GET", f"durable/api/runs/{rid}")["status"] == "EXECUTING"
    (tmp_path / "go").write_text("")
    fresh = server.notebook_kernel("later.ipynb")
    try:
        out = fresh.ok(f"%durable attach {rid} --wait")
        assert "marked s1\nmarked s2\n" in out.stdout, "attach shows the run's output"
        assert "variables in the namespace:" in out.stdout
        assert fresh.value("(first, second, third, total)") == (1, 1, 2, 20)
    finally:
        fresh.kc.stop_channels()
    assert _count(tmp_path, "s1") == 1 and _count(tmp_path, "s2") == 1
    detail = server.call("GET", f"durable/api/runs/{rid}")
    assert [a["outcome"] for a in detail["attempt_list"]] == ["COMPLETED"]


def test_an_approval_in_a_notebook_is_granted_through_the_rest_api(server):
    k = server.notebook_kernel("approval.ipynb")
    try:
        k.ok("import time, durable_nb as dn\n"
             "@dn.task(id='nb-approval')\n"
             "def gated(x):\n"
             "    d = dn.approval('go-live', data={'x': x})\n"
             "    return {'x': x, 'approved': d.approved, 'comment': d.comment, 'by': d.by}\n"
             "run = gated.trigger(3)\n"
             "while run.status != 'WAITING':\n"
             "    time.sleep(0.05)")
        rid = k.value("run.id")
        out = server.call("POST", f"durable/api/runs/{rid}/approve",
                          {"comment": "approved from outside"})
        assert out["outcome"] == "approved" and out["wait"] == "go-live"
        result = k.value("run.result(timeout=30)")
        assert result["approved"] is True and result["comment"] == "approved from outside"
        assert result["by"], "the approver is recorded"
    finally:
        k.kc.stop_channels()


@pytest.mark.slow
def test_a_cell_resumes_after_the_jupyter_server_is_killed(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    srv = NotebookServer(tmp_path, tmp_path / "store.duckdb").start()
    pids = []
    try:
        k = srv.notebook_kernel("phoenix.ipynb")
        pids.append(k.pid)
        rid = _start_cell(k, marks, "phoenix")
        k.kc.stop_channels()
        srv.kill()  # the engine and its workers die with the server
        _kill(k.pid)
        (marks / "go").write_text("")
        srv.start()
        fresh = srv.notebook_kernel("after.ipynb")
        pids.append(fresh.pid)
        out = fresh.ok(f"%durable attach {rid} --wait")
        assert "COMPLETED" in out.stdout
        # statement 2 was in flight: it ran again; statement 1 was checkpointed: it did not
        assert _count(marks, "s1") == 1 and _count(marks, "s2") == 2
        assert fresh.value("(first, second, total)") == (1, 2, 30)
        fresh.kc.stop_channels()
        detail = srv.call("GET", f"durable/api/runs/{rid}")
        assert [a["outcome"] for a in detail["attempt_list"]] == ["INTERRUPTED", "COMPLETED"]
    finally:
        srv.stop()
        for pid in pids:
            _kill(pid)


# ---------------------------------------------------------------------- example notebooks

@pytest.fixture(scope="module")
def notebook_db(tmp_path_factory):
    """The database the notebooks' kernels use; its engine is stopped at the end."""
    db = tmp_path_factory.mktemp("notebooks") / "examples.duckdb"
    yield db
    subprocess.run([sys.executable, "-m", "durable_nb", "stop", "--db", str(db)],
                   check=False, capture_output=True, timeout=60)


def _execute(name: str, db: Path, cwd: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are stored without outputs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute(
        env={**env, "DURABLE_NB_DB": str(db)})
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        raises = "raises-exception" in cell.metadata.get("tags", [])  # meant to: shown
        for o in cell.outputs:
            if o.output_type == "error":
                assert raises, f"{o.ename}: {o.evalue}"
                parts.append("\n".join([*o.traceback, f"{o.ename}: {o.evalue}"]))
                continue
            parts.append(o.text if o.output_type == "stream" else o.data.get("text/plain", ""))
        texts.append("".join(parts))
    return texts


def _cell(texts: list[str], needle: str) -> str:
    found = [t for t in texts if needle in t]
    assert found, f"no cell output contains {needle!r}"
    return found[0]


def test_the_quickstart_notebook_runs_top_to_bottom(notebook_db, tmp_path):
    out = _execute("01-quickstart.ipynb", notebook_db, tmp_path)
    assert f"store:  {notebook_db}" in out[0]
    waiting = _cell(out, "status: WAITING")
    assert "approval 'publish': pending, data {'doc': '42', 'summary': 'revenue up 12%" in waiting
    assert "'status': 'published'" in _cell(out, "'comment': 'numbers checked'")
    tree = _cell(out, "process-document  COMPLETED")
    assert tree.count("step summarize#1  FAILED") == 2
    assert "ConnectionError: summarizer unavailable (call 2)" in tree
    assert f'approval publish  approved by {server_owner()} "numbers checked"' in tree
    assert "step publish#1  COMPLETED" in tree
    assert "fetching document 2" in _cell(out, "3 documents, 120 characters")
    assert "back in the kernel: {'0': 40, '1': 40, '2': 40} 120\n" in out
    assert "totals" in _cell(out, "RUN ")


def test_the_agent_notebook_retries_the_model_and_waits_for_a_person(notebook_db, tmp_path):
    out = _execute("02-agent-approval.ipynb", notebook_db, tmp_path)
    assert "refunds so far: none" in _cell(out, "pending approval: issue_refund")
    answer = _cell(out, "Refunded 89.90 EUR for order A-1042")
    assert answer.count('"order_id": "A-1042"') == 1, "one refund, after the approval"
    tree = _cell(out, "refund-agent  COMPLETED")
    assert "RateLimited: 429 Too Many Requests (call 2)" in tree
    assert (f'approval issue_refund  approved by {server_owner()} "damage confirmed on the photo"'
            in tree)
    log = _cell(out, "turn 2: the model asks for issue_refund")
    assert log.count("turn 1:") == 2, "the function re-ran after the approval"
    rejected = _cell(out, "I could not refund order A-1042")
    assert "already refunded" in rejected and "refunds in the ledger: 1" in rejected


def test_the_debug_notebook_raises_in_the_kernel_forks_and_resumes(notebook_db, tmp_path):
    out = _execute("04-debug-and-fork.ipynb", notebook_db, tmp_path)
    assert "FAILED" in _cell(out, "ValueError: could not convert string to float: 'n/a'")
    debug = _cell(out, "re-raising step hours_per_team#1 of run_")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", debug)
    assert "total += float(t[\"hours\"])" in plain and "in hours_per_team(teams)" in plain
    assert "hours_per_team, line 21: t = {'id': 'T-3', 'team': 'billing', 'hours': 'n/a'}" \
        in _cell(out, "recorded argument: teams ['billing', 'returns', 'shipping']")
    fork = _cell(out, "is a fork of")
    assert "skipped T-3: hours 'n/a'" in fork and ": True" in fork
    assert "load_tickets ran 1 time(s)" in fork, "the fork reused the recorded steps"
    assert "billing     1.50 h\nreturns     2.25 h\nshipping    4.00 h" in fork
    cell = _cell(out, "restored run ")
    assert "after statement 2 of 3" in cell and "ZeroDivisionError: division by zero" in cell
    assert "closed tickets: 3 days: 0\n" in out
    assert "variables in the namespace: closed, json, rate, scratch, tickets" in _cell(out, "resumed run")
    assert "0.6 closed tickets a day\n" in out


@pytest.mark.slow
def test_the_data_job_notebook_runs_all_without_waiting_flags(notebook_db, tmp_path):
    """Run All on a notebook whose durable cells have no --wait: the cells that read their
    variables wait for them, the others do not, and the last run waits for a person."""
    import nbformat
    from nbclient import NotebookClient

    import durable_nb as dn
    from durable_nb.client.client import use_client

    nb = nbformat.read(NOTEBOOKS / "03-data-job.ipynb", as_version=4)
    assert "--wait" not in "".join(c.source for c in nb.cells if c.cell_type == "code")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(
        env={**env, "DURABLE_NB_DB": str(notebook_db)})
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        for o in cell.outputs:
            assert o.output_type != "error", f"{o.ename}: {o.evalue}"

    def text(cell) -> str:
        return "".join(o.text if o.output_type == "stream" else o.data.get("text/plain", "")
                       for o in cell.outputs)

    by_source = {c.source.splitlines()[0]: c for c in code}
    regions = by_source['print("regions:", ", ".join(regions))']
    assert "waiting for run" not in text(regions), "an independent cell does not wait"
    bar = by_source['ax = summary["next_week"].plot.bar(title="orders expected next week", '
                    'figsize=(6, 2.5))']
    waited = [line for line in text(bar).splitlines() if "waiting for run" in line]
    assert len(waited) == 1 and "forecast-regions" in waited[0], text(bar)
    assert any("image/png" in o.get("data", {}) for o in bar.outputs), "the plot is shown"
    # each durable cell's output is its run's live view (a MIME bundle the Lab renders)
    for cell in [c for c in code if c.source.startswith("%%durable")]:
        bundles = [o.data for o in cell.outputs if o.output_type in ("execute_result",
                                                                     "display_data")]
        assert any("text/html" in b for b in bundles), cell.source.splitlines()[0]
    previous = use_client(dn.connect(db=str(notebook_db)))
    try:
        listed = {r.info()["task_id"]: r for r in dn.runs(limit=50)}
        for name in ("load-orders", "forecast-regions", "plot-orders"):
            assert listed[name].wait(timeout=120) == "COMPLETED", name
        forecast = listed["forecast-regions"]
        assert len([s for s in forecast.steps if s["name"] == "forecast"]) == 6
        publish = listed["publish-report"]
        deadline = time.monotonic() + 60
        while publish.status != "WAITING" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert publish.status == "WAITING"
        publish.approve("publish", comment="looks right")
        assert publish.wait(timeout=60) == "COMPLETED"
    finally:
        use_client(previous)
