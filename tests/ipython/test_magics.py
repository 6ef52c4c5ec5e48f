"""The IPython extension in real kernels (jupyter_client) against a real standalone engine."""

from __future__ import annotations

import os
import queue
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from _support import wait_for

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Out:
    """What one execute request produced on IOPub."""

    msg_id: str
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    idle: bool = False

    @property
    def text(self) -> str:
        return "\n".join([self.stdout, self.stderr, *self.results, *self.traceback])


class Kernel:
    """A kernel reached through its channels; IOPub messages are sorted by the request
    they answer, so output printed later by a background thread is found under its cell."""

    def __init__(self, kc, km=None):
        self.kc = kc
        self.km = km
        self.outs: dict[str, Out] = {}
        self.replies: dict[str, dict] = {}

    @classmethod
    def start(cls, env: dict[str, str], cwd: str | None = None) -> Kernel:
        from jupyter_client import KernelManager

        km = KernelManager(kernel_name="python3")
        km.start_kernel(env={**os.environ, **env}, cwd=cwd)
        kc = km.blocking_client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return cls(kc, km)

    @classmethod
    def connect(cls, connection_file: str) -> Kernel:
        from jupyter_client import BlockingKernelClient

        kc = BlockingKernelClient(connection_file=connection_file)
        kc.load_connection_file()
        kc.start_channels()
        # not wait_for_ready(): it gives up when the first heartbeat misses a kernel that
        # is still starting; ask until the shell answers and IOPub is connected
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kc.kernel_info()
            try:
                reply = kc.get_shell_msg(timeout=1)
                if reply["msg_type"] == "kernel_info_reply":
                    kc.get_iopub_msg(timeout=0.5)
                    break
            except queue.Empty:
                continue
        else:
            raise TimeoutError(f"no kernel answers at {connection_file}")
        while True:  # drop the rest of the handshake's messages
            try:
                kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                break
        return cls(kc)

    def _pump(self, timeout: float) -> None:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return
        pid = msg["parent_header"].get("msg_id")
        out = self.outs.setdefault(pid, Out(pid))
        c, kind = msg["content"], msg["msg_type"]
        if kind == "stream":
            if c["name"] == "stdout":
                out.stdout += c["text"]
            else:
                out.stderr += c["text"]
        elif kind in ("execute_result", "display_data"):
            out.results.append(c["data"].get("text/plain", ""))
        elif kind == "error":
            out.ename, out.evalue = c["ename"], c["evalue"]
            out.traceback = [ANSI.sub("", t) for t in c["traceback"]]
        elif kind == "status" and c["execution_state"] == "idle":
            out.idle = True

    def submit(self, code: str) -> str:
        msg_id = self.kc.execute(code)
        self.outs[msg_id] = Out(msg_id)
        return msg_id

    def wait(self, msg_id: str, timeout: float = 60.0) -> Out:
        """Until the request's reply and its idle status arrived."""
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {msg_id} within {timeout} s")
            try:
                reply = self.kc.get_shell_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            self.replies[reply["parent_header"].get("msg_id")] = reply
        out = self.outs.setdefault(msg_id, Out(msg_id))
        content = self.replies.pop(msg_id)["content"]
        out.status = content["status"]
        out.ename = out.ename or content.get("ename", "")  # UsageError: only in the reply
        out.evalue = out.evalue or content.get("evalue", "")
        deadline = time.monotonic() + 10
        while not out.idle and time.monotonic() < deadline:
            self._pump(0.1)
        return out

    def run(self, code: str, timeout: float = 60.0) -> Out:
        return self.wait(self.submit(code), timeout)

    def ok(self, code: str, timeout: float = 60.0) -> Out:
        out = self.run(code, timeout)
        assert out.status == "ok", out.text
        return out

    def until(self, msg_id: str, text: str, timeout: float = 30.0) -> Out:
        """Keep reading IOPub until the output of ``msg_id`` contains ``text``."""
        deadline = time.monotonic() + timeout
        out = self.outs.setdefault(msg_id, Out(msg_id))
        while text not in out.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the output of the cell: {out.text!r}")
            self._pump(0.1)
        return out

    def value(self, expr: str):
        out = self.ok(f"print(repr({expr}))")
        import ast

        return ast.literal_eval(out.stdout.strip())

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km is not None:
            self.km.shutdown_kernel(now=True)


def run_id(text: str) -> str:
    m = re.search(r"run_[0-9a-f]{20}", text)
    assert m, f"no run id in {text!r}"
    return m.group(0)


def wait_file(path: Path, timeout: float = 30.0) -> None:
    wait_for(path.exists, timeout, f"{path} to appear")


