"""Safe previews of a step's call and output, made in the worker while the values are alive.

A step's try records its call (``(args, kwargs)`` pickled, when it pickles and is small
enough to keep) and JSON previews of its arguments and output: a truncated repr, the head
of a pandas DataFrame or Series with its shape and dtypes, a numpy array's shape and dtype,
a small PNG thumbnail of a PIL image or a matplotlib figure. Views show the previews (they
never unpickle a user's object); ``RunHandle.steps[i].args`` unpickles the call.

Nothing here raises: a failing ``__repr__`` gives ``"<repr failed: ...>"``. Libraries are
only looked at when the user's code has imported them already (``sys.modules``), so a
small value costs a ``repr`` and a ``json.dumps``.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import reprlib
import sys
from typing import Any

import cloudpickle

from ..core import serial as _serial
from ..core.serial import clean_text, type_name

MAX_REPR = 2000  # characters of a value's repr
MAX_IMAGE = 64 * 1024  # bytes of a thumbnail's PNG
MAX_HTML = 16 * 1024  # characters of a DataFrame head's HTML
MAX_ARGS = 4 * 1024 * 1024  # bytes of a pickled call kept for RunHandle.steps[i].args
MAX_VALUES = 20  # positional (and keyword) arguments previewed
MAX_PREVIEW = 256 * 1024  # characters of one preview's JSON before images and tables go
HEAD_ROWS, HEAD_COLS, CELL = 5, 20, 80  # a table preview's rows, columns, characters a cell
THUMB_PX = 240


class _Repr(reprlib.Repr):
    """reprlib with larger limits, and a failing ``__repr__`` named instead of hidden."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxset = 4, 30, 30, 30
        self.maxfrozenset, self.maxdeque, self.maxarray, self.maxdict = 30, 30, 30, 20
        self.maxstring, self.maxlong, self.maxother = MAX_REPR, 200, MAX_REPR

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception as exc:
            return f"<repr failed: {type(exc).__name__}: {_short(exc)}>"
        return text if len(text) <= self.maxother else text[:self.maxother - 3] + "..."


_REPR = _Repr()


def _short(exc: BaseException) -> str:
    try:
        return str(exc)[:200]
    except Exception:
        return "?"


def safe_repr(value: Any) -> str:
    """A repr of at most about MAX_REPR characters; never raises."""
    try:
        text = _REPR.repr(value)
    except Exception as exc:  # reprlib's own walk of a container failed
        text = f"<repr failed: {type(exc).__name__}: {_short(exc)}>"
    if len(text) > MAX_REPR:
        text = text[:MAX_REPR - 3] + "..."
    return clean_text(text)


def preview(value: Any) -> dict:
    """A JSON-safe preview of one value: ``type``, ``repr`` and, for some kinds, more
    (``shape``, ``dtype``/``dtypes``, ``table``, ``html``, ``image``)."""
    out: dict[str, Any] = {"type": type_name(value)}
    out["repr"] = safe_repr(value)
    try:
        out.update(_rich(value))
    except Exception as exc:  # a library's object that does not behave: the repr is enough
        out["note"] = f"no rich preview: {type(exc).__name__}: {_short(exc)}"
    return out


def _rich(value: Any) -> dict:
    mods = sys.modules
    pd = mods.get("pandas")
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        return _pandas(value, pd)
    np = mods.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    pil = mods.get("PIL.Image")
    if pil is not None and isinstance(value, pil.Image):
        return _pil_thumbnail(value)
    mfig = mods.get("matplotlib.figure")
    if mfig is not None and isinstance(value, mfig.Figure):
        return _figure_thumbnail(value)
    return {}


def _cell(v: Any) -> str:
    text = safe_repr(v) if not isinstance(v, str) else clean_text(v)
    return text if len(text) <= CELL else text[:CELL - 1] + "…"


def _pandas(value: Any, pd: Any) -> dict:
    head = value.head(HEAD_ROWS)
    if isinstance(value, pd.Series):
        out: dict[str, Any] = {"shape": [int(value.shape[0])], "dtype": str(value.dtype)}
        frame = head.to_frame(name=value.name if value.name is not None else 0)
    else:
        out = {"shape": [int(value.shape[0]), int(value.shape[1])],
               "dtypes": {str(k): str(v) for k, v in list(value.dtypes.items())[:50]}}
        frame = head
    cols = list(frame.columns[:HEAD_COLS])
    out["table"] = {
        "columns": [_cell(c) for c in cols],
        "index": [_cell(i) for i in frame.index],
        "rows": [[_cell(x) for x in row] for row in frame[cols].itertuples(index=False)],
        "more_columns": max(0, frame.shape[1] - HEAD_COLS),
    }
    html = head.to_frame().to_html(max_cols=HEAD_COLS) if isinstance(value, pd.Series) \
        else head.to_html(max_cols=HEAD_COLS)
    if len(html) <= MAX_HTML:
        out["html"] = clean_text(html)
    return out


