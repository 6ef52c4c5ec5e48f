"""Previews of a step's arguments and output: safe JSON for any value, never raising, small
for small values, with a DataFrame's head, an array's shape and an image's thumbnail."""

import base64
import json
import os
import threading

import pytest

from durable_nb.worker import previews as P


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class HugeRepr:
    def __repr__(self):
        return "x" * 100_000


@pytest.mark.parametrize("value,shown", [
    (1, "1"), (2.5, "2.5"), (None, "None"), ("hi", "'hi'"), (b"\x00", "b'\\x00'"),
    ([1, [2, 3]], "[1, [2, 3]]"), ({"a": (1,)}, "{'a': (1,)}"), ({1, 2}, "{1, 2}"),
])
def test_small_values_are_their_repr(value, shown):
    p = P.preview(value)
    assert p == {"type": type(value).__name__, "repr": shown}
    json.dumps(p)


def test_a_failing_repr_is_named_not_raised():
    assert P.preview(BadRepr())["repr"] == "<repr failed: RuntimeError: no repr for you>"
    assert "<repr failed" in P.preview([1, BadRepr()])["repr"]  # inside a container too
    assert P.preview(BadRepr())["type"].endswith("BadRepr")


def test_big_values_are_truncated():
    assert len(P.preview(HugeRepr())["repr"]) <= P.MAX_REPR
    assert len(P.preview("y" * 10**6)["repr"]) <= P.MAX_REPR
    big = P.preview(list(range(10**6)))["repr"]
    assert len(big) <= P.MAX_REPR and big.endswith("...]")
    deep: list = []
    for _ in range(50):
        deep = [deep]
    assert len(P.preview(deep)["repr"]) < 200


class SurrogateRepr:
    def __repr__(self):
        return "a\ud800b"


def test_text_that_no_store_holds_is_cleaned():
    assert P.preview(SurrogateRepr())["repr"] == "a?b"
    P.preview("a\ud800b")["repr"].encode("utf-8")


def test_a_call_is_recorded_with_previews_of_each_argument():
    blob, text = P.record_call((1, "two"), {"three": [3]})
    import pickle

    assert pickle.loads(blob) == ((1, "two"), {"three": [3]})
    out = json.loads(text)
    assert out == {"args": [{"type": "int", "repr": "1"}, {"type": "str", "repr": "'two'"}],
                   "kwargs": {"three": {"type": "list", "repr": "[3]"}}, "recorded": True,
                   "size": len(blob)}


def test_an_unpicklable_or_too_large_call_is_previewed_but_not_recorded():
    blob, text = P.record_call((threading.Lock(),), {})
    out = json.loads(text)
    assert blob is None and out["recorded"] is False
    assert "cannot pickle '_thread.lock'" in out["note"] and "lock" in out["args"][0]["repr"]
    blob, text = P.record_call(("z" * 5000,), {}, limit=1000)
    out = json.loads(text)
    assert blob is None and "more than the 1000 B kept" in out["note"]
    assert len(out["args"][0]["repr"]) <= P.MAX_REPR
    blob, text = P.record_call((list(range(3 * 10**6)),), {})  # pickling stops at the cap
    assert blob is None and "more than the 4.0 MB kept" in json.loads(text)["note"]
    blob, text = P.record_call((bytes(10**7),), {})  # too big to even try pickling
    assert blob is None and "over 9.5 MB" in json.loads(text)["note"]


def test_many_arguments_are_counted_not_all_previewed():
    _, text = P.record_call(tuple(range(30)), {})
    out = json.loads(text)
    assert len(out["args"]) == P.MAX_VALUES and out["more"] == 10


def test_dataframe_and_series_show_their_head_shape_and_dtypes():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"name": ["a", "<b>", "c"] * 100, "n": range(300)})
    p = json.loads(P.output_preview(df))
    assert p["type"].endswith("DataFrame") and p["shape"] == [300, 2]
    assert p["dtypes"] == {"name": str(df["name"].dtype), "n": "int64"}
    assert p["table"]["columns"] == ["name", "n"] and p["table"]["index"] == [
        "0", "1", "2", "3", "4"]
    assert p["table"]["rows"][1] == ["<b>", "1"]
    assert "<table" in p["html"] and "&lt;b&gt;" in p["html"]
    s = json.loads(P.output_preview(df["n"]))
    assert s["shape"] == [300] and s["dtype"] == "int64" and s["table"]["columns"] == ["n"]
    wide = pd.DataFrame([list(range(100))])
    assert json.loads(P.output_preview(wide))["table"]["more_columns"] == 100 - P.HEAD_COLS


def test_numpy_arrays_show_shape_and_dtype():
    np = pytest.importorskip("numpy")
    p = P.preview(np.zeros((1000, 1000), dtype="float32"))
    assert p["shape"] == [1000, 1000] and p["dtype"] == "float32"
    assert len(p["repr"]) <= P.MAX_REPR and p["repr"].startswith("array(")


def _png_size(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_pil_image_has_a_small_thumbnail():
    Image = pytest.importorskip("PIL.Image")
    img = Image.frombytes("RGB", (2000, 1000), os.urandom(2000 * 1000 * 3))  # noise: big PNG
    p = P.preview(img)
    assert p["shape"] == [1000, 2000] and p["mode"] == "RGB"
    w, h = _png_size(p["image"])
    assert max(w, h) <= P.THUMB_PX and w == 2 * h
    assert len(base64.b64decode(p["image"])) <= P.MAX_IMAGE


def test_a_matplotlib_figure_has_a_thumbnail():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([1, 3, 2])
    p = P.preview(fig)
    plt.close(fig)
    w, h = _png_size(p["image"])
    assert 200 <= w <= 400 and h < w and p["image_size"] == [w, h]


def test_too_many_thumbnails_are_dropped_from_one_preview():
    Image = pytest.importorskip("PIL.Image")
    imgs = [Image.frombytes("RGB", (240, 240), os.urandom(240 * 240 * 3))
            for _ in range(P.MAX_VALUES)]
    _, text = P.record_call(tuple(imgs), {})
    assert len(text) <= P.MAX_PREVIEW
    out = json.loads(text)
    assert "image" in out["args"][0] and "image" not in out["args"][-1]
    assert "too large" in out["args"][-1]["note"]


def test_a_library_object_that_misbehaves_keeps_its_repr():
    pd = pytest.importorskip("pandas")

    class Odd(pd.DataFrame):
        def head(self, n=5):
            raise RuntimeError("no head")

    p = P.preview(Odd({"a": [1]}))
    assert "no rich preview: RuntimeError: no head" in p["note"] and "a" in p["repr"]