# ---------------------------------------------------------------------- %%durable

def test_a_cell_returns_at_once_and_its_output_streams_into_that_cell(kernel, scratch):
    cell = kernel.submit(
        "%%durable --name streamer\n"
        "import os, time\n"
        "print('first line')\n"
        "while not os.path.exists(os.path.join(scratch, 'go')):\n"
        "    time.sleep(0.02)\n"
        "print('second line')\n"
        "streamed = 40 + 2\n")
    out = kernel.wait(cell)
    assert out.status == "ok"
    rid = run_id(out.results[0])  # the handle is displayed
    kernel.until(cell, "first line")
    shown = kernel.ok(f"%durable attach {rid}").stdout
    assert shown.startswith(f"durable run {rid}  cell 'streamer'  EXECUTING  (1 attempt, ")
    assert re.search(r"statement [12] of 5 done; variables: os, scratch, time\n", shown)
    other = kernel.ok("print('another cell')")
    (scratch / "go").write_text("")
    done = kernel.until(cell, "COMPLETED")
    assert "second line" in done.stdout and f"%durable attach {rid}" in done.stdout
    assert other.stdout == "another cell\n", "the run's output stayed in its own cell"
    assert kernel.value("'streamed' in dir()") is False
    back = kernel.ok(f"%durable attach {rid}")
    assert "variables in the namespace: os, scratch, streamed, time" in back.stdout
    assert kernel.value("streamed") == 42


def test_wait_brings_the_variables_back_and_await_works(kernel):
    kernel.ok("base = 10")
    out = kernel.ok("%%durable --wait --out total\n"
                    "import asyncio\n"
                    "await asyncio.sleep(0.01)\n"
                    "total = base + await asyncio.sleep(0, result=5)\n"
                    "other = 1\n")
    assert "COMPLETED" in out.stdout and "variables in the namespace: total" in out.stdout
    assert kernel.value("total") == 15
    assert kernel.value("'other' in dir()") is False
    kernel.ok("%%durable --wait\nother = base * 3\n")
    assert kernel.value("other") == 30


def test_an_open_socket_is_named_and_transient_lets_the_cell_complete(kernel):
    cell = "import socket\nws = socket.socket()\nn = 7\n"
    out = kernel.run("%%durable --wait\n" + cell)
    assert out.status == "error" and out.ename == "RunFailed"
    shown = "\n".join(out.traceback)
    for part in ("FAILED", "NotPicklable", "variable 'ws'", "socket.socket",
                 "cannot pickle 'socket' object", "--transient ws"):
        assert part in shown
    assert "Traceback" not in shown and "durable_nb" not in shown and len(out.traceback) == 2
    out = kernel.ok("%%durable --wait --transient ws\n" + cell)
    assert "not brought back (transient): ws" in out.stdout
    assert kernel.value("n") == 7
    assert kernel.value("'ws' in dir()") is False


def test_an_error_shows_the_cells_frames_and_not_the_engines(kernel):
    out = kernel.run("%%durable --wait\n"
                     "def inverse(v):\n"
                     "    return 1 / v\n"
                     "a = 1\n"
                     "b = inverse(0)\n")
    assert out.status == "error" and out.ename == "RunFailed"
    shown = "\n".join(out.traceback)
    assert 'File "<durable cell>", line 5' in shown and "    b = inverse(0)" in shown, \
        "the editor's line number: the %%durable line is line 1"
    assert 'File "<durable cell>", line 3' in shown  # return 1 / v
    assert "return 1 / v" in shown and "ZeroDivisionError: division by zero" in shown
    assert "/durable_nb/" not in shown, "no frame of durable_nb's own files"


def test_shell_escapes_run_in_the_worker_and_magics_are_refused(kernel):
    out = kernel.ok("%%durable --wait\nlisting = !echo from-the-worker\n!echo shell says hi\n")
    assert "shell says hi" in out.stdout
    assert kernel.value("listing") == ["from-the-worker"]
    out = kernel.run("%%durable --wait\nbefore = 1\n%time y = 1\n")
    assert out.status == "error"
    assert "%time (line 3 of the cell) is an IPython magic" in out.text
    assert "Nothing ran" in out.text and kernel.value("'before' in dir()") is False


