"""The work queue decides when each namespace is reconciled, and by how many workers at once.

If it hands one namespace to two workers, they race each other's writes; if it drops a key added
while the namespace is being processed, a change goes unanswered until the next resync; if its
backoff does not grow (or never resets), a failing namespace hammers the API server (or a healed
one waits minutes); if an idle worker misses a wake-up, keys sit in the queue for up to an hour.
These tests pin each of those behaviours. Delay arithmetic uses an injected clock; where the queue
really has to wait, the delays are tiny and every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import anyio
import pytest

from secrets_operator.queue import WorkQueue

#: Generous bound for anything that should happen "at once"; never an expected duration.
PROMPTLY = 5.0


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def take(queue: WorkQueue) -> tuple[str, float]:
    """The next key, failing the test instead of hanging if none comes."""
    with anyio.fail_after(PROMPTLY):
        return await queue.get()


# -- de-duplication and ordering


async def test_a_key_added_many_times_while_pending_is_handed_out_once() -> None:
    queue = WorkQueue()
    for key in ("alpha", "beta", "alpha", "alpha", "beta"):
        queue.add(key)
    assert len(queue) == 2

    queue.add("gamma")
    taken = [(await take(queue))[0] for _ in range(3)]

    assert taken == ["alpha", "beta", "gamma"], "no duplicates, in order of first add"
    assert len(queue) == 0


# -- at most one worker per key


async def test_a_key_being_processed_is_not_handed_to_a_second_worker() -> None:
    queue = WorkQueue()
    queue.add("alpha")
    first, _ = await take(queue)
    assert first == "alpha"

    queue.add("alpha")  # a new event for the namespace while a worker is on it
    queue.add("beta")
    second, _ = await take(queue)

    assert second == "beta", "the in-flight key must not be handed out again before done()"
    assert len(queue) == 0


async def test_key_added_while_processing_is_processed_again_exactly_once_after_done() -> None:
    queue = WorkQueue()
    queue.add("alpha")
    await take(queue)
    for _ in range(3):
        queue.add("alpha")

    queue.done("alpha")
    queue.add("beta")

    assert [(await take(queue))[0] for _ in range(2)] == ["alpha", "beta"]
    assert len(queue) == 0, "three adds during processing collapse into one more pass"


async def test_a_key_not_added_again_while_processing_does_not_come_back_after_done() -> None:
    queue = WorkQueue()
    queue.add("alpha")
    await take(queue)

    queue.done("alpha")

    assert len(queue) == 0
    queue.add("beta")
    assert (await take(queue))[0] == "beta"


async def test_concurrent_workers_never_process_one_key_at_the_same_time() -> None:
    queue = WorkQueue()
    gate = anyio.Event()
    in_flight: list[str] = []
    overlaps: list[str] = []
    processed: list[str] = []

    async def worker() -> None:
        while True:
            key, _ = await queue.get()
            if key in in_flight:
                overlaps.append(key)
            in_flight.append(key)
            processed.append(key)
            await gate.wait()
            in_flight.remove(key)
            queue.done(key)

    with anyio.fail_after(PROMPTLY):
        async with anyio.create_task_group() as workers:
            for _ in range(3):
                workers.start_soon(worker)
            queue.add("alpha")
            await anyio.wait_all_tasks_blocked()
            for _ in range(3):
                queue.add("alpha")
            await anyio.wait_all_tasks_blocked()
            assert processed == ["alpha"], "idle workers must not pick up the in-flight key"

            gate.set()
            await anyio.wait_all_tasks_blocked()
            workers.cancel_scope.cancel()

    assert processed == ["alpha", "alpha"]
    assert overlaps == []
    assert len(queue) == 0


# -- retry backoff


def test_retry_delays_double_per_failure_up_to_the_maximum() -> None:
    queue = WorkQueue(base_delay=1.0, max_delay=10.0, clock=FakeClock())

    delays = [queue.retry("alpha") for _ in range(6)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert queue.failures("alpha") == 6


def test_retry_backoff_is_counted_per_key() -> None:
    queue = WorkQueue(base_delay=1.0, max_delay=100.0, clock=FakeClock())
    for _ in range(4):
        queue.retry("alpha")

    assert queue.retry("beta") == 1.0, "another key's failures must not slow this one down"
    assert queue.retry("alpha") == 16.0


def test_forget_resets_the_backoff_after_a_success() -> None:
    queue = WorkQueue(base_delay=1.0, max_delay=100.0, clock=FakeClock())
    for _ in range(5):
        queue.retry("alpha")
    queue.retry("beta")

    queue.forget("alpha")

    assert queue.failures("alpha") == 0
    assert queue.retry("alpha") == 1.0
    assert queue.retry("beta") == 2.0, "forgetting one key leaves the others' backoff alone"


def test_a_key_that_keeps_failing_stays_at_the_maximum_delay_forever() -> None:
    queue = WorkQueue(base_delay=0.2, max_delay=120.0, clock=FakeClock())

    delays = [queue.retry("alpha") for _ in range(1100)]

    assert delays[-1] == 120.0
    assert max(delays) == 120.0


async def test_a_retried_key_is_not_handed_out_before_its_delay_has_passed() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=5.0, clock=clock)
    queue.add("alpha")
    await take(queue)
    assert queue.retry("alpha") == 5.0
    queue.done("alpha")

    queue.add("beta")
    assert (await take(queue))[0] == "beta", "alpha is still backing off"

    clock.now += 5.0
    assert (await take(queue))[0] == "alpha"


async def test_a_retried_key_comes_back_by_itself_once_its_delay_has_passed() -> None:
    queue = WorkQueue(base_delay=0.01)
    queue.add("alpha")
    await take(queue)

    queue.retry("alpha")
    queue.done("alpha")

    assert (await take(queue))[0] == "alpha"


# -- delayed adds


async def test_add_after_wakes_a_worker_that_is_already_waiting() -> None:
    queue = WorkQueue()
    taken: list[str] = []

    async def worker() -> None:
        key, _ = await queue.get()
        taken.append(key)

    with anyio.fail_after(PROMPTLY):
        async with anyio.create_task_group() as workers:
            workers.start_soon(worker)
            await anyio.wait_all_tasks_blocked()  # the worker now waits with no deadline in sight
            queue.add_after("alpha", 0.01)

    assert taken == ["alpha"]


async def test_a_plain_add_wins_over_a_pending_delayed_add() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("alpha", 100.0)

    queue.add("alpha")
    assert (await take(queue))[0] == "alpha", "the plain add delivers at once"
    queue.done("alpha")

    clock.now += 100.0
    assert len(queue) == 0, "the delayed add was absorbed, so the key does not come back later"
    queue.add("beta")
    assert (await take(queue))[0] == "beta"


async def test_add_after_does_not_delay_a_key_that_is_already_pending() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("alpha")

    queue.add_after("alpha", 100.0)

    assert (await take(queue))[0] == "alpha"
    queue.done("alpha")
    clock.now += 100.0
    assert len(queue) == 0


async def test_the_earlier_of_two_delayed_adds_wins() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("alpha", 10.0)
    queue.add_after("alpha", 3.0)
    queue.add_after("alpha", 20.0)

    clock.now += 3.0

    assert (await take(queue))[0] == "alpha"
    assert len(queue) == 0


# -- the "since" timestamp


async def test_since_is_the_time_of_the_first_add_of_a_pending_key() -> None:
    clock = FakeClock(now=10.0)
    queue = WorkQueue(clock=clock)
    queue.add("alpha")
    clock.now = 11.0
    queue.add("alpha")
    clock.now = 12.0

    assert await take(queue) == ("alpha", 10.0)


async def test_since_of_a_key_added_while_processing_is_its_first_add_during_processing() -> None:
    clock = FakeClock(now=10.0)
    queue = WorkQueue(clock=clock)
    queue.add("alpha")
    await take(queue)
    clock.now = 13.0
    queue.add("alpha")
    clock.now = 14.0
    queue.add("alpha")

    clock.now = 15.0
    queue.done("alpha")

    assert await take(queue) == ("alpha", 13.0)


async def test_an_explicit_since_is_kept() -> None:
    clock = FakeClock(now=50.0)
    queue = WorkQueue(clock=clock)

    queue.add("alpha", since=42.0)

    assert await take(queue) == ("alpha", 42.0)


# -- waking idle workers


@pytest.mark.parametrize("let_workers_run_between_adds", [True, False])
async def test_every_waiting_worker_is_woken_when_keys_arrive_one_after_another(
    let_workers_run_between_adds: bool,
) -> None:
    """Regression: a worker that missed a wake-up would sleep until its 3600 s timeout."""
    queue = WorkQueue()
    keys = ["ns-1", "ns-2", "ns-3", "ns-4"]
    taken: list[str] = []

    async def worker() -> None:
        key, _ = await queue.get()  # holds its key (no done), so each worker takes exactly one
        taken.append(key)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as workers:
            for _ in keys:
                workers.start_soon(worker)
            await anyio.wait_all_tasks_blocked()
            for key in keys:
                queue.add(key)
                if let_workers_run_between_adds:
                    await anyio.wait_all_tasks_blocked()

    assert sorted(taken) == keys


async def test_a_delayed_change_reports_when_it_was_observed() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    clock.now = 10.0
    queue.add_after("ns", 0.005, since=9.5)
    clock.now = 10.01
    key, since = await queue.get()
    assert (key, since) == ("ns", 9.5)


async def test_a_plain_add_during_a_delay_keeps_the_earliest_observation() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    clock.now = 20.0
    queue.add_after("ns", 5.0, since=19.0)
    queue.add("ns")  # a second event arrives before the delay is over: no waiting any more
    key, since = await queue.get()
    assert (key, since) == ("ns", 19.0)
