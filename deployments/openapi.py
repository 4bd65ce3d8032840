"""The OpenAPI 3 document served at /openapi.json, built from the live config."""

from __future__ import annotations

from deployments.core.config import AppArgs
from deployments.core.labels import LabelSet


def _prediction(label_schema: dict) -> dict:
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["label", "confidence"],
                "properties": {"label": label_schema, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
            },
            label_schema,
        ],
        "description": "With include_confidence (the default) an object; otherwise the bare label.",
    }


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


ERRORS = {
    "400": "Malformed body: empty, not UTF-8, not JSON, or a narrative empty after normalization.",
    "401": "Missing or wrong API key (only when API keys are configured).",
    "413": "Body, narrative or batch over its configured limit.",
    "415": "Content-Type is not application/json.",
    "422": "Well-formed JSON that does not match the request schema.",
    "429": "Overloaded: retry after Retry-After seconds.",
    "500": "The classifier failed on this request.",
    "503": "Overloaded or not ready: retry after Retry-After seconds.",
    "504": "The classifier did not answer in time.",
}


def build_openapi(args: AppArgs, labels: LabelSet) -> dict:
    string_label = {"type": "string"}
    priority_label = {"type": "integer", "enum": list(labels.priority)}
    classification = {
        "type": "object",
        "required": ["main_category", "sub_category", "sub_category_2", "intervention", "priority"],
        "properties": {
            "main_category": _prediction(string_label),
            "sub_category": _prediction(string_label),
            "sub_category_2": _prediction(string_label),
            "intervention": _prediction(string_label),
            "priority": _prediction(priority_label),
        },
    }
    case_result = {
        "type": "object",
        "required": ["classification", "routing", "chunks", "truncated"],
        "properties": {
            "classification": {"$ref": "#/components/schemas/Classification"},
            "routing": {"$ref": "#/components/schemas/Routing"},
            "chunks": {"type": "integer", "minimum": 1, "description": "Model windows the narrative was read in."},
            "truncated": {"type": "boolean", "description": "True only when long_narratives is 'truncate' and text was cut."},
            "tokens": {"type": "integer", "minimum": 0},
            "chunk_details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "token_span", "classification"],
                    "properties": {
                        "index": {"type": "integer"},
                        "token_span": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                        "classification": {"$ref": "#/components/schemas/Classification"},
                    },
                },
            },
        },
    }
    narrative = {"type": "string", "minLength": 1, "maxLength": args.max_narrative_chars}
    flags = {
        "include_confidence": {"type": "boolean", "default": True},
        "include_chunks": {"type": "boolean", "default": False},
    }
    model_ref = {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}, "revision": {"type": "string", "nullable": True}},
    }

    def post(summary, request_schema, response_schema) -> dict:
        return {
            "post": {
                "summary": summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request_schema}"}}},
                },
                "responses": {
                    "200": {
                        "description": "Classified.",
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{response_schema}"}}},
                    },
                    **{code: _error_response(text) for code, text in ERRORS.items()},
                },
            }
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "helpline-serve",
            "version": "1.0.0",
            "description": "OpenCHS child-helpline case classifier: four labels and a routing decision per narrative.",
        },
        "paths": {
            "/classify": post("Classify one narrative.", "ClassifyRequest", "ClassifyResponse"),
            "/classify/batch": post("Classify narratives in order.", "BatchRequest", "BatchResponse"),
            "/health": {
                "get": {
                    "summary": "200 when the model is loaded and every deployment is ready.",
                    "responses": {
                        "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                        "503": _error_response("Not ready."),
                    },
                }
            },
            "/info": {
                "get": {
                    "summary": "Model, labels and serving settings.",
                    "responses": {
                        "200": {"description": "Info.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Info"}}}},
                        "401": _error_response(ERRORS["401"]),
                        "503": _error_response("Not ready."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {
                        "200": {"description": "OpenAPI 3 document.", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "401": _error_response(ERRORS["401"]),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ClassifyRequest": {
                    "type": "object",
                    "required": ["narrative"],
                    "additionalProperties": True,
                    "properties": {"narrative": narrative, **flags},
                },
                "BatchRequest": {
                    "type": "object",
                    "required": ["narratives"],
                    "additionalProperties": True,
                    "properties": {
                        "narratives": {"type": "array", "items": narrative, "minItems": 1, "maxItems": args.max_batch_narratives},
                        **flags,
                    },
                },
                "Classification": classification,
                "Routing": {
                    "type": "object",
                    "required": ["queue", "escalate", "human_review", "reasons"],
                    "properties": {
                        "queue": {"type": "string"},
                        "escalate": {"type": "boolean"},
                        "human_review": {"type": "boolean"},
                        "reasons": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "CaseResult": case_result,
                "ClassifyResponse": {
                    "allOf": [
                        {"$ref": "#/components/schemas/CaseResult"},
                        {
                            "type": "object",
                            "required": ["success", "model", "processing_time_seconds"],
                            "properties": {
                                "success": {"type": "boolean", "enum": [True]},
                                "model": model_ref,
                                "processing_time_seconds": {"type": "number", "minimum": 0},
                            },
                        },
                    ]
                },
                "BatchResponse": {
                    "type": "object",
                    "required": ["success", "results", "model", "processing_time_seconds"],
                    "properties": {
                        "success": {"type": "boolean", "enum": [True]},
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/CaseResult"}},
                        "model": model_ref,
                        "processing_time_seconds": {"type": "number", "minimum": 0},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}, "deployments": {"type": "object"}},
                },
                "Info": {"type": "object", "required": ["model", "labels", "max_length"]},
                "Error": {
                    "type": "object",
                    "required": ["success", "error"],
                    "properties": {
                        "success": {"type": "boolean", "enum": [False]},
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "request_id": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    }