def _png(save: Any) -> dict:
    """Base64 of the PNG ``save(buffer, scale)`` writes, halving the scale until it fits."""
    for scale in (1.0, 0.5, 0.25):
        buf = io.BytesIO()
        size = save(buf, scale)
        data = buf.getvalue()
        if len(data) <= MAX_IMAGE:
            return {"image": base64.b64encode(data).decode(), "image_size": list(size)}
    return {"note": "thumbnail over 64 KB: not kept"}


def _pil_thumbnail(img: Any) -> dict:
    out: dict[str, Any] = {"shape": [img.height, img.width], "mode": str(img.mode)}

    def save(buf: io.BytesIO, scale: float) -> tuple[int, int]:
        side = max(16, int(THUMB_PX * scale))
        thumb = img.copy()
        thumb.thumbnail((side, side))
        if thumb.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            thumb = thumb.convert("RGBA")
        thumb.save(buf, format="PNG", optimize=True)
        return thumb.width, thumb.height

    out.update(_png(save))
    return out


def _figure_thumbnail(fig: Any) -> dict:
    width, height = fig.get_size_inches()

    def save(buf: io.BytesIO, scale: float) -> tuple[int, int]:
        dpi = max(10.0, THUMB_PX * 1.4 * scale / max(float(width), 0.1))
        fig.savefig(buf, format="png", dpi=dpi)
        return int(width * dpi), int(height * dpi)

    return _png(save)


def _budget(values: list[dict]) -> None:
    """Drop thumbnails, then tables, from the last values until the JSON is small enough."""
    if not any(len(p.get("image", "")) + len(p.get("html", "")) for p in values):
        return  # reprs alone stay within MAX_PREVIEW
    for field in ("image", "html", "table"):
        for p in reversed(values):
            if len(json.dumps(values)) <= MAX_PREVIEW:
                return
            if p.pop(field, None) is not None:
                p["note"] = f"{field} left out: the preview was too large"


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, ensure_ascii=True)


def output_preview(value: Any) -> str | None:
    """The JSON preview of a step's output (None only if even that failed)."""
    try:
        p = preview(value)
        _budget([p])
        return dumps(p)
    except Exception:
        return None


def _too_big(args: tuple, kwargs: dict) -> int:
    """A lower bound of the call's size from its large arrays and strings (no pickling)."""
    total = 0
    for v in (*args, *kwargs.values()):
        if isinstance(v, (bytes, bytearray, str)):
            total += len(v)
            continue
        nbytes = getattr(v, "nbytes", None)  # numpy arrays, pandas objects
        if isinstance(nbytes, int):
            total += nbytes
    return total


def record_call(args: tuple, kwargs: dict, limit: int = MAX_ARGS) -> tuple[bytes | None, str]:
    """(the pickled call or None, the JSON preview of its arguments) for a step's try.

    The call is kept when it pickles to at most ``limit`` bytes; otherwise the preview's
    ``note`` says why it was not."""
    blob: bytes | None = None
    note = None
    guess = _too_big(args, kwargs)
    if guess > limit:
        note = (f"not recorded: the arguments are over {_serial.fmt_size(guess)}, more than "
                f"the {_serial.fmt_size(limit)} kept for inspection")
    else:
        try:
            blob = _capped_dumps((args, kwargs), limit)
        except _TooBig:
            note = (f"not recorded: the arguments are more than the {_serial.fmt_size(limit)} "
                    "kept for inspection")
        except Exception as exc:  # pickling raises many types
            note = (f"not recorded: the step's arguments cannot be pickled: "
                    f"{type(exc).__name__}: {_short(exc)}")
    return blob, _args_json(args, kwargs, blob, note)


class _TooBig(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """A buffer that refuses to grow past ``limit`` (pickling stops there, not at the end)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def write(self, b: Any) -> int:
        if self.tell() + len(b) > self.limit:
            raise _TooBig()
        return super().write(b)


def _capped_dumps(value: Any, limit: int) -> bytes:
    """``value`` pickled as ``core.serial.dumps`` does (cloudpickle, the highest protocol),
    giving up as soon as it passes ``limit`` bytes."""
    buf = _CappedBuffer(limit)
    cloudpickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buf.getvalue()


def _args_json(args: tuple, kwargs: dict, blob: bytes | None, note: str | None) -> str:
    try:
        pos = [preview(a) for a in args[:MAX_VALUES]]
        named = {clean_text(str(k)): preview(v) for k, v in list(kwargs.items())[:MAX_VALUES]}
        _budget([*pos, *named.values()])
        out: dict[str, Any] = {"args": pos, "kwargs": named, "recorded": blob is not None}
        if len(args) > MAX_VALUES or len(kwargs) > MAX_VALUES:
            out["more"] = max(0, len(args) - MAX_VALUES) + max(0, len(kwargs) - MAX_VALUES)
        if blob is not None:
            out["size"] = len(blob)
        if note:
            out["note"] = clean_text(note)
        return dumps(out)
    except Exception as exc:  # should not happen: previews do not raise
        return dumps({"args": [], "kwargs": {}, "recorded": blob is not None,
                      "note": f"preview failed: {type(exc).__name__}: {_short(exc)}"})
