"""Kishu workloads 9 and 10, run inside the ``kishu`` venv.

Kishu (PyPI ``kishu``) checkpoints a Jupyter kernel's namespace incrementally after
each cell, from IPython's ``post_run_cell`` hook, into a SQLite file beside the
notebook (``<name>.kishudb``; its config goes to ``$KISHU_PATH_ROOT/.kishu``).  It finds its notebook through a running Jupyter server's
sessions; with no server (as here), its own test switches are used:
``TEST_NOTEBOOK_PATH`` names the notebook file (written by this script with the same
cells) and ``ENV_KISHU_TEST_MODE`` skips saving and reloading a browser front end.
Checkpointing itself is unchanged by them.  Each statement is one cell, executed
through jupyter_client in a real ipykernel; a statement's time is the execute request
to its reply, which Kishu sends after its checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import _common as c
import _data as d


def _notebook(path: str, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def _kernel(work: str, notebook: str) -> tuple[Any, Any]:
    """A kernel of this venv's Python with Kishu's headless switches set."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = os.path.join(work, "kernels", "kishu")
    os.makedirs(spec_dir, exist_ok=True)
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                            "{connection_file}"],
                   "display_name": "kishu", "language": "python"}, f)
    km = KernelManager(kernel_name="kishu",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[os.path.dirname(spec_dir)]))
    env = dict(os.environ, TEST_NOTEBOOK_PATH=notebook, ENV_KISHU_TEST_MODE="1",
               KISHU_PATH_ROOT=work)
    km.start_kernel(cwd=work, env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc


def _run(kind: str, n: int, work: str, p: dict[str, Any]) -> c.Result:
    nrows = d.rows(p)
    floors = d.inline_floors(work, nrows)
    notebook = os.path.join(work, "bench.ipynb")
    stmts = d.statements(kind, n)
    init = f"from kishu import init_kishu\ninit_kishu({notebook!r})"
    build = f"df, t_built = {d.build_expr(nrows)}, time.time()"
    _notebook(notebook, [init, d.IMPORTS, build, *stmts])
    db = os.path.splitext(os.path.basename(notebook))[0] + ".kishudb"  # beside the notebook
    km, kc = _kernel(work, notebook)
    try:
        def run(code: str) -> dict[str, Any]:
            reply = kc.execute_interactive(code, timeout=p["limit_s"] * 0.5,
                                           output_hook=lambda m: None,
                                           user_expressions={"t": "t_built"})
            if reply["content"].get("status") != "ok":
                err = reply["content"]
                raise RuntimeError(f"cell failed: {err.get('ename')}: {err.get('evalue')}")
            return reply["content"]

        for code in (init, d.IMPORTS):
            run(code)
        rep = run(build)
        first_s = time.time() - float(rep["user_expressions"]["t"]["data"]["text/plain"])
        times, written = [], []
        for stmt in stmts:
            before = c.dir_bytes(work, db)
            t = time.perf_counter()
            run(stmt)
            times.append(time.perf_counter() - t)
            written.append(c.dir_bytes(work, db) - before)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return d.figures(kind, times, written, nrows, floors, first_s,
                     store_mb=c.dir_bytes(work, db) / 1e6,
                     bytes_note="growth of Kishu's SQLite file (beside the notebook) per cell")



if __name__ == "__main__":
    c.run_main(d.workloads(_run))
