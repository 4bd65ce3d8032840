"""Several single-case requests as one classifier and router call. Pure.

Each /classify request's case is prepared (normalized, tokenized, windowed, checked) in its own
caller's task, so a bad case is refused to its own caller and never joins a group. The cases of
one group are merged into one ``TokenWindows`` and one list of plans, exactly as
``CasePreparer.prepare`` lays out a /classify/batch request, with a ``meta`` that keeps each case's own
ids; the router's bodies come back in the same order and are handed back one per case. Cases
that arrived together are packed into groups that each fit one classifier call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from deployments.core.errors import ServiceError
from deployments.core.preprocess import CasePlan, SingleCase
from deployments.core.windowing import TokenWindows


@dataclass(frozen=True)
class Group:
    """Several cases laid out as one request to the classifier and the router."""

    cases: tuple[SingleCase, ...]
    windows: TokenWindows
    plans: list[CasePlan]
    meta: dict

    def split(self, bodies: Sequence[dict]) -> list[dict]:
        """The router's bodies, one per case in the group's order, each checked to be its own."""
        if len(bodies) != len(self.cases):
            raise RuntimeError(f"the router answered {len(bodies)} cases for a group of {len(self.cases)}")
        for case, body in zip(self.cases, bodies):
            if body["case_id"] != case.case_id:
                raise RuntimeError("the router answered the group's cases out of order")
        return list(bodies)


def merge_cases(cases: Sequence[SingleCase]) -> Group:
    """One group of these cases: windows back to back, plans in order, each case's ids kept apart.

    ``is_batch`` stays False: each case is its own /classify request, so its record has no batch index.
    """
    if not cases:
        raise ValueError("a group needs at least one case")
    keep = any(c.narrative is not None for c in cases)
    meta = {
        "case_ids": [c.case_id for c in cases], "call_ids": [c.call_id for c in cases],
        "request_ids": [c.request_id for c in cases], "task_id": None, "is_batch": False,
        "narratives": [c.narrative for c in cases] if keep else None,
    }
    windows = cases[0].windows if len(cases) == 1 else TokenWindows.concat(c.windows for c in cases)
    return Group(tuple(cases), windows, [c.plan for c in cases], meta)


def pack_groups(cases: Sequence[SingleCase], max_windows: int) -> list[Group]:
    """The cases, in order, as groups of at most ``max_windows`` windows: one classifier call each.

    A group over the limit would reach the classifier in slices, one after the other, and each of
    its cases would wait for them all; a case over it alone still makes a group of its own.
    """
    groups, current, windows = [], [], 0
    for case in cases:
        if current and windows + case.n_windows > max_windows:
            groups.append(merge_cases(current))
            current, windows = [], 0
        current.append(case)
        windows += case.n_windows
    if current:
        groups.append(merge_cases(current))
    return groups


@dataclass(frozen=True)
class CaseOutcome:
    """One case's answer from a group: its body, or the error its caller raises.

    A batch handler must answer every input; an exception would reach every caller of the group alike.
    """

    body: Optional[dict] = None
    error: Optional[ServiceError] = None

    def result(self) -> dict:
        if self.error is not None:
            raise self.error
        return self.body
