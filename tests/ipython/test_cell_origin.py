"""A %%durable cell's run records where it comes from: the notebook (relative to the
Jupyter root when the server exports it), the frontend's cell id and the execution count.
Real kernels (jupyter_client, nbclient) against a real standalone engine."""

from __future__ import annotations

import pytest
from _support import EngineProcess
from test_magics import Kernel, Out, run_id

import durable_nb as dn
from durable_nb.ipython.shell import ROOT_ENV


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = EngineProcess(tmp_path_factory.mktemp("origin") / "store.duckdb",
                        ["--wait-grace", "0.3"])
    eng.start()
    yield eng
    eng.stop()


def _env(engine) -> dict[str, str]:
    return {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}


def _execute(kernel: Kernel, code: str, cell_id: str | None = None) -> tuple[Out, int]:
    """An execute request as JupyterLab sends it (the cell's id in the metadata, when
    given); its output and the execution count the kernel replied with."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    meta = {"cellId": cell_id} if cell_id else {}
    msg = kernel.kc.session.msg("execute_request", content, metadata=meta)
    kernel.kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    kernel.outs[msg_id] = Out(msg_id)
    while msg_id not in kernel.replies:
        reply = kernel.kc.get_shell_msg(timeout=60)
        kernel.replies[reply["parent_header"].get("msg_id")] = reply
    count = kernel.replies[msg_id]["content"]["execution_count"]
    out = kernel.wait(msg_id)
    assert out.status == "ok", out.text
    return out, count


def test_a_cell_run_records_notebook_cell_id_and_count(engine, tmp_path):
    root = tmp_path / "root"
    kernel = Kernel.start({**_env(engine), "JPY_SESSION_NAME": str(root / "sub" / "a.ipynb"),
                           ROOT_ENV: str(root)})
    try:
        kernel.ok("%load_ext durable_nb\nimport durable_nb as dn")
        out, count = _execute(kernel, "%%durable --wait\nx = 1\n", "cell-7f3a")
        origin = dn.get_run(run_id(out.text)).info()["origin"]
        assert origin == {"notebook": "sub/a.ipynb", "cell_id": "cell-7f3a",
                          "execution_count": count}
        out, count = _execute(kernel, "%%durable --wait\ny = 2\n")  # no cell id sent
        origin = dn.get_run(run_id(out.text)).info()["origin"]
        assert origin == {"notebook": "sub/a.ipynb", "cell_id": None, "execution_count": count}
    finally:
        kernel.close()


def test_without_the_root_the_notebook_is_kept_as_the_frontend_gave_it(engine, tmp_path):
    path = str(tmp_path / "work" / "b.ipynb")
    kernel = Kernel.start({**_env(engine), "JPY_SESSION_NAME": path})
    try:
        kernel.ok("%load_ext durable_nb")
        out, count = _execute(kernel, "%%durable --wait\nz = 3\n")
        origin = dn.get_run(run_id(out.text)).info()["origin"]
        assert origin == {"notebook": path, "cell_id": None, "execution_count": count}
        kernel.ok("del __session__")  # a console: no notebook
        out = kernel.ok("%%durable --wait\nz = 4\n")
        origin = dn.get_run(run_id(out.text)).info()["origin"]
        assert origin["notebook"] is None and origin["execution_count"] > 0
    finally:
        kernel.close()


@pytest.mark.slow
def test_a_notebook_run_under_nbclient_records_its_cells(engine, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext durable_nb"),
        nbformat.v4.new_code_cell("%%durable --wait\nfirst = 1\n"),
        nbformat.v4.new_code_cell("%%durable --wait\nsecond = first + 1\n"),
    ])
    notebook = tmp_path / "job.ipynb"
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(
        env={**_env(engine), "JPY_SESSION_NAME": str(notebook), ROOT_ENV: str(tmp_path)})
    for cell in nb.cells[1:]:
        text = "".join(o.get("text", "") + str(o.get("data", "")) for o in cell.outputs)
        origin = dn.get_run(run_id(text)).info()["origin"]
        # nbclient (0.10, 0.11) sends no cellId in the request's metadata; JupyterLab does
        assert origin["notebook"] == "job.ipynb"
        assert origin["execution_count"] == cell.execution_count
        assert origin["cell_id"] in (None, cell.id)
