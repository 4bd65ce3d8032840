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


def _yaml_app() -> dict:
    (app,) = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"]
    return app


def test_the_decorators_apply_the_one_declaration_of_deployment_options():
    from deployments.classifier import Classifier
    from deployments.core.config import DEPLOYMENT_OPTIONS
    from deployments.preprocessor import Preprocessor
    from deployments.router import Router

    for deployment in (Preprocessor, Classifier, Router):
        declared = DEPLOYMENT_OPTIONS[deployment.name]
        config = deployment._deployment_config
        for key, value in declared.items():
            if key == "ray_actor_options":
                assert deployment.ray_actor_options == value, deployment.name
            elif key == "backpressure_config":
                assert config.backpressure_config.model_dump(exclude_none=True) == value, deployment.name
            else:
                assert getattr(config, key) == value, (deployment.name, key)


def test_serve_config_yaml_agrees_with_the_code_where_both_name_an_option():
    from deployments.core.config import DEPLOYMENT_OPTIONS

    for deployment in _yaml_app()["deployments"]:
        declared = DEPLOYMENT_OPTIONS[deployment["name"]]
        for key, value in deployment.items():
            if key in declared:
                assert value == declared[key], (deployment["name"], key)
        # What only the YAML sets is a deploy-time choice of replicas, never another default.
        assert set(deployment) - set(declared) <= {"name", "num_replicas", "autoscaling_config"}, deployment["name"]


# Args serve_config.yaml sets to other values than AppArgs' defaults, on purpose.
YAML_OVERRIDES = {"torch_threads": "two threads per classifier replica, the cores of the smallest node"}


def test_serve_config_yaml_args_are_the_defaults_but_for_named_overrides():
    from_yaml, defaults = AppArgs(**_yaml_app()["args"]), AppArgs()
    differ = {name for name in AppArgs.model_fields if getattr(from_yaml, name) != getattr(defaults, name)}
    assert differ == set(YAML_OVERRIDES)


# The card profile (serve_config.card.yaml): the model card's recipe, 256 tokens and truncation.
CARD_PROFILE = {"max_length": 256, "long_narratives": "truncate"}


def test_the_card_profile_is_serve_config_but_for_the_cards_length_and_truncation():
    card = yaml.safe_load((ROOT / "serve_config.card.yaml").read_text())
    default = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (card_app,), (default_app,) = card["applications"], default["applications"]
    differ = {k: v for k, v in card_app["args"].items() if default_app["args"].get(k) != v}
    assert differ == CARD_PROFILE
    assert {**card_app, "args": default_app["args"]} == default_app and \
        {k: v for k, v in card.items() if k != "applications"} == {k: v for k, v in default.items() if k != "applications"}
    AppArgs(**card_app["args"])
