"""ApiKeys: CHS_API_KEYS / CHS_API_KEYS_FILE parsing, the Bearer check, and roles and permissions."""

from __future__ import annotations

import pytest

from deployments.core.auth import KEYS_ENV, KEYS_FILE_ENV, ApiKeys


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv(KEYS_FILE_ENV, raising=False)
    return monkeypatch


def test_no_keys_means_open(clean_env):
    keys = ApiKeys.from_env()
    assert not keys.enabled
    assert keys.allows(None)
    assert keys.allows("Bearer anything")


def test_env_keys_are_comma_separated_and_stripped(clean_env):
    clean_env.setenv(KEYS_ENV, " alpha-key , beta-key,,")
    keys = ApiKeys.from_env()
    assert keys.enabled
    assert keys.allows("Bearer alpha-key")
    assert keys.allows("Bearer beta-key")
    assert keys.allows("bearer beta-key")  # the scheme is case-insensitive
    assert keys.allows("Bearer  beta-key ")


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "alpha-key", "Basic alpha-key", "Bearer alpha", "Bearer alpha-key2",
    "Bearer ALPHA-KEY", "Token alpha-key", "Bearer ,", "Bearer \u00e9",
])
def test_wrong_or_missing_credentials_are_refused(clean_env, header):
    clean_env.setenv(KEYS_ENV, "alpha-key,beta-key")
    assert not ApiKeys.from_env().allows(header)


def test_keys_file_one_per_line_with_comments(clean_env, tmp_path):
    path = tmp_path / "keys"
    path.write_text("# rotated 2025-09\nfile-key-1\n\n  file-key-2  \n#file-key-3\n", encoding="utf-8")
    clean_env.setenv(KEYS_FILE_ENV, str(path))
    keys = ApiKeys.from_env()
    assert keys.allows("Bearer file-key-1")
    assert keys.allows("Bearer file-key-2")
    assert not keys.allows("Bearer file-key-3")
    assert not keys.allows("Bearer # rotated 2025-09")


def test_env_and_file_keys_combine(clean_env, tmp_path):
    path = tmp_path / "keys"
    path.write_text("file-key\n", encoding="utf-8")
    clean_env.setenv(KEYS_ENV, "env-key")
    clean_env.setenv(KEYS_FILE_ENV, str(path))
    keys = ApiKeys.from_env()
    assert keys.allows("Bearer env-key") and keys.allows("Bearer file-key")


def test_a_missing_keys_file_fails_loudly(clean_env, tmp_path):
    # Failing open (serving without auth because the secret was not mounted) would be worse.
    clean_env.setenv(KEYS_FILE_ENV, str(tmp_path / "absent"))
    with pytest.raises(OSError):
        ApiKeys.from_env()


def test_repr_never_shows_keys(clean_env):
    clean_env.setenv(KEYS_ENV, "very-secret-key")
    keys = ApiKeys.from_env()
    assert "very-secret-key" not in repr(keys)
    assert "very-secret-key" not in str(keys)


# --- names, roles and permissions ---------------------------------------------------------------

from deployments.core.auth import (  # noqa: E402
    ANONYMOUS, ROLES, Permission, Principal, parse_env_keys, parse_keys_file, roles_with,
)
from deployments.core.errors import ServiceError  # noqa: E402

# The table, written out rather than derived, so a change to ROLES must change this too.
EXPECTED = {
    "service": {"classify", "tasks", "calls"},
    "counsellor": {"classify", "calls", "feedback", "read_case"},
    "supervisor": {"classify", "calls", "feedback", "read_case", "worklist", "stats", "reports"},
    "admin": {"classify", "tasks", "calls", "feedback", "read_case", "stats", "worklist", "reports",
              "export", "audit"},
}
KEYS = {role: f"{role}-secret-key" for role in ROLES}


@pytest.fixture
def role_keys(clean_env):
    clean_env.setenv(KEYS_ENV, ",".join(f"{role}-app:{role}:{key}" for role, key in KEYS.items()))
    return ApiKeys.from_env()


def test_roles_are_the_specified_permission_sets():
    assert {role: set(perms) for role, perms in ROLES.items()} == EXPECTED
    assert Permission.ALL == set().union(*EXPECTED.values())
    assert list(ROLES) == ["service", "counsellor", "supervisor", "admin"]