def test_mistakes_are_one_line_errors(kernel):
    out = kernel.run("%durable status run_doesnotexist")
    assert out.ename == "RunNotFound" and len(out.traceback) == 1
    assert "no run with id 'run_doesnotexist'" in out.traceback[0]
    out = kernel.run("%%durable --retries many\nx = 1\n")
    assert out.ename == "UsageError" and "invalid int value: 'many'" in out.evalue
    out = kernel.run("%%durable --timeout soon\nx = 1\n")
    assert out.ename == "UsageError" and "soon" in out.evalue
    out = kernel.run("%durable approve 'run_x")
    assert out.ename == "UsageError" and "cannot read the options" in out.evalue
    out = kernel.run("%durable frobnicate")
    assert out.ename == "UsageError" and "invalid choice: 'frobnicate'" in out.evalue
    out = kernel.run("%%durable\nx = 1\ny = (\n")
    assert out.ename == "CellSyntaxError" and len(out.traceback) == 2
    assert out.traceback[1] == "    y = ("
    assert "SyntaxError in the %%durable cell, line 3: '(' was never closed" in out.traceback[0]
    out = kernel.run("%%durable --wait --out nothere\nx = 1\n")
    assert out.ename == "ApiError" and "no variable 'nothere'" in out.traceback[0]
    kernel.ok("import socket\nconn = socket.socket()")
    out = kernel.run("%%durable\nx = conn\n")
    kernel.ok("conn.close()")
    assert out.ename == "NotPicklable" and len(out.traceback) == 1
    assert "variable 'conn'" in out.evalue and "--transient conn" in out.evalue
    out = kernel.ok("%%durable -h\nx = 1\n")
    assert "--idempotency-key" in out.stdout and not out.results


def test_options_reach_the_run(kernel):
    cell = ("%%durable --name opts --retries 2 --queue cells-q --concurrency 1 "
            "--idempotency-key same-key --max-duration 1h --wait\nv = 1\n")
    first = run_id(kernel.ok(cell).stdout)
    assert run_id(kernel.ok(cell).stdout) == first, "the same key returns the same run"
    info = kernel.value(f"{{k: v for k, v in dn.get_run({first!r}).info().items() "
                        "if k in ('task_id', 'kind', 'queue', 'idempotency_key')}")
    assert info == {"task_id": "opts", "kind": "cell", "queue": "cells-q",
                    "idempotency_key": "same-key"}
    opts = kernel.value(f"dn.sql(\"select t.options from tasks t join runs r on "
                        f"r.task_hash = t.hash where r.id = '{first}'\")[0][0]")
    assert '"max_attempts": 3' in opts and '"max_duration": 3600.0' in opts
    out = kernel.run("%%durable --wait --timeout 0.3s\nimport time\ntime.sleep(30)\n")
    assert out.ename == "RunFailed" and "TIMED_OUT" in out.traceback[0]
    assert out.traceback[1].startswith("TimedOut: the attempt ran longer than kill_after")


# ---------------------------------------------------------------------- %durable

TASKS = '''
@dn.task(id="magic-approval")
def needs_ok(n):
    d = dn.approval("ship", data={"n": n})
    return {"n": n, "approved": d.approved, "comment": d.comment}

@dn.task(id="magic-slow")
def slow():
    import time
    time.sleep(60)
'''


def test_list_status_approve_reject_and_cancel(kernel):
    kernel.ok(TASKS)
    kernel.ok("run = needs_ok.trigger(5)\nimport time\n"
              "while run.status != 'WAITING': time.sleep(0.05)")
    rid = kernel.value("run.id")
    listing = kernel.ok("%durable list --limit 5 --text").stdout
    assert re.search(rf"{rid}\s+magic-approval\s+WAITING", listing)
    tree = kernel.ok("%durable status run").stdout  # a variable holding the run works too
    assert tree.startswith(f"{rid}  magic-approval  WAITING")
    assert "approval ship  pending" in tree and "data: {'n': 5}" in tree
    shown = kernel.ok("%durable attach run").stdout
    assert f"waiting for approval 'ship': %durable approve {rid}" in shown
    listed = kernel.ok("dn.runs(limit=2)").results[0]
    assert listed.startswith(f"[<RunHandle {rid} task='magic-approval' status=WAITING>,")
    out = kernel.ok(f"%durable approve {rid} --comment 'fine by me'")
    assert f"approved: approval 'ship' of run {rid}" in out.stdout
    again = kernel.run(f"%durable reject {rid}")
    assert again.ename == "WaitConflict" and len(again.traceback) == 1
    assert kernel.value("run.result(timeout=30)") == {"n": 5, "approved": True,
                                                       "comment": "fine by me"}
    kernel.ok("other = needs_ok.trigger(6)\n"
              "while other.status != 'WAITING': time.sleep(0.05)")
    kernel.ok("%durable reject other --comment no")
    assert kernel.value("other.result(timeout=30)")["approved"] is False
    kernel.ok("slow_run = slow.trigger()")
    out = kernel.ok("%durable cancel slow_run")
    assert "canceled run" in out.stdout
    assert kernel.value("slow_run.wait(30)") == "CANCELED"
    last = kernel.ok("%durable status last").stdout
    assert last.startswith(kernel.value("slow_run.id")) and "CANCELED" in last


