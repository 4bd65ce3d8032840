"""API keys: ``CHS_API_KEYS`` (comma-separated) or ``CHS_API_KEYS_FILE`` (one per line).

When neither is set, the service is open (fine on a laptop; set keys in any
shared deployment). Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

KEYS_ENV = "CHS_API_KEYS"
KEYS_FILE_ENV = "CHS_API_KEYS_FILE"


class ApiKeys:
    def __init__(self, keys: list[str]):
        self._keys = [k.encode() for k in keys if k]

    @classmethod
    def from_env(cls) -> "ApiKeys":
        keys = [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",")]
        file = os.environ.get(KEYS_FILE_ENV)
        if file:
            keys += [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines()]
        return cls([k for k in keys if k and not k.startswith("#")])

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: str | None) -> bool:
        if not self.enabled:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
        # Compare against every key, without stopping early, so timing says nothing.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched and bool(presented)

    def __repr__(self) -> str:  # never print the keys
        return f"ApiKeys(n={len(self._keys)})"