@pytest.mark.parametrize("role", list(EXPECTED))
@pytest.mark.parametrize("permission", sorted(Permission.ALL))
def test_each_role_is_allowed_exactly_its_permissions(role_keys, role, permission):
    header = f"Bearer {KEYS[role]}"
    if permission in EXPECTED[role]:
        principal = role_keys.authorize(header, permission)
        assert principal == Principal(f"{role}-app", role, ROLES[role])
    else:
        with pytest.raises(ServiceError) as refused:
            role_keys.authorize(header, permission)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        assert f"'{permission}' permission" in refused.value.message
        assert f"role is {role}." in refused.value.message
        for holder in roles_with(permission):
            assert holder in refused.value.message


def test_forbidden_message_names_the_permission_and_its_roles(role_keys):
    with pytest.raises(ServiceError) as refused:
        role_keys.authorize(f"Bearer {KEYS['supervisor']}", Permission.EXPORT)
    assert refused.value.message == ("This route needs the 'export' permission, which role admin has; "
                                     "this key's role is supervisor.")
    with pytest.raises(ServiceError) as refused:
        role_keys.authorize(f"Bearer {KEYS['service']}", Permission.STATS)
    assert refused.value.message == ("This route needs the 'stats' permission, which roles supervisor and admin "
                                     "have; this key's role is service.")
    assert KEYS["service"] not in refused.value.message


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer unknown-key", "Basic admin-secret-key",
                                    "Bearer admin-secret-key2"])
def test_a_missing_or_unknown_key_is_401_whatever_the_permission(role_keys, header):
    with pytest.raises(ServiceError) as refused:
        role_keys.authorize(header, Permission.CLASSIFY)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}
    assert role_keys.authenticate(header) is None


def test_authenticate_names_the_caller(role_keys):
    assert role_keys.authenticate(f"Bearer {KEYS['counsellor']}") == Principal(
        "counsellor-app", "counsellor", ROLES["counsellor"])
    assert role_keys.allows(f"Bearer {KEYS['service']}")  # allows(): any valid key, whatever its role


def test_no_keys_means_every_permission_for_anyone(clean_env):
    keys = ApiKeys.from_env()
    for permission in Permission.ALL:
        assert keys.authorize(None, permission) == ANONYMOUS
    assert (ANONYMOUS.name, ANONYMOUS.role, ANONYMOUS.permissions) == ("anonymous", "admin", Permission.ALL)
    assert keys.authenticate(None) is None


def test_an_unknown_permission_is_a_bug_even_when_open(clean_env):
    with pytest.raises(ValueError, match="Unknown permission"):
        ApiKeys.from_env().authorize(None, "exprot")


def test_bare_keys_are_admins_named_by_position(clean_env, tmp_path):
    path = tmp_path / "keys"
    path.write_text("# ops\nfile-bare\nalice counsellor alice-key\n", encoding="utf-8")
    clean_env.setenv(KEYS_ENV, "env-bare, bob:service:bob-key")
    clean_env.setenv(KEYS_FILE_ENV, str(path))
    keys = ApiKeys.from_env()
    assert keys.authenticate("Bearer env-bare") == Principal("key-1", "admin", ROLES["admin"])
    assert keys.authenticate("Bearer bob-key") == Principal("bob", "service", ROLES["service"])
    assert keys.authenticate("Bearer file-bare") == Principal("key-3", "admin", ROLES["admin"])
    assert keys.authenticate("Bearer alice-key") == Principal("alice", "counsellor", ROLES["counsellor"])
    assert keys.authorize("Bearer env-bare", Permission.AUDIT).role == "admin"


def test_env_format_is_name_role_key_and_the_key_may_hold_colons(clean_env):
    clean_env.setenv(KEYS_ENV, " ops : supervisor : k:with:colons ,")
    keys = ApiKeys.from_env()
    assert keys.authenticate("Bearer k:with:colons") == Principal("ops", "supervisor", ROLES["supervisor"])


def test_file_format_with_comments_blank_lines_and_any_whitespace(clean_env, tmp_path):
    path = tmp_path / "keys"
    path.write_text("# name role key\n\n   \ncms\tservice\tcms-key\n  # old one\n  ana   admin  ana-key  \n",
                    encoding="utf-8")
    clean_env.setenv(KEYS_FILE_ENV, str(path))
    keys = ApiKeys.from_env()
    assert keys.authenticate("Bearer cms-key").name == "cms"
    assert keys.authenticate("Bearer ana-key").role == "admin"
    assert len(parse_keys_file(path.read_text(encoding="utf-8"))) == 2


