"""Token checks: one constant-time comparison, used by every host that checks a token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tornado.httputil

import durable_nb
from durable_nb.core.auth import same_token, token_in_header, token_matches

PKG = Path(durable_nb.__file__).resolve().parent


@pytest.mark.parametrize(("given", "token", "ok"), [
    ("s3cret", "s3cret", True), (b"s3cret", "s3cret", True), ("s3cret", b"s3cret", True),
    ("s3cret", "s3cret ", False), ("", "", False), (None, "s3cret", False), ("", "x", False),
    ("é", "é", True),
])
def test_same_token(given, token, ok):
    assert same_token(given, token) is ok


def _request(auth: str | None, uri: str = "/durable/api/health"
             ) -> tornado.httputil.HTTPServerRequest:
    headers = tornado.httputil.HTTPHeaders({"Host": "127.0.0.1"})
    if auth:
        headers["Authorization"] = auth
    line = tornado.httputil.RequestStartLine("GET", uri, "HTTP/1.1")
    return tornado.httputil.HTTPServerRequest(start_line=line, headers=headers)


def test_a_request_carries_the_token_in_its_header_never_its_url():
    assert token_matches(_request("token s3cret"), "s3cret")
    assert token_matches(_request("Bearer s3cret"), "s3cret")
    assert not token_matches(_request("Basic s3cret"), "s3cret")
    assert not token_matches(_request("token nope"), "s3cret")
    assert not token_matches(_request(None, "/durable/api/health?token=s3cret"), "s3cret")
    assert token_in_header(_request("token  padded ")) == "padded"


def test_tokens_are_compared_in_one_place():
    """Every token comparison goes through `same_token` (constant time, empty never
    matches): no other module compares digests or tokens itself."""
    own = re.compile(r"""compare_digest|import hmac|["']token["']\)?\]? *[!=]="""
                     r"|self\.token *[!=]=|[!=]= *self\.token\b")
    others = {p.name: [ln for ln in p.read_text().splitlines() if own.search(ln)]
              for p in PKG.rglob("*.py") if p.relative_to(PKG).as_posix() != "core/auth.py"}
    assert {k: v for k, v in others.items() if v} == {}
