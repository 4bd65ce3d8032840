"""Live first: the order in which the model's lanes take their forward passes (core/lanes.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from deployments.core.batching import run_batch
from deployments.core.lanes import LIVE, LONG, QUEUED, LaneGate, lane_for
from deployments.core.windowing import TokenWindows


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the waiters never lined up"
        time.sleep(0.001)


class FakeClock:
    """The gate's clock: each pass advances it by its lane's duration, so shares are exact."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# Seconds of model time per pass: a queued pass of long windows costs several live passes.
PASS_S = {LIVE: 1.0, LONG: 2.0, QUEUED: 3.5}


def order_of_turns(gate: LaneGate, clock: FakeClock, waiters: list[str], holder: str = QUEUED) -> list[str]:
    """The lanes in the order their waiters got the model, all of them waiting (in ``waiters``'s
    order) while a ``holder`` pass runs."""
    order: list[str] = []
    held = gate.turn(holder)
    held.__enter__()
    clock.now += PASS_S[holder]

    def wait_turn(lane: str) -> None:
        with gate.turn(lane):
            order.append(lane)
            clock.now += PASS_S[lane]

    threads = []
    for i, lane in enumerate(waiters):
        thread = threading.Thread(target=wait_turn, args=(lane,))
        thread.start()
        threads.append(thread)
        wait_for(lambda: sum(gate._waiting.values()) == i + 1)  # each in line before the next comes
    held.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    return order


def expected_order(n_live: int, n_queued: int, share: float) -> list[str]:
    """The rule, stated plainly (no decay): live first, unless queued work waits and has had less
    than ``share`` of the model's time; a queued pass holds the model before the waiters come."""
    model = {LIVE: 0.0, QUEUED: PASS_S[QUEUED]}
    out = []
    while n_live or n_queued:
        total = model[LIVE] + model[QUEUED]
        queued_due = n_queued > 0 and total > 0 and model[QUEUED] < share * total
        lane = LIVE if n_live and not queued_due else QUEUED
        out.append(lane)
        model[lane] += PASS_S[lane]
        n_live, n_queued = (n_live - 1, n_queued) if lane == LIVE else (n_live, n_queued - 1)
    return out


def expected_three_lane_order(waiting: dict[str, int], shares: dict[str, float], holder: str) -> list[str]:
    """The rule for three lanes, stated plainly (no decay): the highest lane owed its share of the
    model's time goes first, else the highest lane waiting; ``holder``'s pass ran before."""
    model = {LIVE: 0.0, LONG: 0.0, QUEUED: 0.0}
    model[holder] += PASS_S[holder]
    waiting, out = dict(waiting), []
    while any(waiting.values()):
        total = sum(model.values())
        ranked = [lane for lane in (LIVE, LONG, QUEUED) if waiting[lane]]
        owed = [lane for lane in ranked if model[lane] < shares.get(lane, 0.0) * total]
        lane = (owed or ranked)[0]
        out.append(lane)
        model[lane] += PASS_S[lane]
        waiting[lane] -= 1
    return out


@pytest.mark.parametrize("holder", [LONG, QUEUED])
@pytest.mark.parametrize("n_live,n_long,n_queued", [(3, 3, 0), (0, 2, 2), (1, 1, 1), (20, 4, 2), (2, 5, 5)])
def test_three_lanes_over_a_grid_of_waiting_work(n_live, n_long, n_queued, holder):
    """A short case's pass goes before a long transcript's, which goes before the backlog's; each
    lower lane still gets its share of the model's time."""
    clock = FakeClock()
    gate = LaneGate(queued_share=0.1, long_share=0.25, horizon_s=1e9, clock=clock)
    waiters = [QUEUED] * n_queued + [LONG] * n_long + [LIVE] * n_live  # the lowest lanes came first
    expected = expected_three_lane_order({LIVE: n_live, LONG: n_long, QUEUED: n_queued},
                                         {LONG: 0.25, QUEUED: 0.1}, holder)
    assert order_of_turns(gate, clock, waiters, holder=holder) == expected


