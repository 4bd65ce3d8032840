"""The OpenAPI 3.1 document served at /openapi.json, built from ``OPERATIONS`` and the models, with the
config-dependent schema keywords (``FromConfig``) filled in from ``AppArgs`` and the ``LabelSet``."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from deployments.core.config import AppArgs
from deployments.core.contract.operations import ERROR_BODIES, ERRORS, OPERATIONS, Operation
from deployments.core.contract.responses import _absent_not_null
from deployments.core.contract.validation import CONFIG_KEY
from deployments.core.labels import LabelSet

OPENAPI_VERSION = "3.1.0"  # JSON Schema 2020-12, what pydantic writes
REF_TEMPLATE = "#/components/schemas/{model}"


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace every ``CONFIG_KEY`` marker with the config values it names."""
    if isinstance(node, dict):
        out = {k: _fill(v, values) for k, v in node.items() if k != CONFIG_KEY}
        for keyword, setting in node.get(CONFIG_KEY, {}).items():
            out[keyword] = values[setting]
        return out
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


# One Server-Sent Event (OpenAPI before 3.2: a sequential media type's schema describes each item).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event's number in its call; send it back as Last-Event-ID."},
        "event": {"type": "string", "enum": ["update", "escalation", "end"]},
        "data": {"type": "string", "description": "The event's JSON: a piece's answer, the escalation, or the "
                                                  "closed call's body; never words of the transcript."},
    },
    "required": ["data"],
}


def _json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _parameters(op: Operation, document: dict) -> list[dict]:
    """OpenAPI parameters from a params model: its ``{name}`` fields in the path, the rest in the query."""
    (schema,) = [v for k, v in document.get("$defs", {}).items() if k == op.params.__name__] or [document]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        where = "path" if name in op.path_names() else "query"
        prop = _fill({k: v for k, v in prop.items() if k != "title"}, {})
        if any(v == {"type": "null"} for v in prop.get("anyOf", ())):
            _absent_not_null(prop)  # a query parameter is left out, never null
        out.append({"name": name, "in": where, "required": where == "path" or name in required, "schema": prop})
    return out


def build_openapi(args: AppArgs, labels: LabelSet) -> dict:
    """The OpenAPI 3.1 document served at /openapi.json, from the models and the live config."""
    models = [(op.request, "validation") for op in OPERATIONS if op.request is not None]
    models += [(op.response, "serialization") for op in OPERATIONS if op.response is not None]
    models += [(body, "serialization") for body in ERROR_BODIES.values()]
    params = {op.params: models_json_schema([(op.params, "validation")], ref_template=REF_TEMPLATE)[1]
              for op in OPERATIONS if op.params is not None}
    _, top = models_json_schema(models, ref_template=REF_TEMPLATE)
    schemas = _fill(top["$defs"], {
        "max_narrative_chars": args.max_narrative_chars,
        "max_batch_narratives": args.max_batch_narratives,
        "priority_labels": list(labels.priority),
        "main_category_labels": list(labels.main_category),
        "sub_category_labels": list(labels.sub_category),
        "intervention_labels": list(labels.intervention),
    })
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        if not op.documented:
            continue
        ok_content = (_json_content(_ref(op.response) if op.response else {"type": "object"})
                      if op.media_type == "application/json" else {op.media_type: {"schema": SSE_EVENT}})
        if op.csv:
            ok_content["text/csv"] = {"schema": {"type": "string"}}
        responses = {str(op.status): {"description": op.ok, "content": ok_content}}
        for status in op.statuses():
            # 401/403 come before the route's own checks, in this service's body (deployments/ingress.py).
            body = ERROR_BODIES["service" if status in (401, 403) else op.error_body]
            responses[str(status)] = {"description": ERRORS[status], "content": _json_content(_ref(body))}
        operation: dict[str, Any] = {"operationId": op.id, "summary": op.summary, "responses": responses}
        if op.params is not None:
            parameters = _parameters(op, params[op.params])
        else:
            parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                          for name in op.path_names()]
        parameters += [{"name": name, "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256}}
                       for name in op.headers]
        if parameters:
            operation["parameters"] = parameters
        if op.request is not None:
            operation["requestBody"] = {"required": True, "content": _json_content(_ref(op.request))}
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "helpline-serve",
            "version": "1.0.0",
            "description": "OpenCHS child-helpline case classifier: four labels and a routing decision per narrative.",
        },
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
    }
