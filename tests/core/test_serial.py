"""Serialization errors name the value, its type and the reason."""

import socket
import threading

import pytest

import durable_nb as dn
from durable_nb.core import serial as _serial


def test_unpicklable_value_is_named_with_type_and_reason():
    s = socket.socket()
    try:
        with pytest.raises(dn.NotPicklable) as err:
            _serial.dumps(s, "argument 'conn' of task 'x'")
    finally:
        s.close()
    msg = str(err.value)
    assert "argument 'conn' of task 'x'" in msg
    assert "socket.socket" in msg
    assert "cannot pickle" in msg


def test_lock_is_refused():
    with pytest.raises(dn.NotPicklable, match="lock"):
        _serial.dumps(threading.Lock(), "output of step 'a#1'")


def test_size_limit_gives_both_sizes():
    with pytest.raises(dn.PayloadTooLarge) as err:
        _serial.dumps(b"x" * 3_000_000, "return value of task 't'", limit=1024 * 1024)
    assert "2.9 MB" in str(err.value) and "1.0 MB" in str(err.value)


def test_roundtrip_of_lambdas():
    f = _serial.loads(_serial.dumps(lambda x: x + 1, "value"))
    assert f(1) == 2