def test_a_short_case_waits_for_one_pass_of_a_long_transcript_not_for_all_of_it():
    """A long transcript's windows each take a turn in the long lane; a short case arriving while
    the first runs goes next, ahead of the transcript's other windows."""
    clock = FakeClock()
    order = order_of_turns(LaneGate(clock=clock), clock, [LONG, LONG, LONG, LIVE], holder=LONG)
    assert order[0] == LIVE


def test_a_live_pass_waiting_goes_before_a_queued_one_that_waited_longer():
    clock = FakeClock()
    assert order_of_turns(LaneGate(clock=clock), clock, [QUEUED, QUEUED, LIVE]) == [LIVE, QUEUED, QUEUED]


def test_under_a_live_overload_the_backlog_keeps_its_share_of_the_models_time():
    """Forty live passes waiting and a backlog: the backlog's passes (3.5 s each) get a tenth of the
    model's time, one for every ~32 s of live passes, not one in every few passes."""
    clock = FakeClock()
    order = order_of_turns(LaneGate(queued_share=0.1, horizon_s=1e9, clock=clock), clock,
                           [QUEUED] * 3 + [LIVE] * 40)
    assert order[:32] == [LIVE] * 32 and order[32] == QUEUED
    live = order[: len(order) - order[::-1].index(LIVE)]  # up to the last live pass
    queued_time = (1 + live.count(QUEUED)) * PASS_S[QUEUED]
    assert 0.05 < queued_time / (queued_time + live.count(LIVE) * PASS_S[LIVE]) < 0.15


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("n_live,n_queued", [(0, 3), (3, 0), (1, 1), (5, 2), (40, 3), (2, 6)])
def test_the_order_over_a_grid_of_waiting_work(n_live, n_queued, share):
    """However they arrived (queued first here, the worst case for live), the order follows the rule."""
    clock = FakeClock()
    waiters = [QUEUED] * n_queued + [LIVE] * n_live
    gate = LaneGate(queued_share=share, horizon_s=1e9, clock=clock)
    assert order_of_turns(gate, clock, waiters) == expected_order(n_live, n_queued, share)


def test_old_model_time_fades():
    """A backlog that had the model long ago has no claim on it now: after a quiet spell its past
    time has faded, and its share is that of the recent passes only."""
    clock = FakeClock()
    gate = LaneGate(queued_share=0.1, horizon_s=10.0, clock=clock)
    with gate.turn(QUEUED):
        clock.now += 1000.0  # a long queued run, long ago
    clock.now += 1000.0
    # Without the fade, a thousand seconds of queued time would keep live first for hours; faded,
    # one live pass now leaves the queued lane under its share, so it goes next.
    assert order_of_turns(gate, clock, [QUEUED, LIVE, LIVE], holder=LIVE) == [QUEUED, LIVE, LIVE]


def passes_at_once(gate: LaneGate) -> tuple[int, list[int]]:
    """Six threads, two a lane, fifty turns each: the most passes inside at once, and how many were
    inside whenever a pass that holds every slot was."""
    inside, most, alone = [0], [0], []
    lock = threading.Lock()

    def work(lane):
        for _ in range(50):
            with gate.turn(lane) as held:
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    if not held.beside():
                        alone.append(inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=work, args=(lane,)) for lane in (LIVE, QUEUED, LONG, LIVE, QUEUED, LONG)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return most[0], alone


def test_one_pass_at_a_time():
    assert passes_at_once(LaneGate())[0] == 1


def test_with_two_slots_never_more_than_two_passes_and_a_pass_alone_holds_both():
    most, alone = passes_at_once(LaneGate(slots=2))
    assert most == 2
    assert alone and set(alone) == {1}  # nothing ran beside a pass that took every slot


