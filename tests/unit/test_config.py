import pytest
from pydantic import ValidationError

from deployments.core.config import AppArgs


def test_typos_are_refused():
    with pytest.raises(ValidationError):
        AppArgs(modle="x")
    with pytest.raises(ValidationError):
        AppArgs(batching={"max_batch_sise": 3})


def test_inconsistent_settings_are_refused():
    with pytest.raises(ValidationError, match="window_overlap"):
        AppArgs(max_length=64, window_overlap=62)
    with pytest.raises(ValidationError, match="windows_per_call"):
        AppArgs(windows_per_call=64, batching={"max_batch_size": 32})


def test_chs_model_overrides_the_model(monkeypatch):
    monkeypatch.setenv("CHS_MODEL", "/models/x")
    assert AppArgs(model="a/b").resolved_model() == "/models/x"
    monkeypatch.delenv("CHS_MODEL")
    assert AppArgs(model="a/b").resolved_model() == "a/b"
