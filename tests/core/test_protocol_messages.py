"""The worker messages of ``core.messages``: one TypedDict for every op the worker sends and
the engine handles (and back), read from the code of both; and real messages of each
type cross a socket pair unchanged."""

from __future__ import annotations

import ast
import asyncio
import socket
import threading
import typing
from pathlib import Path

import pytest

import durable_nb
from durable_nb.core import messages as m
from durable_nb.core.protocol import SyncChannel, encode, read_message

PKG = Path(durable_nb.__file__).parent
REPLY_BODIES = {"ok", "error", "run_ids", "resumed", "missing", "refused"}


def _ops(union: object) -> dict[str, type]:
    """op -> class of the TypedDicts in ``union`` that have an op."""
    out = {}
    for cls in typing.get_args(union):
        hint = typing.get_type_hints(cls).get("op")
        if hint is not None:
            (op,) = typing.get_args(hint)
            out[op] = cls
    return out


WORKER_OPS = _ops(m.WorkerMessage)
ENGINE_OPS = _ops(m.EngineMessage)


def _trees(folder: str) -> list[ast.AST]:
    return [ast.parse(p.read_text(), str(p)) for p in sorted((PKG / folder).glob("*.py"))]


def _is_op(node: ast.AST) -> bool:
    """``x["op"]`` or ``x.get("op")``."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "op"
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and node.args[0].value == "op")


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant)}
    return set()


def _sent(trees: list[ast.AST]) -> set[str]:
    """Ops of the messages built in the code: ``{"op": "x", ...}`` or ``T(op="x", ...)``."""
    out: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "op":
                        out |= _strings(v)
            elif isinstance(node, ast.Call):
                out |= {s for kw in node.keywords if kw.arg == "op" for s in _strings(kw.value)}
    return out


def _handled(trees: list[ast.AST]) -> set[str]:
    """Ops the code receives: compared with a message's op, ``_op_<op>`` methods, and the
    string keys of a ``...handlers`` table."""
    out: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and _is_op(node.left):
                for c in node.comparators:
                    out |= _strings(c)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name.startswith("_op_"):
                    out.add(node.name[len("_op_"):])
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "")
                         for t in targets]
                if any(n.endswith("handlers") for n in names):
                    out |= {k.value for k in node.value.keys
                            if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return out


def _reply_bodies(trees: list[ast.AST]) -> set[str]:
    """Keys of the bodies the engine answers with: ``reply(worker, msg, {...})``."""
    out: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and len(node.args) == 3
                    and getattr(node.func, "id", getattr(node.func, "attr", "")).lstrip("_")
                    == "reply" and isinstance(node.args[2], ast.Dict)):
                out |= {k.value for k in node.args[2].keys if isinstance(k, ast.Constant)}
    return out


def test_every_op_the_worker_sends_has_a_type():
    sent = _sent(_trees("worker"))
    assert sent, "no message found in worker/"
    assert sent == set(WORKER_OPS)


def test_every_op_the_engine_handles_has_a_type_and_every_type_is_handled():
    handled = _handled(_trees("engine"))
    assert handled == set(WORKER_OPS)


def test_every_op_the_engine_sends_has_a_type():
    engine = _trees("engine")
    assert _sent(engine) == set(ENGINE_OPS)
    assert _handled(_trees("worker")) <= set(ENGINE_OPS)
    assert _reply_bodies(engine) == REPLY_BODIES


def test_replies_name_their_attempt_and_request():
    replies = typing.get_args(m.Reply)
    bodies = set()
    for cls in replies:
        keys = set(typing.get_type_hints(cls))
        assert {"aid", "re"} <= keys and cls.__required_keys__ == keys
        (body,) = keys - {"aid", "re"}
        bodies.add(body)
    assert bodies == REPLY_BODIES
    assert set(replies) <= set(typing.get_args(m.EngineMessage))


ERROR: m.ErrorInfo = {"type": "ValueError", "message": "bad", "traceback": "Traceback ...",
                      "abort": False}
RESOLUTION: m.Resolution = {"outcome": "approved", "at": 2.0, "by": "ann", "comment": "ok",
                            "values": {"n": 3}, "seq": 1}
EXAMPLES: list[m.Message] = [
    {"op": "hello", "pid": 42, "slot": "s1", "token": "t", "worker": "tcp://10.0.0.3:4001",
     "host": "node-3"},
    {"op": "log", "stream": "stdout", "lines": ["é", "x"], "at": 1.0, "aid": "r/1"},
    {"op": "step", "key": "s#1", "name": "s", "attempt": 1, "start": 1.0, "end": 2.0,
     "output": b"\x80\x05N.", "aid": "r/1", "req": 1, "args": b"\x80\x05)}\x86.",
     "args_preview": '{"args": [], "kwargs": {}, "recorded": true}',
     "output_preview": '{"type": "NoneType", "repr": "None"}', "args_hash": "0f" * 16},
    {"op": "step_failed", "key": "s#1", "name": "s", "attempt": 2, "start": 1.0, "end": 2.0,
     "error": ERROR, "final": True, "exc": b"\x80", "delay": None, "aid": "r/1", "req": 2,
     "args": None, "args_preview": None, "args_hash": None},
    {"op": "wait", "key": "approval:ship#1", "kind": "approval", "name": "ship",
     "data": None, "preview": {"n": 1}, "timeout": 60.0, "target": None, "aid": "r/1",
     "req": 3, "form": {"type": "object", "properties": {"n": {"type": "integer"}},
                        "required": ["n"], "additionalProperties": False}, "mode": "async"},
    {"op": "waits_idle", "keys": ["approval:ship#1", "event:go#1"], "aid": "r/1"},
    {"op": "trigger", "key": "trigger:t#1",
     "task": {"hash": "h", "task_id": "t", "code": b"c", "sys_path": ["/x"], "options": {}},
     "payloads": [b"p"], "options": {"delay": None, "tags": [], "concurrency_key": None,
                                     "ttl": None}, "aid": "r/1", "req": 4},
    {"op": "send_event", "key": "e", "data": b"d", "aid": "r/1", "req": 5},
    {"op": "checkpoint", "statement": 1, "total": 2,
     "manifest": {"a": {"p": ["h"], "s": 1, "b": [["f"]], "n": [2 << 20], "o": [0]}},
     "counts": {"s": 1}, "blobs": {"h": b"v"}, "files": {"f": 2 << 20}, "size": 1,
     "took": 0.01, "aid": "r/1", "req": 6},
    {"op": "metadata", "change": "increment", "key": "rows", "value": "2",
     "call": "fetch#1/metadata:rows#3", "aid": "r/1", "req": 7},
    {"op": "progress", "done": 63, "total": 100.0, "text": "embedding", "at": 1.0,
     "aid": "r/1"},
    {"op": "done", "output": b"o", "aid": "r/1"},
    {"op": "failed", "error": ERROR, "aid": "r/1"},
    {"op": "suspended", "aid": "r/1"},
    {"op": "run", "run_id": "r", "attempt": 1, "aid": "r/1", "task_id": "t",
     "task_hash": "h", "code": b"c", "sys_path": [], "payload": b"p", "generation": 0,
     "steps": {"s#1": ("ok", b"o")}, "step_failures": {"s#2": 1},
     "waits": {"approval:ship#1": RESOLUTION}, "max_payload": 1 << 20,
     "max_checkpoint": 1 << 20, "blob_dir": "/db.duckdb.blobs",
     "checkpoint": {"statement": 1, "manifest": {"a": "h"}, "counts": {}, "seq": 1,
                    "blobs": {"h": b"v"}, "sizes": {"h": 1}},
     "step_calls": {"s#1": (1.0, 2.0, "0f" * 16, '{"args": []}')}, "on_divergence": "raise"},
    {"ok": True, "aid": "r/1", "re": 1},
    {"error": "no", "aid": "r/1", "re": 4},
    {"missing": ["f"], "aid": "r/1", "re": 6},
    {"run_ids": ["c1"], "aid": "r/1", "re": 4},
    {"resumed": 2, "aid": "r/1", "re": 5},
    {"refused": {"type": "PayloadTooLarge", "message": "over 256 KB"}, "aid": "r/1",
     "re": 7},
    {"op": "resolved", "aid": "r/1", "key": "approval:ship#1", "resolution": RESOLUTION},
    {"op": "suspend", "aid": "r/1", "key": "approval:ship#1"},
    {"op": "refused", "why": "unknown attempt or wrong token"},
]


def _type_of(msg: typing.Mapping[str, object]) -> type:
    if "op" in msg:
        return {**WORKER_OPS, **ENGINE_OPS}[str(msg["op"])]
    (cls,) = [c for c in typing.get_args(m.Reply) if set(typing.get_type_hints(c)) == set(msg)]
    return cls


def test_the_examples_cover_every_type_with_all_its_fields():
    types = [_type_of(msg) for msg in EXAMPLES]
    assert set(types) == set(typing.get_args(m.Message))
    for msg, cls in zip(EXAMPLES, types, strict=True):
        assert set(msg) == set(typing.get_type_hints(cls)), cls.__name__


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda msg: _type_of(msg).__name__)
def test_a_message_crosses_a_socket_pair_unchanged(msg):
    """Worker -> engine through SyncChannel and read_message, and back through encode and
    SyncChannel.recv: the same plain dict arrives."""
    assert type(msg) is dict
    a, b = socket.socketpair()

    async def engine_side() -> dict:
        reader, writer = await asyncio.open_connection(sock=b)
        got = await read_message(reader)
        writer.write(encode(got))
        await writer.drain()
        writer.close()
        return got

    worker = SyncChannel(a)
    back: list[dict] = []
    t = threading.Thread(target=lambda: back.append(dict(worker.recv())))
    with a:
        worker.send(msg)  # type: ignore[arg-type]  # engine messages too: framing is one
        t.start()
        got = asyncio.run(engine_side())
        t.join(10)
    assert got == msg and back == [msg]
    assert encode(got) == encode(msg)
