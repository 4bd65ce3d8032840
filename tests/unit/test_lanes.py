"""Live first: the order in which the model's two lanes take their forward passes (core/lanes.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from deployments.core.batching import run_batch
from deployments.core.lanes import LIVE, QUEUED, LaneGate
from deployments.core.windowing import TokenWindows


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the waiters never lined up"
        time.sleep(0.001)


def order_of_turns(gate: LaneGate, waiters: list[str]) -> list[str]:
    """The lanes in the order their waiters got the model, all of them waiting (in ``waiters``'s
    order) while a queued pass runs."""
    order: list[str] = []
    holder = gate.turn(QUEUED)
    holder.__enter__()

    def wait_turn(lane: str) -> None:
        with gate.turn(lane):
            order.append(lane)

    threads = []
    for i, lane in enumerate(waiters):
        thread = threading.Thread(target=wait_turn, args=(lane,))
        thread.start()
        threads.append(thread)
        wait_for(lambda: sum(gate._waiting.values()) == i + 1)  # each in line before the next comes
    holder.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    return order


def expected_order(n_live: int, n_queued: int, streak: int) -> list[str]:
    """Live first; after ``streak`` live turns while queued work waits, one queued turn."""
    out, run = [], 0
    while n_live or n_queued:
        if n_live and not (n_queued and run >= streak):
            out.append(LIVE)
            n_live, run = n_live - 1, run + 1
        else:
            out.append(QUEUED)
            n_queued, run = n_queued - 1, 0
    return out


def test_a_live_pass_waiting_goes_before_a_queued_one_that_waited_longer():
    assert order_of_turns(LaneGate(), [QUEUED, QUEUED, LIVE]) == [LIVE, QUEUED, QUEUED]


@pytest.mark.parametrize("streak", [1, 2, 8])
@pytest.mark.parametrize("n_live,n_queued", [(0, 3), (3, 0), (1, 1), (5, 2), (12, 3), (2, 6)])
def test_the_order_over_a_grid_of_waiting_work(n_live, n_queued, streak):
    """However they arrived (queued first here, the worst case for live), live goes first, and the
    backlog still gets one pass in every ``streak + 1`` while live work keeps coming."""
    waiters = [QUEUED] * n_queued + [LIVE] * n_live
    assert order_of_turns(LaneGate(max_live_streak=streak), waiters) == expected_order(n_live, n_queued, streak)


def test_one_pass_at_a_time():
    gate, inside, most = LaneGate(), [0], [0]
    lock = threading.Lock()

    def work(lane):
        for _ in range(50):
            with gate.turn(lane):
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=work, args=(lane,)) for lane in (LIVE, QUEUED, LIVE, QUEUED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most[0] == 1


def test_an_unknown_lane_and_a_zero_streak_are_refused():
    with pytest.raises(ValueError):
        with LaneGate().turn("bulk"):
            pass
    with pytest.raises(ValueError):
        LaneGate(max_live_streak=0)


def test_each_micro_batch_takes_its_own_turn():
    """A long request's micro-batches each take a turn, so a live pass can run between two of them."""
    turns: list[int] = []
    depth = [0]

    class Turn:
        def __enter__(self):
            depth[0] += 1
            turns.append(depth[0])

        def __exit__(self, *exc):
            depth[0] -= 1

    def forward(ids, mask):
        assert depth[0] == 1, "the forward pass ran outside its turn"
        return {"t": np.full((len(ids), 2), 0.5, dtype=np.float32)}

    windows = TokenWindows.from_rows([np.arange(1, 100, dtype=np.int32) for _ in range(6)])
    run_batch([windows], forward, max_rows=2, max_tokens=10_000, turn=Turn)
    assert turns == [1, 1, 1]