def test_a_pass_that_finds_the_model_idle_takes_every_slot_and_the_next_waits_for_it():
    gate = LaneGate(slots=2)
    with gate.turn(QUEUED) as alone:
        assert not alone.beside()
        thread, went = start_queued_pass(gate)
        wait_for(lambda: gate._waiting[QUEUED] == 1)
        time.sleep(0.05)
        assert not went.is_set(), "a pass ran beside one that holds every slot"
    assert went.wait(5)
    thread.join(5)


def test_two_waiting_passes_run_beside_each_other_each_on_one_slot():
    gate, both_in, besides = LaneGate(slots=2), threading.Barrier(2, timeout=5), []

    def run(lane):
        with gate.turn(lane) as held:
            besides.append(held.beside())
            both_in.wait()  # only if the two are inside at once

    with gate.turn(LIVE):  # holds every slot while the two line up
        threads = [threading.Thread(target=run, args=(lane,)) for lane in (LONG, QUEUED)]
        for t in threads:
            t.start()
        wait_for(lambda: gate._waiting[LONG] == 1 and gate._waiting[QUEUED] == 1)
    for t in threads:
        t.join(5)
    assert besides == [True, True]


def test_a_pass_that_made_way_resumes_beside_the_pass_it_let_go():
    """A long pass alone holds both slots; asked to make way, it gives them up and waits, so the live pass
    takes one and it resumes in the other: its next layers run on half the threads, beside the live one."""
    gate, events, resumed = LaneGate(slots=2), [], threading.Event()

    def live_pass():
        with gate.turn(LIVE) as held:
            events.append(("live beside", held.beside()))
            assert resumed.wait(5), "the long pass did not resume beside this one"

    with gate.turn(LONG) as held:
        events.append(("long beside", held.beside()))
        thread = threading.Thread(target=live_pass)
        thread.start()
        wait_for(lambda: gate._waiting[LIVE] == 1)
        held.make_way()
        events.append(("long resumed beside", held.beside()))
        resumed.set()
    thread.join(5)
    assert events == [("long beside", False), ("live beside", True), ("long resumed beside", True)]
    assert gate._busy == 0


def test_an_unknown_lane_and_impossible_settings_are_refused():
    with pytest.raises(ValueError):
        with LaneGate().turn("bulk"):
            pass
    with pytest.raises(ValueError):
        LaneGate(slots=0)
    for settings in ({"queued_share": 1.0}, {"queued_share": -0.1}, {"horizon_s": 0}, {"long_share": -0.1}, {"quiet_s": -1},
                     {"queued_share": 0.5, "long_share": 0.5}):
        with pytest.raises(ValueError):
            LaneGate(**settings)


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

    def forward(ids, mask, make_way, beside):
        assert depth[0] == 1, "the forward pass ran outside its turn"
        return {"t": np.full((len(ids), 2), 0.5, dtype=np.float32)}

    windows = TokenWindows.from_rows([np.arange(1, 100, dtype=np.int32) for _ in range(6)])
    run_batch([windows], forward, max_rows=2, max_tokens=10_000, turn=Turn)
    assert turns == [1, 1, 1]


def start_queued_pass(gate: LaneGate) -> tuple[threading.Thread, threading.Event]:
    """A queued pass waiting for its turn in a thread; the event is set once it has the model."""
    went = threading.Event()

    def queued_pass():
        with gate.turn(QUEUED):
            went.set()

    thread = threading.Thread(target=queued_pass)
    thread.start()
    return thread, went


def test_the_backlog_waits_for_a_quiet_moment_after_a_persons_pass():
    """A queued pass does not take the gap right after a live pass (the next piece of a burst is on its
    way through the ingress); it goes once quiet_s has passed with no live or long pass."""
    clock = FakeClock()
    gate = LaneGate(queued_share=0.1, horizon_s=1e9, quiet_s=0.05, clock=clock)
    with gate.turn(QUEUED):  # the backlog has had its share: it is not owed a pass
        clock.now += 1.0
    for _ in range(5):
        with gate.turn(LIVE):
            clock.now += 1.0
    # 1 s queued of 6 s is over a tenth: not owed, so the queued pass waits for quiet.
    thread, went = start_queued_pass(gate)
    assert not went.wait(0.3), "the queued pass took the model within quiet_s of a live pass"
    clock.now += 0.06
    assert went.wait(5), "the queued pass never went once the model was quiet"
    thread.join(5)


