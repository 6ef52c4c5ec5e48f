"""The channel between the engine and its attempts on Dask: hostile peers on the
listener, TLS with a pinned certificate, and modules the Dask workers lack (a clear error,
then shipped with ``upload_module``)."""

from __future__ import annotations

import datetime
import json
import pickle
import socket
import ssl
import struct
import sys

import pytest
from _support import wait_for
from cluster_tasks import apply, double_it

pytestmark = pytest.mark.slow


def _listener(engine) -> tuple[str, int]:
    host, port = engine.client.request("GET", "/health")["executor"]["listen"].rsplit(":", 1)
    return host, int(port)


def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data``; return what the engine answers before it closes the connection."""
    with socket.create_connection(address, timeout=15) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def _frame(body: bytes) -> bytes:
    return struct.pack("<Q", len(body)) + body


class _Boom:
    """Creates a file if anyone unpickles it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_peers_are_refused_and_nothing_of_theirs_is_unpickled(dask_engine, tmp_path):
    engine = dask_engine()
    address = _listener(engine)
    wrong = json.dumps({"op": "hello", "slot": "s1", "token": "guess"}).encode()
    trap = tmp_path / "unpickled"
    for data in (_frame(wrong), _frame(b"not json"), _frame(pickle.dumps(_Boom(str(trap)))),
                 struct.pack("<Q", 10**12) + b"x" * 100):
        answer = _exchange(address, data)
        assert pickle.loads(answer[8:])["op"] == "refused"
    assert not trap.exists()
    assert double_it.trigger(4).result(timeout=60)[0] == 8  # the engine carries on


def _self_signed(folder) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "durable-nb engine")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "engine.pem", folder / "engine.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_with_a_pinned_certificate(dask_engine, tmp_path):
    cert, key = _self_signed(tmp_path)
    engine = dask_engine("--executor-cert", cert, "--executor-key", key)
    executor = engine.client.request("GET", "/health")["executor"]
    assert executor["tls"] is True
    h = double_it.trigger(5)
    assert h.result(timeout=60)[0] == 10
    assert h.attempts[0]["worker"].startswith("tcp://")
    # a peer speaking plain TCP gets no further than the TLS handshake
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx = ssl.create_default_context()  # trusts the system's CAs, not this certificate
        with socket.create_connection(_listener(engine), timeout=10) as s, \
                ctx.wrap_socket(s, server_hostname="engine") as t:
            t.sendall(_frame(b"{}"))


def test_a_module_the_workers_lack_is_named_then_shipped(dask_engine, tmp_path, monkeypatch):
    engine = dask_engine()
    apply.spec()  # the task's path is taken before the module's folder joins sys.path
    (tmp_path / "shipped_helpers").mkdir()
    (tmp_path / "shipped_helpers" / "__init__.py").write_text(
        "from .core import triple\n")
    (tmp_path / "shipped_helpers" / "core.py").write_text(
        "def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import shipped_helpers

    failed = apply.trigger(shipped_helpers.triple, 7)
    with pytest.raises(Exception) as info:
        failed.result(timeout=60)
    message = str(info.value)
    assert "module 'shipped_helpers' is not importable on Dask worker tcp://" in message
    assert "upload_module('shipped_helpers')" in message
    shipped = engine.client.upload_module(shipped_helpers)
    assert shipped["filename"] == "shipped_helpers.zip" and shipped["workers"] >= 3
    assert not shipped["failed"]
    assert apply.trigger(shipped_helpers.triple, 7).result(timeout=60) == 21
    sys.modules.pop("shipped_helpers", None)
    sys.modules.pop("shipped_helpers.core", None)


def test_upload_module_on_a_local_engine_says_what_it_is_for(make_engine):
    import durable_nb as dn

    engine = make_engine()
    with pytest.raises(dn.WaitConflict, match="--executor dask"):
        engine.client.upload_module("json")
    with pytest.raises(dn.ApiError, match="filename"):
        engine.client.request("POST", "/executor/modules",
                              {"filename": "../../etc/passwd.py", "data_b64": ""})
    wait_for(lambda: engine.client.request("GET", "/health")["ok"])
