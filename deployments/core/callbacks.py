"""Callbacks: where a finished task may be POSTed, and how the body is signed. Free of Ray and HTTP.

Only hosts on the configured allow-list (``intake.callback_allow_hosts``) may be called back, so
the service cannot be turned against internal addresses: anything else is refused at submit. The
body (the task as GET /tasks/{id} shows it) is signed with HMAC-SHA256 under
``CHS_CALLBACK_SECRET``: ``X-Helpline-Signature: sha256=<hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Iterable
from urllib.parse import urlsplit

from deployments.core.config import CALLBACK_SECRET_ENV_VAR

SECRET_ENV_VAR = CALLBACK_SECRET_ENV_VAR
SIGNATURE_HEADER = "X-Helpline-Signature"
MAX_URL_CHARS = 2048


def refusal(url: str, allow_hosts: Iterable[str], secret: str | None) -> str | None:
    """Why ``url`` may not be called back, or None when it may."""
    allowed = {h.lower() for h in allow_hosts}
    if not allowed:
        return "names a host that is not on this deployment's callback allow-list (it has none)."
    if not secret:
        return f"cannot be signed: {SECRET_ENV_VAR} is not set on this deployment."
    if len(url) > MAX_URL_CHARS:
        return f"is over {MAX_URL_CHARS} characters."
    return destination_refusal(url, allowed, "this deployment's callback allow-list")


def destination_refusal(url: str, allowed: Iterable[str], allow_list: str) -> str | None:
    """Why the service may not POST to ``url`` (a valid http(s) URL, no credentials, a host of ``allowed``,
    which ``allow_list`` names), or None when it may; worded to follow the URL's name."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "is not a valid URL."
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL."
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials."
    if host not in {h.lower() for h in allowed}:
        return f"names a host that is not on {allow_list}."
    return None


def body_bytes(task: dict) -> bytes:
    """The exact bytes POSTed and signed."""
    return json.dumps(task, separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver runs: the signature header matches this body under the shared secret."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header)
