"""The work queue decides when each namespace is reconciled, and by how many workers at once.

If it hands one namespace to two workers, they race each other's writes; if it drops a key added
while the namespace is being processed, a change goes unanswered until the next resync; if its
backoff does not grow (or never resets), a failing namespace hammers the API server (or a healed
one waits minutes); if an idle worker misses a wake-up, keys sit in the queue for up to an hour.
These tests pin each of those behaviours. Delay arithmetic uses an injected clock; where the queue
really has to wait, the delays are tiny and every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

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


def add_again(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add("alpha")  # a watch event for the namespace


def add_after_that_runs_out(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("alpha", 5.0)  # a prune grace, or the NotLeaderError retry
    clock.now += 5.0  # runs out before the first worker is done


def hold_that_runs_out(queue: WorkQueue, clock: FakeClock) -> None:
    queue.hold("alpha", 5.0)  # a 429 with Retry-After: 5
    clock.now += 5.0  # runs out before the first worker is done


@pytest.mark.parametrize(
    "queue_again",
    [add_again, add_after_that_runs_out, hold_that_runs_out],
    ids=["add", "add_after-runs-out", "hold-runs-out"],
)
async def test_a_key_queued_again_while_processed_reaches_no_second_worker_before_done(
    queue_again: Callable[[WorkQueue, FakeClock], None],
) -> None:
    """Each way a key comes back while a worker is still on it: it must wait for done(), then be
    handed out exactly once. ``add_after`` and ``hold`` are called during a pass; a delay that runs
    out meanwhile must not make the key pending, or two workers write one namespace at once."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("alpha")
    assert (await take(queue))[0] == "alpha"  # the first worker is on alpha from here on
    taken: list[str] = []

    async def second_worker() -> None:
        while True:
            key, _ = await queue.get()
            taken.append(key)
            queue.done(key)

    with anyio.fail_after(PROMPTLY):
        async with anyio.create_task_group() as workers:
            workers.start_soon(second_worker)
            await anyio.wait_all_tasks_blocked()  # it waits for work
            queue_again(queue, clock)
            await anyio.wait_all_tasks_blocked()  # add_after and hold woke it: it has looked again
            assert taken == [], "a second worker got the key the first one is still processing"

            queue.done("alpha")
            await anyio.wait_all_tasks_blocked()
            assert taken == ["alpha"], "after done() the key must be handed out again"

            clock.now += 3600.0  # any delayed copy of the key is due by now...
            queue.add("beta")  # ...and comes out when this wakes the worker
            await anyio.wait_all_tasks_blocked()
            workers.cancel_scope.cancel()

    assert taken == ["alpha", "beta"], "the key must be handed out once more, not twice"
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


