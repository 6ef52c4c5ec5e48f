"""A step call's arguments as a hash that is the same in every worker process.

A step records the hash of its ``(args, kwargs)`` (``steps.args_hash``); code that runs
again on a resume or a retry and calls the same step key with other arguments is a replay
divergence (``worker.divergence``). The pickle of a call is not stable across processes:
a set of strings iterates in an order that depends on the process's hash seed
(``PYTHONHASHSEED`` differs between workers), and pickle's memo depends on which equal
objects happen to be the same object. So the hash is taken of a canonical form instead:

- ``None``, numbers, strings and bytes by value; lists and tuples item by item;
- dicts by their items and sets by their elements, both sorted by each one's own hash,
  so equal dicts and sets hash alike whatever their order;
- arrays (numpy) by dtype, shape and memory; classes, functions and modules imported from
  a module by their dotted name; other functions (a notebook's, lambdas) by their code,
  defaults, closure and the globals they read, line numbers left out;
- any other object by what pickle would store of it (``__reduce_ex__``): its class and
  its state, walked by the same rules;
- a value met again inside itself (a cycle) by how far up it is.

A call with something pickle refuses (a connection, a lock, a generator), or larger than
``MAX_NODES`` values, has no hash (``None``): its step is not checked. An object whose
state holds what differs between processes (an id, an address) hashes differently in
each, and is then reported as a divergence.
"""

from __future__ import annotations

import copyreg
import importlib
import pickle
import sys
import types
from typing import Any, cast

import xxhash

MAX_NODES = 200_000  # values walked at most; a larger call has no hash
_PRIMITIVE_TAGS = {type(None): b"N", bool: b"B", int: b"I", float: b"F", complex: b"C",
                   str: b"S", bytes: b"Y", bytearray: b"A"}


class _NoHash(Exception):
    """The value has no canonical form here (pickle refuses it, or it is too large)."""


def args_hash(args: tuple, kwargs: dict) -> str | None:
    """The canonical hash of a step's call (xxh3-128, hex), or None when it has none."""
    walker = _Walker()
    try:
        return walker.digest((tuple(args), dict(kwargs))).hex()
    except (_NoHash, RecursionError):
        return None
    except Exception:  # a __reduce_ex__ that raises: such a value is not checked
        return None