@pytest.mark.parametrize("env, file, where, reason", [
    ("a:root:sk-bad-1", None, "CHS_API_KEYS entry 1", "unknown role"),
    ("ok-key, :admin:sk-bad-1", None, "CHS_API_KEYS entry 2", "name is empty"),
    ("a:admin:", None, "CHS_API_KEYS entry 1", "key is empty"),
    ("a:admin:sk-bad-1,a:service:sk-bad-2", None, "CHS_API_KEYS entry 2", "'a' is already used by "
                                                                           "CHS_API_KEYS entry 1"),
    ("ops:sk-bad-1", None, "CHS_API_KEYS entry 1", "expected 'name:role:key'"),
    ("a:admin:sk-bad-1", "a service sk-bad-2\n", "CHS_API_KEYS_FILE line 1", "already used"),
    (None, "# c\n\na admin sk-bad-1 extra\n", "CHS_API_KEYS_FILE line 3", "found 4 fields"),
    (None, "a admin\n", "CHS_API_KEYS_FILE line 1", "found 2 fields"),
    (None, "a sk-bad-1 admin\n", "CHS_API_KEYS_FILE line 1", "unknown role"),
    ("a:admin:sk-bad-1", "b service sk-bad-1\n", "CHS_API_KEYS_FILE line 1", "same key as CHS_API_KEYS entry 1"),
    ("sk-bad-1,key-1:admin:sk-bad-2", None, "CHS_API_KEYS entry 2", "'key-1' is already used"),
])
def test_bad_entries_stop_startup_without_showing_the_key(clean_env, tmp_path, env, file, where, reason):
    if env is not None:
        clean_env.setenv(KEYS_ENV, env)
    if file is not None:
        path = tmp_path / "keys"
        path.write_text(file, encoding="utf-8")
        clean_env.setenv(KEYS_FILE_ENV, str(path))
    with pytest.raises(ValueError) as failed:
        ApiKeys.from_env()
    message = str(failed.value)
    assert message.startswith(where + ":") and reason in message
    assert "sk-bad" not in message


def test_from_env_takes_a_mapping_instead_of_the_process_environment(clean_env):
    keys = ApiKeys.from_env({KEYS_ENV: "cms:service:cms-key"})
    assert keys.enabled and keys.authenticate("Bearer cms-key").role == "service"
    assert not ApiKeys.from_env({}).enabled


def _strings_in(value, seen=None):
    """Every str and bytes reachable from ``value`` through containers and object attributes."""
    seen = {} if seen is None else seen
    if id(value) in seen:
        return
    seen[id(value)] = value  # kept alive, so no later object reuses its id
    if isinstance(value, (str, bytes)):
        yield value
    elif isinstance(value, dict):
        for item in value.items():
            yield from _strings_in(item, seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings_in(item, seen)
    elif hasattr(value, "__dict__") or hasattr(value, "__dataclass_fields__"):
        attributes = vars(value) if hasattr(value, "__dict__") else {}
        for name in getattr(value, "__dataclass_fields__", {}):
            attributes = {**attributes, name: getattr(value, name)}
        yield from _strings_in(attributes, seen)


def test_the_plain_key_is_never_stored(clean_env, tmp_path):
    path = tmp_path / "keys"
    path.write_text("ana admin plain-file-key\nplain-bare-file-key\n", encoding="utf-8")
    clean_env.setenv(KEYS_ENV, "plain-bare-env-key,cms:service:plain-env-key")
    clean_env.setenv(KEYS_FILE_ENV, str(path))
    keys = ApiKeys.from_env()
    stored = list(_strings_in(keys))
    assert any(isinstance(s, str) and s == "cms" for s in stored)  # the walk does reach the principals
    for secret in ("plain-file-key", "plain-bare-file-key", "plain-bare-env-key", "plain-env-key"):
        assert keys.authenticate(f"Bearer {secret}") is not None
        for s in stored:
            assert secret not in (s if isinstance(s, str) else s.decode("latin-1"))
    assert "plain-env-key" not in repr(parse_env_keys("cms:service:plain-env-key"))


def test_describe_shows_the_roles_and_nothing_about_the_keys(role_keys, clean_env):
    described = role_keys.describe()
    assert described == {"auth": "api_key", "roles": {role: sorted(perms) for role, perms in EXPECTED.items()}}
    text = repr(described)
    assert "-app" not in text and not any(key in text for key in KEYS.values())
    assert ApiKeys.from_env({}).describe()["auth"] == "none"
