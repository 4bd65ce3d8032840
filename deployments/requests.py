"""Parse and validate request bodies. Pure: raises ``ServiceError`` on bad input.

Unknown fields are ignored (the OpenAPI schema says ``additionalProperties:
true``), so clients written for the model card's FastAPI example, which may
send extra keys, keep working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployments.core.errors import ServiceError

JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class ClassifyRequest:
    narratives: list[str]
    include_confidence: bool = True
    include_chunks: bool = False
    is_batch: bool = False


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES and not media.endswith("+json"):
        raise ServiceError.unsupported_media_type("Send the body as JSON with 'Content-Type: application/json'.")


def decode_json(body: bytes) -> Any:
    if not body:
        raise ServiceError.bad_request("The request body is empty; send a JSON object.", code="empty_body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError.bad_request("The request body is not valid UTF-8.", code="invalid_encoding") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ServiceError.bad_request("The JSON is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:
        msg = getattr(exc, "msg", "malformed JSON")
        raise ServiceError.bad_request(f"The body is not valid JSON ({msg}).", code="invalid_json") from None


def _flag(payload: dict, name: str, default: bool) -> bool:
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise ServiceError.invalid(f"'{name}' must be true or false.")
    return value


def _narrative(value: Any, where: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ServiceError.invalid(f"{where} must be a string.")
    if len(value) > max_chars:
        raise ServiceError.too_large(
            f"{where} has {len(value)} characters; the limit is {max_chars}. Split the narrative or raise max_narrative_chars."
        )
    if "\x00" in value:
        raise ServiceError.invalid(f"{where} contains a NUL character.")
    if not value.strip():
        raise ServiceError.empty(f"{where} is empty.")
    return value


def _object(payload: Any) -> dict:
    if not isinstance(payload, dict):
        raise ServiceError.invalid("The body must be a JSON object.")
    return payload


def parse_classify(payload: Any, *, max_chars: int) -> ClassifyRequest:
    payload = _object(payload)
    if "narrative" not in payload:
        raise ServiceError.invalid("'narrative' is required.", code="missing_field")
    return ClassifyRequest(
        narratives=[_narrative(payload["narrative"], "'narrative'", max_chars)],
        include_confidence=_flag(payload, "include_confidence", True),
        include_chunks=_flag(payload, "include_chunks", False),
    )


def parse_batch(payload: Any, *, max_chars: int, max_items: int) -> ClassifyRequest:
    payload = _object(payload)
    if "narratives" not in payload:
        raise ServiceError.invalid("'narratives' is required.", code="missing_field")
    items = payload["narratives"]
    if not isinstance(items, list):
        raise ServiceError.invalid("'narratives' must be a list of strings.")
    if not items:
        raise ServiceError.empty("'narratives' is empty.")
    if len(items) > max_items:
        raise ServiceError.too_large(f"'narratives' has {len(items)} items; the limit is {max_items} a request.")
    return ClassifyRequest(
        narratives=[_narrative(v, f"'narratives[{i}]'", max_chars) for i, v in enumerate(items)],
        include_confidence=_flag(payload, "include_confidence", True),
        include_chunks=_flag(payload, "include_chunks", False),
        is_batch=True,
    )