class _Walker:
    """Feeds the canonical form of values to xxh3 hashers, counting what it walks."""

    def __init__(self) -> None:
        self.nodes = 0
        self.active: list[int] = []  # ids of the containers being walked (cycles)

    def digest(self, value: Any) -> bytes:
        h = xxhash.xxh3_128()
        self.feed(h, value)
        return h.digest()

    def feed(self, h: Any, value: Any) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _NoHash()
        tag = _PRIMITIVE_TAGS.get(type(value))
        if tag is not None:
            _put(h, tag, _primitive(value))
            return
        if id(value) in self.active:  # a cycle: named by its depth, the same everywhere
            _put(h, b"@", str(len(self.active) - self.active.index(id(value))).encode())
            return
        self.active.append(id(value))
        try:
            self._compound(h, value)
        finally:
            self.active.pop()

    def _compound(self, h: Any, value: Any) -> None:
        t = type(value)
        if t is list or t is tuple:
            _put(h, b"L" if t is list else b"T", str(len(value)).encode())
            for item in value:
                self.feed(h, item)
        elif isinstance(value, dict):
            self._pairs(h, b"D" + _name_of(t).encode(), list(value.items()))
        elif isinstance(value, (set, frozenset)):
            self._sorted(h, b"E" + _name_of(t).encode(), list(value))
        elif isinstance(value, (type, types.ModuleType, types.BuiltinFunctionType)):
            _put(h, b"G", _global_name(value).encode())
            owner = getattr(value, "__self__", None)
            if isinstance(value, types.BuiltinFunctionType) and not isinstance(
                    owner, (types.ModuleType, type(None))):
                self.feed(h, owner)  # a bound method of a builtin type: its object too
        elif isinstance(value, types.FunctionType):
            self._function(h, value)
        elif isinstance(value, types.CodeType):
            self._code(h, value)
        elif isinstance(value, types.MethodType):
            _put(h, b"M", value.__func__.__name__.encode())
            self.feed(h, value.__self__)
            self.feed(h, value.__func__)
        elif isinstance(value, (memoryview, pickle.PickleBuffer)):
            _put(h, b"Y", memoryview(cast(Any, value)).cast("B").tobytes())
        elif _is_array(value):
            self._array(h, value)
        else:
            self._reduced(h, value)

    def _pairs(self, h: Any, tag: bytes, items: list[tuple[Any, Any]]) -> None:
        keyed = sorted(((self.digest(k), v) for k, v in items), key=lambda p: p[0])
        _put(h, tag, str(len(keyed)).encode())
        for kd, v in keyed:
            h.update(kd)
            self.feed(h, v)

    def _sorted(self, h: Any, tag: bytes, items: list[Any]) -> None:
        digests = sorted(self.digest(x) for x in items)
        _put(h, tag, str(len(digests)).encode())
        for d in digests:
            h.update(d)

    def _function(self, h: Any, fn: types.FunctionType) -> None:
        name = _importable_name(fn)
        if name is not None:
            _put(h, b"G", name.encode())
            return
        _put(h, b"f", fn.__qualname__.encode())
        self._code(h, fn.__code__)
        self.feed(h, fn.__defaults__)
        self.feed(h, fn.__kwdefaults__)
        cells = [c.cell_contents if _filled(c) else None for c in fn.__closure__ or ()]
        self.feed(h, cells)
        read = {n: fn.__globals__[n] for n in sorted(_names(fn.__code__))
                if n in fn.__globals__}
        self.feed(h, read)

    def _code(self, h: Any, code: types.CodeType) -> None:
        _put(h, b"c", code.co_code)
        self.feed(h, (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                      code.co_argcount, code.co_kwonlyargcount, code.co_flags))
        self.feed(h, code.co_consts)

    def _array(self, h: Any, a: Any) -> None:
        _put(h, b"R", f"{a.dtype.str}|{a.shape}".encode())
        if a.dtype.hasobject:
            self.feed(h, a.ravel().tolist())
        else:
            np = sys.modules["numpy"]
            raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)  # any dtype, no copy
            _put(h, b"Y", memoryview(raw))

    def _reduced(self, h: Any, value: Any) -> None:
        """An object as pickle stores it: its reduce value, walked."""
        reducer = copyreg.dispatch_table.get(type(value))
        rv = reducer(value) if reducer is not None else value.__reduce_ex__(5)
        if isinstance(rv, str):  # a global, named
            _put(h, b"G", f"{type(value).__module__}.{rv}".encode())
            return
        if not isinstance(rv, tuple) or len(rv) < 2:
            raise _NoHash()
        func, fargs, state, listitems, dictitems = (*rv, None, None, None)[:5]
        _put(h, b"O", b"")
        self.feed(h, func)
        self.feed(h, fargs)
        self.feed(h, state)
        self.feed(h, list(listitems) if listitems is not None else None)
        if dictitems is not None:
            self._pairs(h, b"D", list(dictitems))
        else:
            self.feed(h, None)


def _put(h: Any, tag: bytes, data: bytes | memoryview) -> None:
    """A tag, the length and the bytes: no two different sequences of puts run together."""
    h.update(tag + len(data).to_bytes(8, "little"))
    h.update(data)


def _primitive(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, int) and not isinstance(value, bool):
        return value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return repr(value).encode()  # bool, float, complex: repr is exact


def _name_of(t: type) -> str:
    return "" if t in (dict, set, frozenset) else f"{t.__module__}.{t.__qualname__}"


def _global_name(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    module = getattr(value, "__module__", None) or ""
    return f"{module}.{getattr(value, '__qualname__', getattr(value, '__name__', '?'))}"


def _importable_name(fn: types.FunctionType) -> str | None:
    """``module.qualname`` of a function that can be imported by that name, else None."""
    module, qualname = fn.__module__, fn.__qualname__
    if not module or module == "__main__" or "<" in qualname:
        return None
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = importlib.import_module(module)
        except Exception:
            return None
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    target = getattr(obj, "__wrapped__", obj) if obj is not fn else obj
    return f"{module}.{qualname}" if obj is fn or target is fn else None


def _names(code: types.CodeType) -> set[str]:
    """The global names a code object (and the code nested in it) may read."""
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018  (an empty cell raises)
    except ValueError:
        return False
    return True


def _is_array(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)
