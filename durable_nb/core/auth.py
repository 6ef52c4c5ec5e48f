"""Who a request comes from, and how the hosts check tokens without leaking them.

Identity rule (what an approval records as ``by``):

- The standalone engine (`durable-nb serve`) and its Unix socket: every caller holds the
  engine's token, which only its owner can read (a 0600 runtime file), so the caller is
  the server's owner.
- A Jupyter server's kernel token (``DURABLE_NB_TOKEN``) is handed to the kernels and
  workers the server starts, so it too stands for the server's owner.
- A Jupyter server with jupyter-server's own identity providers (token, password or
  anonymous access) is a single-user server: every browser that gets in is its owner, so
  JupyterLab, Notebook 7 and the kernel credential all record the same name.
- A Jupyter server with any other identity provider (JupyterHub's, a custom one) knows
  who each person is: its username is recorded.

The server's owner is ``$JUPYTERHUB_USER`` when JupyterHub spawned the server (the same
name its identity provider gives), else the operating system user. A name a client puts
in a request body is never an identity, only a note beside it.
"""

from __future__ import annotations

import getpass
import hmac
import os
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # clients check tokens too, without loading tornado
    import tornado.httputil

# query parameters never written to a log in clear (jupyter-server scrubs the same ones)
SECRET_KEYS = ("token", "auth", "key", "xsrf", "code", "state")


def server_owner() -> str:
    """The person this server runs for: $JUPYTERHUB_USER, else the OS user."""
    hub = os.environ.get("JUPYTERHUB_USER", "").strip()
    if hub:
        return hub
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


def token_in_header(request: tornado.httputil.HTTPServerRequest) -> str:
    """The token of an ``Authorization: token|bearer <t>`` header, else ''."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() in ("token", "bearer") else ""


def same_token(given: str | bytes | None, token: str | bytes) -> bool:
    """Constant-time comparison; an empty or missing token never matches."""
    if not given:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = token.encode() if isinstance(token, str) else token
    return hmac.compare_digest(a, b)


def token_matches(request: tornado.httputil.HTTPServerRequest, token: str) -> bool:
    """True when the request carries ``token`` in its Authorization header (never the URL)."""
    return same_token(token_in_header(request), token)


def scrub_uri(uri: str) -> str:
    """``uri`` with the values of secret-looking query parameters replaced, for logs."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = urllib.parse.parse_qsl(query, keep_blank_values=True)
    clean = [(k, "[secret]" if any(s in k.lower() for s in SECRET_KEYS) else v)
             for k, v in parts]
    return path + "?" + urllib.parse.urlencode(clean, safe="[]")


class ScrubbedLogMixin:
    """Tornado handlers whose warnings (a refused XSRF check, a bad request) name the URL
    without the values of secret query parameters."""

    request: tornado.httputil.HTTPServerRequest

    def _request_summary(self) -> str:
        r = self.request
        return f"{r.method} {scrub_uri(r.uri or '')} ({r.remote_ip})"
