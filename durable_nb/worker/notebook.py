"""The IPython display machinery a %%durable cell runs under in a worker.

A worker has no kernel, so this module makes one IPython ``InteractiveShell`` (on the first
cell; no history, nothing written in the home folder) whose display publisher turns
``display``, ``update_display`` and ``clear_output`` (the names, and those of
``IPython.display``) into output records of the run (``display``). IPython's formatters do
the rest: ``_repr_html_``, ``_repr_mimebundle_``, ``_ipython_display_``, DataFrames, plotly
figures. matplotlib draws with the inline backend: ``plt.show()`` shows figures as PNG
images, and figures left open at the end of the cell are shown and closed. tqdm draws text bars (``tqdm.notebook``'s
widgets could not reach the notebook), which the worker's streams turn into progress
records. Imported only when a cell runs, so that tasks do not pay for IPython."""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import tokenize
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import context as _context
from . import display as _display

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

INLINE = "module://matplotlib_inline.backend_inline"
PLOTLY = "plotly_mimetype+notebook_connected"  # the figure's JSON, and HTML that loads plotly

_shell: InteractiveShell | None = None
_sink: _context.RunContext | None = None  # the attempt whose cell runs (threads included)


def _send(record: dict) -> None:
    """Send ``record`` for the running cell, after the text printed before it."""
    ctx = _context.current() or _sink
    if ctx is None:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    ctx.send(_display.log_message(record))  # type: ignore[arg-type]


CLEAR = "clear"  # a record's op (records are log lines, not protocol messages)


def _publisher_class() -> type:
    from IPython.core.displaypub import DisplayPublisher

    class RecordPublisher(DisplayPublisher):
        """Publishes displays as output records of the running cell."""

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False,
                    **kwargs) -> None:
            display_id = (transient or {}).get("display_id")
            _send({"op": "update" if update else "display", "data": data,
                   "metadata": metadata or {}, "id": display_id})

        def clear_output(self, wait: bool = False) -> None:
            _send({"op": CLEAR, "wait": bool(wait)})

    return RecordPublisher


def shell() -> InteractiveShell | None:
    """The worker's shell, made on first use; None where this process already has one (a
    kernel hosting test workers in threads), which is then left alone."""
    global _shell
    from IPython.core.interactiveshell import InteractiveShell

    if _shell is not None or InteractiveShell.initialized():
        return _shell
    from IPython.core.profiledir import ProfileDir
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no sqlite file
    scratch = tempfile.mkdtemp(prefix="durable-ipython-")
    try:  # the shell makes its folders at start only: in a scratch folder, removed at once
        _shell = InteractiveShell.instance(
            config=config, ipython_dir=scratch,
            profile_dir=ProfileDir(location=os.path.join(scratch, "profile")),
            display_pub_class=_publisher_class(),
            user_module=types.ModuleType("__durable_shell__"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    from IPython.display import clear_output, display, update_display

    # as in a notebook (``display``), and the two others a cell commonly calls
    for fn in (display, update_display, clear_output):
        setattr(builtins, fn.__name__, fn)
    return _shell


def _text_tqdm() -> None:
    """``tqdm.notebook`` draws text bars here: its widgets would live in the worker."""
    mod = sys.modules.get("tqdm.notebook")
    if mod is not None and getattr(mod, "_durable_text", False):
        return
    if mod is None and importlib.util.find_spec("tqdm") is None:
        return
    names = {"tqdm": "tqdm", "tqdm_notebook": "tqdm", "trange": "trange", "tnrange": "trange"}
    if mod is None:
        mod = types.ModuleType("tqdm.notebook", "tqdm.notebook, as text bars in a worker")

        def __getattr__(name: str) -> Any:
            import tqdm.std

            if name in names:
                return getattr(tqdm.std, names[name])
            raise AttributeError(name)

        mod.__getattr__ = __getattr__  # type: ignore[method-assign]
        mod.__all__ = list(names)  # type: ignore[attr-defined]
        sys.modules["tqdm.notebook"] = mod
    else:
        import tqdm.std

        for name, std in names.items():
            setattr(mod, name, getattr(tqdm.std, std))
    mod._durable_text = True  # type: ignore[attr-defined]


def _matplotlib(sh: InteractiveShell) -> None:
    """The inline backend for figures, as in a notebook (matplotlib loads it on import)."""
    if "matplotlib" not in sys.modules:
        return  # MPLBACKEND (set by ``session``) chooses it when the cell imports matplotlib
    import matplotlib

    if matplotlib.get_backend() not in (INLINE, "inline") and _has("matplotlib_inline"):
        with contextlib.suppress(Exception):
            sh.enable_matplotlib("inline")


def _plotly() -> None:
    mod = sys.modules.get("plotly.io")
    if mod is not None and mod.renderers.default in (None, "", "browser"):
        mod.renderers.default = PLOTLY


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _env(**values: str | None) -> Iterator[None]:
    """Environment variables set for the cell (those the user set are kept), then restored."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is not None and k not in os.environ:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


class Cell:
    """One cell run under the shell: ``show`` the last value, ``end`` the cell."""

    def __init__(self, sh: InteractiveShell | None):
        self.sh = sh

    def end(self) -> None:
        """The cell's end (or its error): what a kernel does after a cell, so figures left
        open are shown and closed by the inline backend. Not after each statement: a figure
        is often drawn over several (``fig, ax = plt.subplots()``, then ``ax.plot(...)``);
        ``plt.show()`` shows it at once."""
        if self.sh is not None:
            self.sh.events.trigger("post_execute")

    def show(self, value: Any) -> None:
        """The value of the cell's last expression, displayed as a notebook shows it. A
        figure is shown once: closed first, so the end-of-statement pass does not show it."""
        if value is None or self.sh is None:
            return
        plt = sys.modules.get("matplotlib.pyplot")
        figure = sys.modules.get("matplotlib.figure")
        if plt is not None and figure is not None and isinstance(value, figure.Figure):
            plt.close(value)
        from IPython.display import display

        display(value)


@contextlib.contextmanager
def session(ctx: _context.RunContext, in_worker: bool) -> Iterator[Cell]:
    """The display machinery around one cell run. ``in_worker``: this process is a worker
    of its own, where the shell may be made; elsewhere (test workers in threads) the cell
    runs as plain Python."""
    global _sink
    sh = shell() if in_worker else None
    if sh is None:
        yield Cell(None)
        return
    _sink = ctx
    mpl = INLINE if _has("matplotlib_inline") else None
    try:
        with _env(MPLBACKEND=mpl, PLOTLY_RENDERER=PLOTLY):
            _text_tqdm()
            _matplotlib(sh)
            _plotly()
            yield Cell(sh)
    finally:
        _sink = None


def shows_value(text: str) -> bool:
    """Whether a statement's value is displayed: an expression not ending with ';' (the
    notebook's rule)."""
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT):
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.string != ";"
