"""Fixtures of the browser tests: one real JupyterLab server per test module (durable_nb's
server extension enabled, a fresh root_dir, 127.0.0.1 with a token) and a Playwright page in
Debian's Chromium (mark the tests with ``pytestmark = pytest.mark.browser``). Each test gets test-output/<test name>/ with its screenshots (final.png
always) and, when it failed, the browser console (console.log)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

# the tests import their helpers as `from _lab import ...`
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import CHROMIUM, CHROMIUM_ARGS, LABEXTENSION, OUT, Lab  # noqa: E402

# Chromium reports every HTTP error answer as a console error; these are expected where a
# test makes the server refuse something on purpose. Nothing else is tolerated.
EXPECTED_CONSOLE = ("the server responded with a status of 409",)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A `jupyter lab` process for this test module."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.fail("the browser tests need JupyterLab (pip install jupyterlab)")
    server = Lab(tmp_path_factory.mktemp("lab")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab_client(lab):
    """This process's durable client, pointed at the lab's engine (the panel built)."""
    if not (LABEXTENSION / "package.json").exists():
        pytest.fail(f"the lab extension is not built ({LABEXTENSION} is missing): run "
                    "`pip install -e .`, or `npm install && npm run build` in labextension/")
    import durable_nb as dn

    return dn.connect(url=lab.url, token=lab.token)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("the browser tests need playwright (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, lab, request):
    """A fresh browser page. ``page.out`` is the test's output folder, ``page.console`` the
    console messages so far, ``page.console_errors()`` the unexpected errors among them."""
    out = OUT / request.node.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    console: list[tuple[str, str]] = []
    pg.on("console", lambda m: console.append((m.type, m.text)))
    pg.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    pg.out = out  # type: ignore[attr-defined]
    pg.console = console  # type: ignore[attr-defined]
    pg.console_errors = lambda: [  # type: ignore[attr-defined]
        f"[{kind}] {text}" for kind, text in console
        if kind in ("error", "pageerror") and not any(x in text for x in EXPECTED_CONSOLE)]
    failed_before = request.session.testsfailed
    yield pg
    with contextlib.suppress(Exception):
        pg.screenshot(path=str(out / "final.png"), full_page=True)
    if request.session.testsfailed > failed_before:
        (out / "console.log").write_text("".join(f"[{k}] {t}\n" for k, t in console))
        with contextlib.suppress(Exception):
            shutil.copy(lab.log, out / "lab.log")
    context.close()
