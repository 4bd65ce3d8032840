"""The batching policy as plain functions, over a grid of sizes and budgets."""

import itertools

import numpy as np
import pytest

from deployments.core.batching import pad_rows, plan_microbatches, run_batch
from deployments.core.windowing import TokenWindows

rng = np.random.default_rng(1)


@pytest.mark.parametrize("n", [0, 1, 7, 64, 300])
@pytest.mark.parametrize("max_rows", [1, 4, 32])
@pytest.mark.parametrize("max_tokens", [512, 2048, 8192])
def test_plan_covers_each_row_once_within_budget(n, max_rows, max_tokens):
    lengths = list(rng.integers(3, 513, size=n))
    groups = plan_microbatches(lengths, max_rows, max_tokens)
    flat = sorted(itertools.chain.from_iterable(groups))
    assert flat == list(range(n))
    for g in groups:
        assert 1 <= len(g) <= max_rows
        longest = max(lengths[i] for i in g)
        assert len(g) == 1 or len(g) * longest <= max_tokens


def test_plan_sorts_by_length_so_padding_stays_small():
    lengths = [500, 10, 480, 12, 11, 490]
    groups = plan_microbatches(lengths, max_rows=3, max_tokens=10_000)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[480, 490, 500], [10, 11, 12]]


def plan_cost(lengths, groups, pass_cost):
    return sum(pass_cost + len(g) * max(lengths[i] for i in g) for g in groups)


def cheapest_split_cost(lengths, max_rows, max_tokens, pass_cost):
    """Every way to cut the length-sorted rows into consecutive groups within the limits: the least cost."""
    ordered = sorted(lengths, reverse=True)
    best = None
    for cuts in itertools.product([False, True], repeat=max(0, len(ordered) - 1)):
        groups, current = [], [ordered[0]]
        for length, cut in zip(ordered[1:], cuts):
            if cut:
                groups.append(current)
                current = []
            current.append(length)
        groups.append(current)
        if all(len(g) == 1 or (len(g) <= max_rows and len(g) * g[0] <= max_tokens) for g in groups):
            cost = sum(pass_cost + len(g) * g[0] for g in groups)
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_rows,max_tokens", [(2, 1024), (4, 1024), (32, 1024), (32, 512), (3, 10_000)])
@pytest.mark.parametrize("pass_cost", [0, 55, 400, 100_000])
def test_plan_is_the_cheapest_split_of_the_sorted_rows(seed, max_rows, max_tokens, pass_cost):
    lengths = list(np.random.default_rng(seed).integers(3, 513, size=int(np.random.default_rng(seed).integers(1, 10))))
    groups = plan_microbatches(lengths, max_rows, max_tokens, pass_cost)
    assert plan_cost(lengths, groups, pass_cost) == cheapest_split_cost(lengths, max_rows, max_tokens, pass_cost)


def test_a_pass_costing_more_than_its_padding_keeps_rows_together():
    lengths = [128, 120, 60, 50, 40]
    assert len(plan_microbatches(lengths, max_rows=32, max_tokens=1024, pass_cost_tokens=10**6)) == 1
    # At no cost per pass, padding a 40-token row to 128 is never worth it.
    cheap = plan_microbatches(lengths, max_rows=32, max_tokens=1024, pass_cost_tokens=0)
    assert [[lengths[i] for i in g] for g in cheap] == [[128], [120], [60], [50], [40]]


def test_a_pass_cost_as_large_as_the_budget_gives_the_fewest_passes():
    rng = np.random.default_rng(3)
    for _ in range(50):
        lengths = list(rng.integers(3, 513, size=40))
        groups = plan_microbatches(lengths, max_rows=32, max_tokens=1024, pass_cost_tokens=1024 * 40)
        # The fewest: fill each group from the longest row while it fits.
        ordered, fewest, i = sorted(lengths, reverse=True), 0, 0
        while i < len(ordered):
            rows = 1
            while i + rows < len(ordered) and rows < 32 and (rows + 1) * ordered[i] <= 1024:
                rows += 1
            fewest, i = fewest + 1, i + rows
        assert len(groups) == fewest


def test_oversized_row_gets_its_own_group():
    assert plan_microbatches([600, 10], max_rows=8, max_tokens=512) == [[0], [1]]


def test_pad_rows_pads_to_longest_only():
    ids, mask = pad_rows([np.array([1, 2, 3]), np.array([4])], pad_id=0)
    assert ids.shape == (2, 3) and ids.dtype == np.int64
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def fake_forward(calls):
    """A deterministic stand-in for the model: each row's 'probabilities' encode its ids."""

    def forward(ids, mask, make_way, beside):
        calls.append(ids.shape)
        lengths = mask.sum(axis=1)
        first = ids[:, 0].astype(np.float32)
        return {
            "main_category": np.stack([first, lengths.astype(np.float32)], axis=1),
            "priority": np.stack([lengths.astype(np.float32), first, first], axis=1),
        }

    return forward


@pytest.mark.parametrize("max_rows, max_tokens", [(1, 512), (4, 64), (32, 8192)])
def test_run_batch_returns_each_request_its_own_windows_in_order(max_rows, max_tokens):
    requests = []
    for r in range(6):
        rows = [np.concatenate([[1000 * r + w], rng.integers(5, 100, size=int(rng.integers(0, 40)))])
                for w in range(int(rng.integers(1, 5)))]
        requests.append(TokenWindows.from_rows(rows))
    calls = []
    out = run_batch(requests, fake_forward(calls), max_rows=max_rows, max_tokens=max_tokens)
    assert len(out) == len(requests)
    for r, req in enumerate(requests):
        assert out[r]["main_category"].shape == (len(req), 2)
        for w in range(len(req)):
            assert out[r]["main_category"][w, 0] == req.window(w)[0]
            assert out[r]["main_category"][w, 1] == len(req.window(w))
    for shape in calls:
        assert shape[0] <= max_rows


def test_microbatch_callback_sees_real_tokens():
    requests = [TokenWindows.from_rows([np.arange(1, 11), np.arange(1, 4)])]
    seen = []
    run_batch(requests, fake_forward([]), max_rows=8, max_tokens=8192, on_microbatch=lambda r, t: seen.append((r, t)))
    assert seen == [(2, 13)]
