"""The batching policy, as plain functions over a queue's worth of requests.

The classifier's batch queue (``batch_queue.BatchQueue``) hands it a list of
requests; each request is a ``TokenWindows`` holding one or more model windows
(a short case is one window; a long transcript or a /classify/batch call is
many). The cost of a request is its window count. All
windows of all requests are sorted by length and cut into micro-batches that
are padded only to their own longest row and stay under a padded-token
budget, so one 512-token window does not make thirty 40-token rows pay for
512 positions each.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Mapping, Sequence

import numpy as np

from deployments.core.lanes import Held
from deployments.core.windowing import TokenWindows

# (ids, attention_mask) int64 (rows, cols), what the pass calls between layers to make way for a more
# urgent one (None: it runs whole), and what says whether another pass runs beside it (asked before each
# graph) → task → probabilities (rows, n_labels)
ForwardFn = Callable[[np.ndarray, np.ndarray, Callable[[], None] | None, Callable[[], bool]],
                     Mapping[str, np.ndarray]]
ALONE = Held()  # what a pass outside any gate holds: the whole model


# A forward pass's fixed cost, in padded tokens: 12.8 ms against 0.23 ms a token for eager PyTorch
# fp32 on 2 cores of an AMX Xeon (bench/RESULTS.md, "Batches formed when the model is free").
PASS_COST_TOKENS = 55


def plan_microbatches(lengths: Sequence[int], max_rows: int, max_tokens: int,
                      pass_cost_tokens: int = PASS_COST_TOKENS) -> list[list[int]]:
    """Group row indices, longest first, so each group's rows * longest <= max_tokens, at the least cost.

    A group costs ``pass_cost_tokens`` plus its padded tokens (rows * its longest row); the rows,
    sorted by length, are split where padding a short row up to a long one would cost more than a
    pass of its own (a dynamic programme over the split points). A large ``pass_cost_tokens`` gives
    the fewest passes. A single row longer than the budget still gets a group of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    ordered = [lengths[i] for i in order]
    n = len(order)
    # cost[j]: the least cost of the first j rows (longest first); start[j]: where its last group starts.
    cost, start = [0] * (n + 1), [0] * (n + 1)
    for j in range(1, n + 1):
        cost[j] = cost[j - 1] + pass_cost_tokens + ordered[j - 1]  # the last row alone
        start[j] = j - 1
        for first in range(j - 2, max(-1, j - 1 - max_rows), -1):
            rows = j - first
            if rows * ordered[first] > max_tokens:
                break  # a longer group starts at a longer row: over the budget too
            candidate = cost[first] + pass_cost_tokens + rows * ordered[first]
            if candidate <= cost[j]:  # a tie goes to the larger group: fewer passes
                cost[j], start[j] = candidate, first
    groups: list[list[int]] = []
    j = n
    while j:
        groups.append(order[start[j]:j])
        j = start[j]
    return groups[::-1]


def pad_rows(rows: Sequence[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pad to the longest row only: ids and attention mask, int64."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = r
        mask[j, : len(r)] = 1
    return ids, mask


def run_batch(
    requests: Sequence[TokenWindows],
    forward: ForwardFn,
    *,
    max_rows: int,
    max_tokens: int,
    pass_cost_tokens: int = PASS_COST_TOKENS,
    pad_id: int = 0,
    on_microbatch: Callable[[int, int], None] | None = None,
    turn: Callable[[], AbstractContextManager] = nullcontext,
) -> list[dict[str, np.ndarray]]:
    """Run every window of every request; return each request's per-task probabilities.

    Results come back in request order, with each request's windows in order. Each micro-batch's
    forward pass runs inside ``turn()`` (the replica's ``lanes.LaneGate``: live work goes first), and
    is given what that turn yields (``lanes.Held``: its ``make_way`` callback, and ``beside``, whether
    another pass runs beside it; from ``nullcontext``, None: alone, whole).
    """
    rows = [(r, w) for r, req in enumerate(requests) for w in range(len(req))]
    lengths = [len(requests[r].window(w)) for r, w in rows]
    out: list[dict[str, np.ndarray] | None] = [None] * len(requests)
    for group in plan_microbatches(lengths, max_rows, max_tokens, pass_cost_tokens):
        ids, mask = pad_rows([requests[rows[g][0]].window(rows[g][1]) for g in group], pad_id)
        if on_microbatch is not None:
            on_microbatch(len(group), int(mask.sum()))
        with turn() as held:
            held = held or ALONE  # nullcontext's None: the model is this pass's alone
            probs = forward(ids, mask, held.make_way, held.beside)
        for k, g in enumerate(group):
            r, w = rows[g]
            if out[r] is None:
                out[r] = {t: np.empty((len(requests[r]), p.shape[1]), dtype=np.float32) for t, p in probs.items()}
            for task, p in probs.items():
                out[r][task][w] = p[k]
    return [o if o is not None else {} for o in out]
