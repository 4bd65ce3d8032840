"""Property-based API testing: schemathesis drives the served /openapi.json.

Over 500 generated cases (valid bodies and deliberately invalid ones) across
every operation; each response must be no 5xx, carry a status the document
lists, a declared content type, and a body that validates against the
document's schema for that status.
"""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Invalid input must be refused with a 4xx (schemathesis knows which mutations stay valid once serialized).
NEGATIVE_CHECKS = CHECKS + [negative_data_rejection]
# How invalid input may be refused: stricter than schemathesis' default, which also allows 429 and 5xx.
REFUSALS = [400, 413, 415, 422]
MIN_CASES = 500
# Examples per (operation, mode). GET routes take no input, so Hypothesis stops after a few. With 14
# POST routes (the worklist, live calls and OpenCHS's demo added 7) that is still over 2,000 cases.
EXAMPLES = {("POST", GenerationMode.POSITIVE): 100, ("POST", GenerationMode.NEGATIVE): 60,
            ("GET", GenerationMode.POSITIVE): 5}

pytestmark = pytest.mark.slow


def test_generated_cases_conform_to_the_served_schema(served_tiny):
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
    )
    schema = schemathesis.openapi.from_url(f"{served_tiny}/openapi.json", config=config)
    counts: collections.Counter = collections.Counter()
    statuses: collections.Counter = collections.Counter()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /classify", "POST /classify/batch", "GET /health", "GET /info"}
    for operation in operations:
        for (method, mode), n in EXAMPLES.items():
            if operation.method.upper() != method:
                continue
            raw = operation.definition.raw
            if mode.is_negative and "requestBody" not in raw and not raw.get("parameters"):
                continue  # a route that takes no input (POST /classifier/demo) has no invalid input to send

            @settings(max_examples=n, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), print_blob=True)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                response = case.call(base_url=served_tiny, timeout=60)
                counts[(operation.label, mode.value)] += 1
                statuses[response.status_code] += 1
                case.validate_response(response, checks=NEGATIVE_CHECKS if mode.is_negative else CHECKS)

            run()

    total = sum(counts.values())
    print(f"\nschemathesis: {total} cases; by operation: {dict(counts)}; statuses: {dict(sorted(statuses.items()))}")
    assert total >= MIN_CASES, counts
    assert not any(status >= 500 for status in statuses), statuses
    # Both sides were exercised: accepted input and refused input.
    assert statuses[200] > 0 and any(400 <= s < 500 for s in statuses)
