"""serve_config.yaml: its args validate against AppArgs and its deployments are wired as build_app expects."""

from pathlib import Path

import yaml

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