def test_a_backlog_owed_its_share_does_not_wait_for_quiet():
    clock = FakeClock()
    gate = LaneGate(queued_share=0.1, horizon_s=1e9, quiet_s=0.05, clock=clock)
    with gate.turn(LIVE):
        clock.now += 10.0  # the backlog has had nothing: it is owed
    thread, went = start_queued_pass(gate)
    assert went.wait(5), "an owed queued pass waited for quiet"
    thread.join(5)


@pytest.mark.parametrize("queued,windows,lane", [(False, 1, LIVE), (False, 2, LONG), (False, 40, LONG),
                                                 (True, 1, QUEUED), (True, 40, QUEUED)])
def test_the_lane_a_call_goes_in(queued, windows, lane):
    assert lane_for(queued=queued, windows=windows) == lane


def test_a_long_pass_makes_way_between_layers_for_a_live_one_and_resumes():
    """A live pass that comes while a long window is in its layers runs at the long pass's next pause,
    not after its end; the long pass then goes on."""
    gate, events = LaneGate(), []

    def live_pass():
        with gate.turn(LIVE):
            events.append("live")

    with gate.turn(LONG) as held:
        make_way = held.make_way
        events.append("long layer 1")
        make_way()  # nothing more urgent waits: it goes straight on
        thread = threading.Thread(target=live_pass)
        thread.start()
        wait_for(lambda: gate._waiting[LIVE] == 1)
        events.append("long layer 2")
        make_way()
        events.append("long layer 3")
    thread.join(5)
    assert events == ["long layer 1", "long layer 2", "live", "long layer 3"]


def test_a_live_pass_never_makes_way_and_a_lower_lane_makes_way_only_upward():
    gate = LaneGate()
    with gate.turn(LIVE) as held:
        assert held.make_way is None  # nothing is above it: it runs whole
    with gate.turn(LONG) as held:
        make_way = held.make_way
        thread, went = start_queued_pass(gate)
        wait_for(lambda: gate._waiting[QUEUED] == 1)
        make_way()  # only a lower lane waits
        assert not went.is_set(), "a long pass made way for a queued one"
    assert went.wait(5)
    thread.join(5)


def test_a_lane_owed_its_share_keeps_the_model_when_asked_to_make_way():
    clock = FakeClock()
    gate = LaneGate(long_share=0.25, horizon_s=1e9, clock=clock)
    with gate.turn(LIVE):
        clock.now += 10.0  # the long lane has had none of the model: it is owed
    live_went = threading.Event()

    def live_pass():
        with gate.turn(LIVE):
            live_went.set()

    with gate.turn(LONG) as held:
        make_way = held.make_way
        thread = threading.Thread(target=live_pass)
        thread.start()
        wait_for(lambda: gate._waiting[LIVE] == 1)
        make_way()
        assert not live_went.is_set(), "a lane owed its share gave the model away"
    assert live_went.wait(5)
    thread.join(5)


def test_a_pass_that_made_way_is_charged_only_its_own_model_time():
    clock = FakeClock()
    gate = LaneGate(horizon_s=1e9, clock=clock)

    def live_pass():
        with gate.turn(LIVE):
            clock.now += 1.0

    with gate.turn(LONG) as held:
        make_way = held.make_way
        clock.now += 2.0
        thread = threading.Thread(target=live_pass)
        thread.start()
        wait_for(lambda: gate._waiting[LIVE] == 1)
        make_way()
        clock.now += 3.0
    thread.join(5)
    assert gate._model_s[LONG] == pytest.approx(5.0)
    assert gate._model_s[LIVE] == pytest.approx(1.0)