async def handed_out_now(queue: WorkQueue) -> str | None:
    """The key ``get`` hands out at this instant, or None if it would wait (it is not let wait:
    ``get`` returns a ready key before its first await, and is cancelled at that await)."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        key, _ = await queue.get()
        return key
    return None


async def test_the_gaps_between_passes_of_a_failing_key_grow_up_to_the_maximum() -> None:
    """Measured where it matters, when get() hands the key out: a fixed retry delay, or one that
    retry() reports but does not hold the key for, must fail this."""
    clock = FakeClock(now=0.0)
    queue = WorkQueue(base_delay=1.0, max_delay=8.0, clock=clock)
    queue.add("alpha")
    passes: list[float] = []
    while len(passes) < 7 and clock.now < 100.0:
        if await handed_out_now(queue) == "alpha":
            passes.append(clock.now)
            queue.done("alpha")
            queue.retry("alpha")  # every pass fails
        clock.now += 0.25

    gaps = [later - earlier for earlier, later in itertools.pairwise(passes)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


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


# -- a key in backoff stays in backoff


async def nothing_ready(queue: WorkQueue) -> bool:
    """True when no key is handed out now (the fake clock does not move while we wait)."""
    with anyio.move_on_after(0.05):
        await queue.get()
        return False
    return True


async def test_an_event_for_a_key_in_backoff_does_not_bring_it_forward() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=8.0, clock=clock)
    queue.add("alpha")
    await take(queue)
    queue.done("alpha")
    assert queue.retry("alpha") == 8.0

    clock.now += 1.0
    queue.add("alpha")  # e.g. the copy changed again

    assert await nothing_ready(queue), "the event cut the backoff short"
    clock.now += 7.0
    assert (await take(queue))[0] == "alpha"
    queue.done("alpha")
    assert len(queue) == 0, "the absorbed event does not bring the key back a second time"


async def test_a_key_that_became_dirty_while_failing_waits_out_its_backoff() -> None:
    """What a mutating webhook that changes data on every write looks like to the queue: the
    write fails (stored data differs), and the watch event of that very write marks the key
    dirty before the worker is done with it."""
    clock = FakeClock()
    queue = WorkQueue(base_delay=4.0, clock=clock)
    queue.add("alpha")
    await take(queue)

    queue.add("alpha")  # the write's own watch event, while the worker still holds the key
    queue.done("alpha")  # the worker's order: done, then retry
    assert queue.retry("alpha") == 4.0

    assert await nothing_ready(queue), "the dirty re-add bypassed the backoff"
    clock.now += 4.0
    assert (await take(queue))[0] == "alpha"


async def test_retry_before_done_also_keeps_a_dirty_key_in_backoff() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=4.0, clock=clock)
    queue.add("alpha")
    await take(queue)
    queue.add("alpha")

    queue.retry("alpha")
    queue.done("alpha")

    assert await nothing_ready(queue)
    clock.now += 4.0
    assert (await take(queue))[0] == "alpha"


async def test_a_shorter_delayed_add_does_not_cut_a_backoff_short() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=10.0, clock=clock)
    queue.retry("alpha")

    queue.add_after("alpha", 0.005)

    clock.now += 1.0
    assert await nothing_ready(queue)
    clock.now += 9.0
    assert (await take(queue))[0] == "alpha"


async def test_a_success_ends_the_backoff() -> None:
    """forget() while the backoff still runs: it must end it and reset its growth. (Forgetting
    once the backoff has run out anyway would prove neither.)"""
    clock = FakeClock()
    queue = WorkQueue(base_delay=10.0, max_delay=1000.0, clock=clock)
    for _ in range(3):
        queue.retry("alpha")  # 10, 20, 40 s: alpha is held for 40 s from now
    clock.now += 1.0
    assert queue.in_backoff("alpha")

    queue.forget("alpha")  # a success, 39 s before the backoff could have run out

    assert not queue.in_backoff("alpha")
    queue.add("alpha")
    assert (await take(queue))[0] == "alpha", "after a success, events are answered at once again"
    queue.done("alpha")
    assert queue.retry("alpha") == 10.0, "the next failure must start from the base delay"
    clock.now += 9.99
    assert await nothing_ready(queue), "the next failure must be held for the base delay"
    clock.now += 0.01
    assert (await take(queue))[0] == "alpha", "...and for no longer"


async def test_events_during_a_successful_pass_are_answered_at_once() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=10.0, clock=clock)
    queue.retry("alpha")
    clock.now += 10.0
    await take(queue)  # the retry pass, which will succeed
    queue.add("alpha")  # an event meanwhile

    queue.done("alpha")
    queue.forget("alpha")

    assert (await take(queue))[0] == "alpha"


async def test_an_absorbed_event_keeps_the_earliest_observation_time() -> None:
    clock = FakeClock(now=100.0)
    queue = WorkQueue(base_delay=10.0, clock=clock)
    queue.retry("alpha")
    clock.now = 103.0
    queue.add("alpha")
    clock.now = 105.0
    queue.add("alpha")

    clock.now = 110.0
    assert await take(queue) == ("alpha", 103.0)


async def test_hold_keeps_a_key_out_without_counting_a_failure() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=1.0, clock=clock)
    queue.add("alpha")
    await take(queue)

    queue.hold("alpha", 5.0)  # a 429 with Retry-After: 5
    queue.add("alpha")
    queue.done("alpha")

    assert queue.failures("alpha") == 0
    clock.now += 4.0
    assert await nothing_ready(queue)
    clock.now += 1.0
    assert (await take(queue))[0] == "alpha"


def test_a_hold_never_shortens_a_longer_backoff() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=60.0, clock=clock)
    queue.retry("alpha")

    queue.hold("alpha", 1.0)

    clock.now += 59.0
    assert queue.in_backoff("alpha")


async def test_a_webhook_that_changes_every_write_gets_the_namespace_retried_with_growing_delays() -> None:
    """Simulates one minute of the fight with a fake clock: each pass fails and its own write
    event arrives while the key is held. Passes must follow the backoff (0.2, 0.4, 0.8, ... s),
    not the event rate."""
    clock = FakeClock(now=0.0)
    queue = WorkQueue(base_delay=0.2, max_delay=120.0, clock=clock)
    queue.add("alpha")
    passes = 0
    while clock.now < 60.0:
        queue._promote_due()  # what get() does first; looked at without waiting
        if queue._pending:
            await take(queue)
            passes += 1
            queue.add("alpha")  # the watch event of the write this pass made
            queue.done("alpha")
            queue.retry("alpha")
        clock.now += 0.01  # a pass, or a wait, takes 10 ms
    # Backoff alone: passes at 0, 0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4, 51.0 s: 9 in a minute.
    assert passes <= 10, f"{passes} passes in a minute"


# -- delayed keys, kept in a heap


async def test_delayed_keys_come_out_in_order_of_due_time() -> None:
    clock = FakeClock(now=0.0)
    queue = WorkQueue(clock=clock)
    delays = {f"ns-{i}": float((i * 7919) % 97) + i / 1000 for i in range(200)}
    for key, delay in delays.items():
        queue.add_after(key, delay)

    clock.now = 1000.0
    taken = [(await take(queue))[0] for _ in delays]

    assert taken == sorted(delays, key=delays.__getitem__)
    assert len(queue) == 0


async def test_only_due_keys_come_out_and_the_rest_wait() -> None:
    clock = FakeClock(now=0.0)
    queue = WorkQueue(clock=clock)
    queue.add_after("late", 30.0)
    queue.add_after("soon", 10.0)
    queue.add_after("middle", 20.0)

    clock.now = 20.0
    assert [(await take(queue))[0] for _ in range(2)] == ["soon", "middle"]
    assert await nothing_ready(queue)
    assert len(queue) == 1


async def test_a_key_rescheduled_many_times_comes_out_once_at_its_last_due_time() -> None:
    clock = FakeClock(now=0.0)
    queue = WorkQueue(base_delay=1.0, clock=clock)
    for _ in range(5):
        queue.retry("alpha")  # 1, 2, 4, 8, 16 s: each pushes the due time back

    clock.now = 15.0
    assert await nothing_ready(queue)
    clock.now = 16.0
    assert (await take(queue))[0] == "alpha"
    queue.done("alpha")
    clock.now = 1000.0
    assert await nothing_ready(queue), "stale heap entries must not hand the key out again"


def test_stale_heap_entries_do_not_pile_up() -> None:
    clock = FakeClock(now=0.0)
    queue = WorkQueue(base_delay=1.0, max_delay=1e9, clock=clock)
    for _ in range(10_000):
        queue.retry("alpha")
        queue.add_after("beta", 5.0)
        queue.add("beta")  # cancels beta's delayed add...
        queue._pending.pop("beta")  # ...and is taken at once

    assert len(queue._heap) <= 2 * len(queue._delayed) + 65


async def test_a_huge_or_infinite_server_delay_parks_a_key_for_max_delay_at_most() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, max_delay=120.0)
    for asked in (float("inf"), 86_400.0):
        queue.add("alpha")
        key, _ = await queue.get()
        queue.hold(key, asked)
        queue.done(key)
        clock.now += 120.0
        with anyio.fail_after(1):
            again, _ = await queue.get()
        assert again == "alpha"
        queue.done(again)
