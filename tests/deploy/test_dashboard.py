"""k8s/grafana-dashboard.json queries only metrics that exist under the names they are exported as.

The chs_* names come from the metrics the deployments create (declared in
deployments/metrics.py); the Ray Serve ones are checked against the installed Ray
source, so a Ray upgrade that renames one fails here, not on a blank panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import ray

from deployments import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "grafana-dashboard.json"
ALERT_RULES = ROOT / "k8s" / "prometheus-rules.yaml"
RAY_SRC = Path(ray.__file__).parent

# Ray Serve metrics the dashboard uses: kind, the file that defines it, the literal that names it there.
RAY_METRICS = {
    "serve_http_request_latency_ms": ("histogram", "serve/_private/request_ingress_metrics.py",
                                      'f"serve_{protocol_name}_request_latency_ms"'),
    "serve_num_http_requests": ("counter", "serve/_private/request_ingress_metrics.py",
                                'f"serve_num_{protocol_name}_requests"'),
    "serve_deployment_processing_latency_ms": ("histogram", "serve/_private/replica.py",
                                               '"serve_deployment_processing_latency_ms"'),
    "serve_deployment_replica_healthy": ("gauge", "serve/_private/deployment_state.py",
                                         '"serve_deployment_replica_healthy"'),
    "serve_deployment_queued_queries": ("gauge", "serve/_private/router.py", '"serve_deployment_queued_queries"'),
}
METRIC_TOKEN = re.compile(r"\bray_[a-zA-Z0-9_]+")


def exported(name: str, kind: str) -> set[str]:
    """Prometheus names of a ray.util.metrics metric: 'ray_' prefix; counters end in _total (once)."""
    base = f"ray_{name}"
    if kind == "counter":
        return {base if base.endswith("_total") else base + "_total"}
    if kind == "histogram":
        return {base + "_bucket", base + "_count", base + "_sum"}
    return {base}


def app_metrics() -> dict[str, str]:
    """{name: kind} of every metric the deployments create."""
    return {spec.name: spec.kind for spec in metrics.METRICS}


def known_names() -> set[str]:
    names = set()
    for name, kind in app_metrics().items():
        names |= exported(name, kind)
    for name, (kind, _, _) in RAY_METRICS.items():
        names |= exported(name, kind)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def targets(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_the_app_defines_the_metrics_the_docs_promise():
    assert app_metrics() == {
        "chs_batch_size": "histogram", "chs_batch_tokens": "histogram", "chs_cases_total": "counter",
        "chs_escalations_total": "counter", "chs_human_review_total": "counter", "chs_confidence": "histogram",
        "chs_chunks_per_case": "histogram", "chs_coalesced_group_size": "histogram", "chs_feedback_total": "counter", "chs_intake_queue_depth": "gauge",
        "chs_intake_task_age_seconds": "histogram", "chs_intake_tasks_total": "counter",
        "chs_intake_retries_total": "counter", "chs_review_cases": "gauge", "chs_review_overdue": "gauge",
        "chs_review_time_to_claim_seconds": "histogram", "chs_review_time_to_resolve_seconds": "histogram",
    }
    assert exported("chs_cases_total", "counter") == {"ray_chs_cases_total"}
    # Every declared spec is listed, so nothing the deployments create escapes this check.
    declared = {v for v in vars(metrics).values() if isinstance(v, metrics.MetricSpec)}
    assert declared == set(metrics.METRICS)


@pytest.mark.parametrize("name", sorted(RAY_METRICS))
def test_ray_still_defines_the_serve_metric(name):
    _, path, literal = RAY_METRICS[name]
    assert literal in (RAY_SRC / path).read_text(encoding="utf-8"), f"{name} is no longer defined in ray/{path}"


def test_every_query_uses_only_existing_metrics(dashboard):
    known = known_names()
    for panel, target in targets(dashboard):
        used = set(METRIC_TOKEN.findall(target["expr"]))
        assert used, f"panel {panel['title']!r}: no metric in {target['expr']!r}"
        assert used <= known, f"panel {panel['title']!r}: unknown metric(s) {sorted(used - known)}"


def test_quantiles_read_buckets_grouped_by_le(dashboard):
    for panel, target in targets(dashboard):
        expr = target["expr"]
        if "histogram_quantile" in expr:
            assert re.search(r"ray_\w+_bucket", expr) and re.search(r"by \([^)]*\ble\b", expr), expr
        for name in METRIC_TOKEN.findall(expr):
            if name.endswith("_bucket"):
                assert re.search(rf"(rate|increase)\({name}\b", expr), f"{name} must be rated: {expr}"


def test_every_query_is_scoped_to_the_application(dashboard):
    for panel, target in targets(dashboard):
        for selector in re.findall(r"ray_\w+(\{[^}]*\})?", target["expr"]):
            assert 'application="$application"' in selector, f"panel {panel['title']!r}: {target['expr']}"


def test_panels_cover_what_operators_need(dashboard):
    used_by_title = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in dashboard["panels"]}
    wanted = {
        "throughput": "rate(ray_chs_cases_total",
        "latency": "ray_serve_http_request_latency_ms_bucket",
        "batch fill": "ray_chs_batch_size_bucket",
        "replicas": "ray_serve_deployment_replica_healthy",
        "confidence": "ray_chs_confidence_bucket",
        "human review": "ray_chs_human_review_total",
        "agreement by model version": "ray_chs_feedback_total",
        "worklist overdue": "ray_chs_review_overdue",
        "worklist time to claim": "ray_chs_review_time_to_claim_seconds_bucket",
        "worklist time to resolve": "ray_chs_review_time_to_resolve_seconds_bucket",
    }
    for what, metric in wanted.items():
        assert any(metric in exprs for exprs in used_by_title.values()), f"no panel shows {what} ({metric})"


def test_layout_and_variables(dashboard):
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["targets"] and all(t["refId"] for t in p["targets"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    text = json.dumps(panels)
    for used in set(re.findall(r"\$(\w+)", text)) - {"__rate_interval"}:
        assert used in variables, f"${used} is not a dashboard variable"


def test_an_overdue_escalation_raises_an_alert_on_metrics_that_exist():
    import yaml

    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    assert rules["apiVersion"] == "monitoring.coreos.com/v1" and rules["kind"] == "PrometheusRule"
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"]}
    overdue = alerts["HelplineEscalationOverdue"]
    assert "ray_chs_review_overdue" in overdue["expr"] and 'escalated="true"' in overdue["expr"]
    assert overdue["labels"]["severity"] == "critical"
    known = known_names()
    for alert in alerts.values():
        used = set(METRIC_TOKEN.findall(alert["expr"]))
        assert used and used <= known, (alert["alert"], sorted(used - known))
