"""API keys with a name and a role: who may call which operation.

Keys come from a secret in the environment, never from the config file:

* ``CHS_API_KEYS``: comma-separated entries ``name:role:key``;
* ``CHS_API_KEYS_FILE``: a file, one ``name role key`` per line (blank lines and
  ``#`` comments skipped).

A bare key (no colon in a ``CHS_API_KEYS`` entry, one token on a file line) is
today's form: it keeps full access as role ``admin``, named ``key-<position>``.
A malformed entry, an unknown role or a repeated name or key stops startup, with
a message naming the entry's position and never the key.

Each role is a set of permissions; an operation declares the one it needs and
``ApiKeys.authorize`` answers 401 (no valid key) or 403 (the key's role lacks it).
With no keys configured the service is open, as before (fine on a laptop; set
keys in any shared deployment). Only the SHA-256 of each key is kept, compared
in constant time; keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

from deployments.core.config import API_KEYS_ENV_VAR, API_KEYS_FILE_ENV_VAR
from deployments.core.errors import ServiceError

KEYS_ENV = API_KEYS_ENV_VAR
KEYS_FILE_ENV = API_KEYS_FILE_ENV_VAR


class Permission:
    """The permission names; an operation declares the one it needs."""

    CLASSIFY = "classify"      # /classify, /classify/batch
    TASKS = "tasks"            # queued classification: /tasks/..., /classifier/...
    CALLS = "calls"            # call sessions
    FEEDBACK = "feedback"      # a counsellor's corrections and ratings
    READ_CASE = "read_case"    # what the service answered for a case
    STATS = "stats"            # feedback statistics
    WORKLIST = "worklist"
    REPORTS = "reports"
    EXPORT = "export"          # narratives leave the service
    AUDIT = "audit"            # the audit trail

    ALL = frozenset({CLASSIFY, TASKS, CALLS, FEEDBACK, READ_CASE, STATS, WORKLIST, REPORTS, EXPORT, AUDIT})


_COUNSELLOR = frozenset({Permission.CLASSIFY, Permission.CALLS, Permission.FEEDBACK, Permission.READ_CASE})

# In increasing power; ``service`` is a case-management system, not a person.
ROLES: dict[str, frozenset[str]] = {
    "service": frozenset({Permission.CLASSIFY, Permission.TASKS, Permission.CALLS}),
    "counsellor": _COUNSELLOR,
    "supervisor": _COUNSELLOR | {Permission.WORKLIST, Permission.STATS, Permission.REPORTS},
    "admin": Permission.ALL,
}
BARE_KEY_ROLE = "admin"


def roles_with(permission: str) -> list[str]:
    """The roles that have ``permission``, in increasing power."""
    if permission not in Permission.ALL:
        raise ValueError(f"Unknown permission {permission!r}; the permissions are {', '.join(sorted(Permission.ALL))}.")
    return [role for role, permissions in ROLES.items() if permission in permissions]


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a key's name and role (never the key)."""

    name: str
    role: str
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


ANONYMOUS = Principal("anonymous", "admin", ROLES["admin"])


class KeySpec(NamedTuple):
    """One configured key before hashing; ``name`` None for a bare key. Not kept."""

    where: str  # e.g. "CHS_API_KEYS entry 2", for error messages
    name: str | None
    role: str
    key: str

    def __repr__(self) -> str:  # never print the key
        return f"KeySpec({self.where!r}, name={self.name!r}, role={self.role!r})"


def parse_env_keys(value: str) -> list[KeySpec]:
    """``CHS_API_KEYS``: comma-separated ``name:role:key`` entries or bare keys."""
    specs = []
    for position, entry in enumerate(value.split(","), 1):
        entry, where = entry.strip(), f"{KEYS_ENV} entry {position}"
        if not entry or entry.startswith("#"):  # '#' entries were always ignored
            continue
        if ":" not in entry:
            specs.append(KeySpec(where, None, BARE_KEY_ROLE, entry))
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"{where}: expected 'name:role:key' or a bare key.")
        specs.append(KeySpec(where, parts[0].strip(), parts[1].strip(), parts[2].strip()))
    return specs


