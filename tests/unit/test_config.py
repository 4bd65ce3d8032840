from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from deployments.core.config import AppArgs

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_args_validate_and_point_at_build_app():
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    assert app["import_path"] == "deployments.app:build_app"
    args = AppArgs(**app["args"])
    assert args.model == "openchs/cls-gbv-distilbert-v1"
    names = {d["name"] for d in app["deployments"]}
    assert names == {"Preprocessor", "Classifier", "Router"}


def test_serve_config_batching_is_not_starved():
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    classifier = next(d for d in app["deployments"] if d["name"] == "Classifier")
    assert classifier["max_ongoing_requests"] >= 2 * app["args"]["batching"]["max_batch_size"]
    assert "ray_actor_options" not in classifier, "the classifier's resources come from AppArgs (see config.py)"


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
