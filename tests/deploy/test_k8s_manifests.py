"""k8s/: the RayService against KubeRay's CRD schema, core objects against Kubernetes'
schemas, serveConfigV2 against Ray's and the app's own schemas, the resource
arithmetic of the node groups, and the drift between serveConfigV2 and
serve_config.yaml.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT, shared_path

K8S = REPO_ROOT / "k8s"
K8S_VERSION = "1.33.0"  # a release kubernetes-validate ships offline schemas for
APP = "helpline"

# What production may set differently from serve_config.yaml, and why. Paths are
# flattened keys (applications and deployments by name; fnmatch patterns). Anything
# else that differs is drift; an entry that no longer matches a difference is stale.
PRODUCTION_OVERRIDES = {
    "proxy_location": "EveryNode: a proxy on every pod behind helpline-serve-svc (locally, one on the head)",
    "logging_config.encoding": "JSON logs for the cluster's log pipeline",
    "applications.helpline.args.revision": "production pins the Hub revision it validated",
    "applications.helpline.args.accelerator": "cuda: a GPU pod without a usable GPU must fail, not run on CPU",
    "applications.helpline.args.classifier_num_cpus": "a GPU pod gives its one classifier replica 2 of its CPUs",
    "applications.helpline.args.batching.max_batch_tokens": "a GPU runs larger forward passes well; 1024 suits a CPU",
    "applications.helpline.args.batching.yield_batch_tokens": "a GPU's pass is cheap: no small passes are needed "
                                                              "there; on a CPU one window each",
    "applications.helpline.args.batching.pass_cost_tokens": "no GPU measurement of a pass's fixed cost: the fewest "
                                                            "passes, as large as the budget; 55 was measured on a CPU",
    "applications.helpline.deployments.Preprocessor.num_replicas": "replaced by an autoscaling range",
    "applications.helpline.deployments.Preprocessor.autoscaling_config.*": "the ingress scales with traffic",
    "applications.helpline.deployments.Classifier.autoscaling_config.*": "the GPU pool's autoscaling range",
    "applications.helpline.deployments.Router.num_replicas": "two, so losing a pod does not stop routing",
    "applications.helpline.deployments.*.ray_actor_options.num_cpus": "sized for tokenizing at production rates",
    "applications.helpline.deployments.*.ray_actor_options.resources.cpu_pool":
        "pins Preprocessor and Router to the CPU group, so they never hold a GPU pod up",
    "applications.helpline.args.intake.consumer_resources*":
        "places the intake consumer on the CPU group, beside the ingress",
}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def _rayservice_text() -> str:
    return (K8S / "rayservice.yaml").read_text(encoding="utf-8")


def rayservice() -> dict:
    return yaml.safe_load(_rayservice_text())  # a fresh copy each call: tests mutate it


def serve_config_v2() -> dict:
    return yaml.safe_load(rayservice()["spec"]["serveConfigV2"])


def local_serve_config() -> dict:
    return load_yaml(REPO_ROOT / "serve_config.yaml")


def groups() -> dict[str, dict]:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


# --- KubeRay CRD schema ------------------------------------------------------------------


def crd_to_jsonschema(node):
    """A CRD's structural OpenAPI v3 schema as a JSON Schema that validates like the API server.

    - ``x-kubernetes-int-or-string`` without an ``anyOf``: integer or string;
    - ``nullable: true``: null is allowed too;
    - an object with ``properties`` and no ``additionalProperties`` (and not
      ``x-kubernetes-preserve-unknown-fields``) refuses unknown fields, as
      ``kubectl apply`` does with its default ``--validate=strict``.
    CEL rules (``x-kubernetes-validations``) are not evaluated.
    """
    if isinstance(node, list):
        return [crd_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node and "type" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


@cache
def _crd_validator() -> jsonschema.Draft7Validator:
    schema = crd_to_jsonschema(json.loads(shared_path("kuberay", "rayservice.v1.schema.json").read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=FORMATS)


def crd_errors(doc: dict) -> list[jsonschema.ValidationError]:
    validator = _crd_validator()  # skips, with the reason, when ../shared is absent
    errors = list(validator.iter_errors(doc))
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayService":
        errors.append(jsonschema.ValidationError(f"not a ray.io/v1 RayService: {doc.get('apiVersion')} {doc.get('kind')}"))
    return errors


def test_schema_json_is_the_crds_v1_schema():
    crd = yaml.load(shared_path("kuberay", "ray.io_rayservices.yaml").read_text(), Loader=yaml.CSafeLoader)
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("ray.io", "RayService")
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert v1["schema"]["openAPIV3Schema"] == json.loads(shared_path("kuberay", "rayservice.v1.schema.json").read_text())


def test_rayservice_validates_against_the_kuberay_crd():
    assert [f"{e.json_path}: {e.message}" for e in crd_errors(rayservice())] == []


def _mutate(path: str, value=None, delete: bool = False) -> dict:
    doc = rayservice()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


BROKEN = {
    # name: (mutation, JSON path the error must point at, words the message must have)
    "wrong type": (lambda: _mutate("spec.rayClusterConfig.workerGroupSpecs.1.maxReplicas", "four"),
                   "$.spec.rayClusterConfig.workerGroupSpecs[1].maxReplicas", "is not of type 'integer'"),
    "int32 overflow": (lambda: _mutate("spec.rayClusterConfig.workerGroupSpecs.1.maxReplicas", 2**31),
                       "$.spec.rayClusterConfig.workerGroupSpecs[1].maxReplicas", "int32"),
    "unknown enum": (lambda: _mutate("spec.rayClusterConfig.autoscalerOptions.upscalingMode", "Fast"),
                     "$.spec.rayClusterConfig.autoscalerOptions.upscalingMode", "is not one of"),
    "missing required groupName": (lambda: _mutate("spec.rayClusterConfig.workerGroupSpecs.0.groupName", delete=True),
                                   "$.spec.rayClusterConfig.workerGroupSpecs[0]", "'groupName' is a required"),
    "missing required rayClusterConfig": (lambda: _mutate("spec.rayClusterConfig", delete=True),
                                          "$.spec", "'rayClusterConfig' is a required"),
    "misspelt field": (lambda: _mutate("spec.rayClusterConfig.enableInTreeAutoscalng", True),
                       "$.spec.rayClusterConfig", "'enableInTreeAutoscalng' was unexpected"),
    "int-or-string given a float": (
        lambda: _mutate("spec.rayClusterConfig.workerGroupSpecs.1.template.spec.containers.0.resources.limits.cpu", 0.5),
        "$.spec.rayClusterConfig.workerGroupSpecs[1].template.spec.containers[0].resources.limits.cpu",
        "is not valid under any of the given schemas"),
    "bad quantity": (
        lambda: _mutate("spec.rayClusterConfig.workerGroupSpecs.1.template.spec.containers.0.resources.limits.memory",
                        "lots"),
        "$.spec.rayClusterConfig.workerGroupSpecs[1].template.spec.containers[0].resources.limits.memory",
        "does not match"),
    "serveConfigV2 not a string": (lambda: _mutate("spec.serveConfigV2", {"applications": []}),
                                   "$.spec.serveConfigV2", "is not of type 'string'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_rayservice_fails_validation_for_the_right_reason(case):
    mutate, where, words = BROKEN[case]
    errors = crd_errors(mutate())
    assert errors, f"{case}: the broken manifest validated"
    assert any(e.json_path == where and words in e.message for e in errors), \
        [f"{e.json_path}: {e.message}" for e in errors]


def test_a_manifest_that_is_not_a_rayservice_fails():
    doc = rayservice()
    doc["apiVersion"] = "ray.io/v1alpha1"
    assert crd_errors(doc)


# --- core Kubernetes objects ---------------------------------------------------------------

CORE_FILES = ["secret.example.yaml", "hf-cache-pvc.yaml", "ingress.yaml", "redis.yaml"]


@pytest.mark.parametrize("name", CORE_FILES)
def test_core_objects_validate_against_kubernetes(name):
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    assert docs
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == "1.33"


@pytest.mark.parametrize("group", ["head", "cpu", "gpu"])
def test_pod_templates_validate_as_core_pod_templates(group):
    template = groups()[group]["template"]
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"helpline-{group}"}, "template": template}
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name, path, value", [
    ("ingress.yaml", ["spec", "rules", 0, "http", "paths", 0, "pathTyp"], "Prefix"),  # unknown field
    ("ingress.yaml", ["spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "number"], "8000"),
    ("secret.example.yaml", ["stringData"], {"api-keys": 42}),
    ("hf-cache-pvc.yaml", ["spec", "accessModes"], "ReadWriteMany"),
])
def test_broken_core_objects_fail_validation(name, path, value):
    doc = yaml.safe_load((K8S / name).read_text())
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_example_secret_holds_no_values_and_documents_the_keys_the_pods_read():
    secret = load_yaml(K8S / "secret.example.yaml")
    assert "data" not in secret and "stringData" not in secret
    refs = secret_refs()
    assert refs and {name for name, _, _ in refs} == {secret["metadata"]["name"]}
    text = (K8S / "secret.example.yaml").read_text() + (K8S / "README.md").read_text()
    for _, key, _ in refs:
        assert f"--from-file={key}=" in text, f"no `kubectl create secret` for key {key}"


# --- secrets, volumes, images, service ---------------------------------------------------------


def all_env() -> list[tuple[str, dict]]:
    return [(g, e) for g, group in groups().items() for c in containers(group) for e in c.get("env", [])]


def secret_refs() -> set[tuple[str, str, bool]]:
    return {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"],
             e["valueFrom"]["secretKeyRef"].get("optional", False))
            for _, e in all_env() if "secretKeyRef" in e.get("valueFrom", {})}


def test_secrets_come_from_a_secret_never_from_the_manifest():
    env = all_env()
    by_name = {}
    for group, e in env:
        by_name.setdefault(e["name"], []).append((group, e))
    for name in ("HF_TOKEN", "CHS_API_KEYS"):
        assert {g for g, _ in by_name[name]} == {"cpu", "gpu"}, name
        for _, e in by_name[name]:
            assert "value" not in e and "secretKeyRef" in e["valueFrom"], e
    # The API keys fail closed: a pod without them does not start (optional HF token: a public repo).
    assert ("helpline-secrets", "api-keys", False) in secret_refs()
    for _, e in env:
        if re.search(r"TOKEN|KEY|SECRET|PASSWORD", e["name"]):
            assert "value" not in e, f"{e['name']} is set in plain text"


def test_the_hf_cache_pvc_is_mounted_at_hf_home_on_every_worker():
    claim = load_yaml(K8S / "hf-cache-pvc.yaml")["metadata"]["name"]
    dockerfile = (K8S / "Dockerfile").read_text()
    for name, group in groups().items():
        if name == "head":
            continue
        spec = group["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim]
        (container,) = containers(group)
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        hf_home = {e["name"]: e.get("value") for e in container["env"]}["HF_HOME"]
        assert mount["mountPath"] == hf_home
        assert f"HF_HOME={hf_home}" in dockerfile


def test_one_image_and_one_ray_version_everywhere():
    (version,) = re.findall(r'"ray\[[a-z,]+\]==([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert rayservice()["spec"]["rayClusterConfig"]["rayVersion"] == version
    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\S+)$", (K8S / "Dockerfile").read_text(), re.M)
    assert base and base.group(1).split("-")[0] == version
    import ray

    assert ray.__version__ == version
    images = {c["image"] for g in groups().values() for c in containers(g)}
    assert len(images) == 1, images


def test_the_ingress_reaches_the_serve_service_kuberay_creates():
    rs = rayservice()
    ingress = load_yaml(K8S / "ingress.yaml")
    backends = [p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert backends == [{"name": f"{rs['metadata']['name']}-serve-svc",
                         "port": {"number": serve_config_v2()["http_options"]["port"]}}]
    readme = (K8S / "README.md").read_text()
    assert f"{rs['metadata']['name']}-serve-svc" in readme


def test_every_pod_exposes_ray_metrics_on_8080():
    for name, group in groups().items():
        ports = {p["name"]: p["containerPort"] for c in containers(group) for p in c.get("ports", [])}
        assert ports.get("metrics") == 8080, name


# --- serveConfigV2 ---------------------------------------------------------------------------------


def test_serve_config_v2_parses_with_rays_schema_and_builds_the_app():
    from ray.serve.schema import ServeDeploySchema

    from deployments.core.config import AppArgs

    config = ServeDeploySchema.model_validate(serve_config_v2())
    (app,) = config.applications
    module, _, attr = app.import_path.partition(":")
    build_app = getattr(importlib.import_module(module), attr)
    args = AppArgs(**app.args)
    assert (args.model, args.accelerator, args.num_gpus) == ("openchs/cls-gbv-distilbert-v1", "cuda", 1)
    assert args.revision, "production pins a model revision"
    built = deployment_options(build_app(args))
    assert set(built) == {"Preprocessor", "Classifier", "Router", "IntakeConsumer"}
    # The queue's consumer runs on the CPU group, never on (or keeping up) a GPU pod.
    assert "cpu_pool" in built["IntakeConsumer"]["resources"]
    assert built["Classifier"]["num_gpus"] == args.num_gpus
    assert built["Classifier"]["num_cpus"] == args.classifier_num_cpus


def test_a_typo_in_the_args_is_refused():
    from deployments.core.config import AppArgs

    args = serve_config_v2()["applications"][0]["args"]
    args["num_gpu"] = args.pop("num_gpus")
    with pytest.raises(ValueError, match="num_gpu"):
        AppArgs(**args)


def deployment_options(app) -> dict[str, dict]:
    """ray_actor_options of every deployment build_app composes (Ray 2.60's Application graph)."""
    found = {}

    def walk(node):
        bound = getattr(node, "_bound_deployment", None)
        if bound is None:
            return
        found[bound.name] = dict(bound.ray_actor_options or {})
        for child in (*bound.init_args, *bound.init_kwargs.values()):
            walk(child)

    walk(app)
    return found


# --- drift -----------------------------------------------------------------------------------------


def flatten(node, prefix: str = "") -> dict:
    """Dotted paths to leaves; lists of named objects (applications, deployments) keyed by name."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list) and node and all(isinstance(x, dict) and "name" in x for x in node):
        names = [x["name"] for x in node]
        assert len(set(names)) == len(names), f"duplicate names under {prefix}: {names}"
        return flatten({x["name"]: {k: v for k, v in x.items() if k != "name"} for x in node}, prefix)
    return {prefix: node}


def drift(local: dict, production: dict) -> tuple[dict, set]:
    a, b = flatten(local), flatten(production)
    differing = {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in a.keys() | b.keys() if a.get(k, ...) != b.get(k, ...)}
    allowed = {k for k in differing if any(fnmatch.fnmatchcase(k, p) for p in PRODUCTION_OVERRIDES)}
    unexplained = {k: v for k, v in differing.items() if k not in allowed}
    unused = {p for p in PRODUCTION_OVERRIDES if not any(fnmatch.fnmatchcase(k, p) for k in differing)}
    return unexplained, unused


def test_serve_config_v2_does_not_drift_from_serve_config_yaml():
    local, production = local_serve_config(), serve_config_v2()
    (local_app,), (prod_app,) = local["applications"], production["applications"]
    assert prod_app["name"] == local_app["name"] == APP
    assert prod_app["import_path"] == local_app["import_path"]
    assert prod_app["route_prefix"] == local_app["route_prefix"]
    assert set(prod_app["args"]) == set(local_app["args"])
    assert [d["name"] for d in prod_app["deployments"]] == [d["name"] for d in local_app["deployments"]]
    unexplained, unused = drift(local, production)
    assert unexplained == {}, "serveConfigV2 and serve_config.yaml differ outside PRODUCTION_OVERRIDES"
    assert unused == set(), "PRODUCTION_OVERRIDES entries that no longer match a difference: remove them"


def test_the_drift_check_catches_drift():
    local = local_serve_config()
    for mutate in (
        lambda c: c["applications"][0]["args"].update(windows_per_call=8),
        lambda c: c["applications"][0]["args"]["batching"].update(max_batch_size=64),
        lambda c: c["applications"][0]["deployments"][1].update(max_ongoing_requests=8),
        lambda c: c["applications"][0]["deployments"].pop(),
        lambda c: c["applications"][0].update(import_path="deployments.app:other"),
        lambda c: c["http_options"].update(port=9000),
    ):
        changed = copy.deepcopy(local)
        mutate(changed)
        unexplained, _ = drift(changed, serve_config_v2())
        assert unexplained, "a change outside the allow-list went unnoticed"


# --- resources add up ------------------------------------------------------------------------------


def quantity(value) -> float:
    """A Kubernetes quantity (2, "4", "500m", "16Gi") as a number."""
    text = str(value)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def pod_resources(group: dict) -> dict[str, float]:
    """The Ray resources one pod of a group advertises, as KubeRay starts it."""
    params = group.get("rayStartParams", {})
    (container,) = [c for c in containers(group) if c["name"].startswith("ray-")]
    limits = container["resources"]["limits"]
    res = {
        "CPU": quantity(params.get("num-cpus", limits.get("cpu", 0))),
        "GPU": quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0))),
    }
    if "resources" in params:
        # KubeRay passes it to `ray start --resources` as is: a quoted JSON string.
        res.update(json.loads(json.loads(params["resources"])))
    return res


def replica_demands() -> dict[str, tuple[dict[str, float], int, int]]:
    """Per deployment: Ray resources per replica, min and max replicas, as Serve will run them."""
    from deployments.app import build_app
    from deployments.core.config import AppArgs

    (app,) = serve_config_v2()["applications"]
    code = deployment_options(build_app(AppArgs(**app["args"])))
    out = {}
    for dep in app["deployments"]:
        options = dep.get("ray_actor_options", code[dep["name"]])  # a config's options replace the code's whole
        demand = {"CPU": options.get("num_cpus", 1), "GPU": options.get("num_gpus", 0), **options.get("resources", {})}
        auto = dep.get("autoscaling_config")
        lo, hi = (auto["min_replicas"], auto["max_replicas"]) if auto else (dep.get("num_replicas", 1),) * 2
        out[dep["name"]] = ({k: v for k, v in demand.items() if v}, lo, hi)
    return out


def fits(demand: dict, pod: dict) -> bool:
    return all(pod.get(k, 0) >= v for k, v in demand.items())


def test_each_deployment_can_land_only_on_its_own_group():
    pods = {name: pod_resources(g) for name, g in groups().items()}
    assert pods["head"]["CPU"] == 0 and groups()["head"]["rayStartParams"]["num-cpus"] == "0"
    where = {name: {g for g, pod in pods.items() if fits(demand, pod)} for name, (demand, _, _) in replica_demands().items()}
    assert where == {"Classifier": {"gpu"}, "Preprocessor": {"cpu"}, "Router": {"cpu"}}


def test_the_replicas_fit_in_their_groups_at_max_scale():
    demands, cluster = replica_demands(), rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    g = groups()
    gpu_pod, cpu_pod = pod_resources(g["gpu"]), pod_resources(g["cpu"])

    demand, lo, hi = demands["Classifier"]
    assert demand["GPU"] > 0 and g["gpu"]["minReplicas"] >= 1 and lo >= 1
    assert hi * demand["GPU"] <= g["gpu"]["maxReplicas"] * gpu_pod["GPU"]
    per_pod = int(gpu_pod["GPU"] // demand["GPU"])
    assert per_pod >= 1 and per_pod * demand["CPU"] <= gpu_pod["CPU"], "a GPU pod lacks the CPUs for its replicas"

    cpu_deployments = [demands["Preprocessor"], demands["Router"]]
    for resource in {k for d, _, _ in cpu_deployments for k in d}:
        needed = sum(hi * d.get(resource, 0) for d, _, hi in cpu_deployments)
        assert needed <= g["cpu"]["maxReplicas"] * cpu_pod.get(resource, 0), resource
    for d, _, _ in cpu_deployments:
        assert fits(d, cpu_pod)