def parse_keys_file(text: str, source: str = KEYS_FILE_ENV) -> list[KeySpec]:
    """``CHS_API_KEYS_FILE``: one ``name role key`` (or a bare key) per line."""
    specs = []
    for number, line in enumerate(text.splitlines(), 1):
        fields, where = line.split(), f"{source} line {number}"
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 1:
            specs.append(KeySpec(where, None, BARE_KEY_ROLE, fields[0]))
        elif len(fields) == 3:
            specs.append(KeySpec(where, *fields))
        else:
            raise ValueError(f"{where}: expected 'name role key' or a bare key, found {len(fields)} fields.")
    return specs


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured keys, as (SHA-256 of the key, principal) pairs."""

    def __init__(self, specs: Iterable[KeySpec] = ()):
        entries: list[tuple[bytes, Principal]] = []
        seen_names: dict[str, str] = {}
        seen_digests: dict[bytes, str] = {}
        for position, spec in enumerate(specs, 1):
            name = f"key-{position}" if spec.name is None else spec.name
            if not name:
                raise ValueError(f"{spec.where}: the name is empty.")
            if spec.role not in ROLES:  # the role text is not echoed: it may be part of a mistyped key
                raise ValueError(f"{spec.where}: unknown role; the roles are {', '.join(ROLES)}.")
            if not spec.key:
                raise ValueError(f"{spec.where}: the key is empty.")
            if name in seen_names:
                raise ValueError(f"{spec.where}: the name {name!r} is already used by {seen_names[name]}.")
            digest = _digest(spec.key)
            if digest in seen_digests:
                raise ValueError(f"{spec.where}: the same key as {seen_digests[digest]}.")
            seen_names[name], seen_digests[digest] = spec.where, spec.where
            entries.append((digest, Principal(name, spec.role, ROLES[spec.role])))
        self._entries = tuple(entries)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ApiKeys":
        """Keys from ``CHS_API_KEYS`` then ``CHS_API_KEYS_FILE``; a named file that is absent raises OSError."""
        env = os.environ if env is None else env
        specs = parse_env_keys(env.get(KEYS_ENV, ""))
        file = env.get(KEYS_FILE_ENV)
        if file:  # failing open because the secret was not mounted would be worse than not starting
            specs += parse_keys_file(Path(file).read_text(encoding="utf-8"))
        return cls(specs)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal whose key the ``Authorization: Bearer <key>`` header carries, else None."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        presented = _digest(token)
        # Compare against every key, without stopping early, so timing says nothing.
        found = None
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest) and token:
                found = principal
        return found

    def authorize(self, authorization: str | None, permission: str | None) -> Principal:
        """The caller, if its key's role has ``permission`` (None: any valid key); else ServiceError 401 or 403."""
        holders = roles_with(permission) if permission is not None else []  # an unknown one is a bug: ValueError
        if not self.enabled:
            return ANONYMOUS
        principal = self.authenticate(authorization)
        if principal is None:
            raise ServiceError.unauthorized()
        if permission is not None and permission not in principal.permissions:
            raise ServiceError.forbidden(
                f"This route needs the {permission!r} permission, which {_roles_have(holders)}; "
                f"this key's role is {principal.role}.")
        return principal

    def allows(self, authorization: str | None) -> bool:
        """Any valid key (or no keys configured): the check before roles, kept for its callers."""
        return not self.enabled or self.authenticate(authorization) is not None

    def describe(self) -> dict:
        """For /info: whether keys are required, and each role's permissions (no names, no hashes)."""
        return {"auth": "api_key" if self.enabled else "none",
                "roles": {role: sorted(permissions) for role, permissions in ROLES.items()}}

    def __repr__(self) -> str:  # never print the keys
        return f"ApiKeys(n={len(self._entries)})"


def _roles_have(roles: list[str]) -> str:
    if len(roles) == 1:
        return f"role {roles[0]} has"
    return f"roles {', '.join(roles[:-1])} and {roles[-1]} have"