def test_attach_in_another_kernel_brings_back_variables_and_results(kernel, scratch,
                                                                     engine_env):
    cell = kernel.submit(
        "%%durable --name handover\n"
        "import os, time\n"
        "prepared = [1, 2, 3]\n"
        "while not os.path.exists(os.path.join(scratch, 'go')):\n"
        "    time.sleep(0.02)\n"
        "print('finished the work')\n"
        "doubled = [2 * v for v in prepared]\n")
    rid = run_id(kernel.wait(cell).results[0])
    kernel.ok(TASKS + "\ntask_run = needs_ok.trigger(9)")
    task_rid = kernel.value("task_run.id")
    other = Kernel.start(engine_env)
    try:
        other.ok("%load_ext durable_nb")
        shown = other.ok(f"%durable attach {rid}")
        assert f"durable run {rid}  cell 'handover'" in shown.stdout
        assert "EXECUTING" in shown.stdout or "QUEUED" in shown.stdout
        (scratch / "go").write_text("")
        done = other.ok(f"%durable attach {rid} --wait")
        assert "finished the work" in done.stdout, "the logs are shown again"
        assert "variables in the namespace: doubled, os, prepared, scratch, time" in done.stdout
        assert other.value("doubled") == [2, 4, 6]
        other.ok(f"import time, durable_nb as dn\nr = dn.get_run({task_rid!r})\n"
                 "while r.status != 'WAITING': time.sleep(0.05)\nr.approve('ship')")
        res = other.ok(f"%durable attach {task_rid} --wait")
        assert res.results[-1] == "{'n': 9, 'approved': True, 'comment': None}"
        assert any(f"%durable attach {task_rid}" in r for r in res.results[:-1]), \
            "the live view comes with a line that says how to re-attach"
        assert other.value("_") == {"n": 9, "approved": True, "comment": None}
    finally:
        other.close()


def test_an_interrupt_stops_waiting_and_not_the_run(kernel, scratch):
    cell = kernel.submit(
        "%%durable --wait --name patient\n"
        "import os, time\n"
        "print('holding', flush=True)\n"
        "while not os.path.exists(os.path.join(scratch, 'go')):\n"
        "    time.sleep(0.02)\n"
        "answer = 42\n")
    # the run's own line printed into the cell: the magic is following it, in its wait
    kernel.until(cell, "holding")
    kernel.km.interrupt_kernel()
    out = kernel.wait(cell)
    assert out.status == "ok"
    assert "stopped waiting (kernel interrupt). The run goes on in its worker" in out.stderr
    rid = run_id(out.stderr)
    (scratch / "go").write_text("")
    kernel.until(cell, "COMPLETED")  # the follower keeps reporting into the cell
    kernel.ok(f"%durable attach {rid} --wait")
    assert kernel.value("answer") == 42


def test_resume_continues_a_failed_cell_and_brings_its_variables_back(kernel, scratch):
    out = kernel.run("%%durable --wait --name flaky-cell\n"
                     "import os\n"
                     "first = 41\n"
                     "marker = os.path.join(scratch, 'tried')\n"
                     "if not os.path.exists(marker):\n"
                     "    open(marker, 'w').close()\n"
                     "    raise ConnectionError('the model server is busy')\n"
                     "answer = first + 1\n")
    assert out.status == "error" and out.ename == "RunFailed" and "ConnectionError" in out.text
    rid = run_id(out.text)
    out = kernel.ok(f"%durable resume {rid} --wait")
    assert f"resumed run {rid}" in out.stdout and "checkpoint" in out.stdout
    assert kernel.value("answer") == 42


def test_an_unnamed_cell_is_named_after_its_notebook_and_cell(kernel):
    kernel.ok("__session__ = '/home/ann/work/analysis.ipynb'")
    out = kernel.ok("%%durable --wait\nx = 1\n")
    count = kernel.value("len(In) - 2")  # In[-1] is this cell; the one before ran %%durable
    task_of = "dn.get_run({!r}).info()['task_id']"
    assert kernel.value(task_of.format(run_id(out.text))) == f"analysis.ipynb [{count}]"
    kernel.ok("__session__ = ''")
    out = kernel.ok("%%durable --wait\ny = 2\n")
    assert kernel.value(task_of.format(run_id(out.text))).startswith("cell [")
