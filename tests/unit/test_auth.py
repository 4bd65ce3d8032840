"""ApiKeys: CHS_API_KEYS / CHS_API_KEYS_FILE parsing and the Bearer check."""

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
