"""The batch queue: a batch is taken when a slot is free, with everything that waited meanwhile."""

import asyncio

import pytest

from deployments.core.batch_queue import BatchQueue, take_batch


@pytest.mark.parametrize("sizes", [[], [1], [1] * 40, [5, 5, 5], [40], [3, 40, 1], [1, 2, 3, 4, 5, 6, 7, 8]])
@pytest.mark.parametrize("max_size", [1, 4, 16, 32])
def test_take_batch_is_the_longest_prefix_that_fits(sizes, max_size):
    count = take_batch(sizes, max_size)
    assert count == len(sizes) or count >= 1
    if not sizes:
        assert count == 0
        return
    # The first item always goes; the batch is within the limit unless that item alone is over it.
    assert count >= 1
    assert sum(sizes[:count]) <= max_size or count == 1
    # One more would not have fit.
    if count < len(sizes):
        assert sum(sizes[:count + 1]) > max_size


class Recorder:
    """A handler that records each batch and holds it until released."""

    def __init__(self):
        self.batches: list[list] = []
        self.release = asyncio.Event()

    async def __call__(self, items):
        self.batches.append(list(items))
        await self.release.wait()
        return [item * 10 for item in items]


def test_what_arrives_while_a_batch_runs_goes_together_in_the_next():
    async def scenario():
        handler = Recorder()
        queue = BatchQueue(handler, max_size=32, wait_s=0.0)
        first = asyncio.create_task(queue(1))
        await asyncio.sleep(0.01)  # the first batch is running, held by the handler
        later = [asyncio.create_task(queue(n)) for n in range(2, 12)]
        for _ in range(10):
            await asyncio.sleep(0.005)  # arrivals spread over time, as under load
        assert handler.batches == [[1]]
        handler.release.set()
        results = await asyncio.gather(first, *later)
        return handler.batches, results

    batches, results = asyncio.run(scenario())
    assert batches == [[1], list(range(2, 12))]
    assert results == [n * 10 for n in range(1, 12)]


def test_an_idle_queue_waits_for_company_in_a_burst_then_goes():
    async def scenario():
        handler = Recorder()
        handler.release.set()
        queue = BatchQueue(handler, max_size=32, wait_s=0.2)  # long beside the 10 ms gaps, so a slow host holds too
        first = asyncio.create_task(queue(1))  # after a quiet spell: it goes at once
        await asyncio.sleep(0.01)
        second = asyncio.create_task(queue(2))  # 10 ms after the first: a burst, so it waits for company
        await asyncio.sleep(0.01)
        third = asyncio.create_task(queue(3))
        await asyncio.gather(first, second, third)
        return handler.batches

    assert asyncio.run(scenario()) == [[1], [2, 3]]


def test_the_first_arrival_after_a_quiet_spell_does_not_wait_for_company():
    async def scenario():
        handler = Recorder()
        handler.release.set()
        queue = BatchQueue(handler, max_size=32, wait_s=0.5)
        await queue(1)
        await asyncio.sleep(0.6)  # longer than wait_s: the next arrival is alone
        second = asyncio.create_task(queue(2))
        await asyncio.sleep(0.01)  # had the second waited for company, the third would have joined it
        third = asyncio.create_task(queue(3))
        await asyncio.gather(second, third)
        return handler.batches

    assert asyncio.run(scenario()) == [[1], [2], [3]]


def test_batches_respect_max_size_by_item_size_and_an_oversized_item_goes_alone():
    async def scenario():
        seen = []

        async def handler(items):
            seen.append([len(i) for i in items])
            return [len(i) for i in items]

        queue = BatchQueue(handler, max_size=4, wait_s=0.02, size_fn=len)
        results = await asyncio.gather(*(queue("x" * n) for n in (1, 2, 1, 6, 3, 1)))
        return seen, results

    seen, results = asyncio.run(scenario())
    assert results == [1, 2, 1, 6, 3, 1]
    assert seen == [[1, 2, 1], [6], [3, 1]]


def test_slots_bound_the_batches_running_at_once():
    async def scenario():
        running, most = 0, 0

        async def handler(items):
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.02)
            running -= 1
            return items

        queue = BatchQueue(handler, max_size=1, wait_s=0.0, max_in_flight=3)
        results = await asyncio.gather(*(queue(n) for n in range(12)))
        return most, results

    most, results = asyncio.run(scenario())
    assert most == 3
    assert results == list(range(12))


def test_a_failing_batch_fails_its_own_callers_only():
    async def scenario():
        async def handler(items):
            if 0 in items:
                raise ValueError("bad batch")
            return items

        queue = BatchQueue(handler, max_size=1, wait_s=0.0)
        return await asyncio.gather(queue(0), queue(1), return_exceptions=True)

    failed, answered = asyncio.run(scenario())
    assert isinstance(failed, ValueError) and answered == 1


def test_a_handler_answering_the_wrong_number_of_results_is_an_error_to_each_caller():
    async def scenario():
        async def handler(items):
            return items[:-1]

        queue = BatchQueue(handler, max_size=8, wait_s=0.01)
        return await asyncio.gather(queue(1), queue(2), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(scenario()))


def test_a_caller_cancelled_before_its_batch_is_left_out():
    async def scenario():
        handler = Recorder()
        queue = BatchQueue(handler, max_size=32, wait_s=0.0)
        first = asyncio.create_task(queue(1))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(queue(2))
        stays = asyncio.create_task(queue(3))
        await asyncio.sleep(0.01)
        gone.cancel()
        handler.release.set()
        await asyncio.gather(first, stays)
        return handler.batches, gone.cancelled()

    batches, cancelled = asyncio.run(scenario())
    assert cancelled and batches == [[1], [3]]


def test_settings_change_between_batches():
    async def scenario():
        handler = Recorder()
        handler.release.set()
        queue = BatchQueue(handler, max_size=2, wait_s=0.02)
        await asyncio.gather(*(queue(n) for n in range(4)))
        queue.max_size = 4
        await asyncio.gather(*(queue(n) for n in range(4)))
        return handler.batches

    assert asyncio.run(scenario()) == [[0, 1], [2, 3], [0, 1, 2, 3]]


def test_impossible_settings_are_refused():
    for kwargs in ({"max_size": 0, "wait_s": 0}, {"max_size": 1, "wait_s": -1}, {"max_size": 1, "wait_s": 0,
                                                                                 "max_in_flight": 0}):
        with pytest.raises(ValueError):
            BatchQueue(lambda items: items, **kwargs)
