"""The Lease state machine decides whether this replica may write; a mistake means two writers.

Leader election hinges on a few pure rules, tested here without a cluster and with a clock the
test moves: when another replica's claim counts as live (timed locally from when the record was
last seen *changing*, never from remote timestamps), what record we write to take, keep or give
up the Lease (acquireTime and leaseTransitions, as ``kubectl describe lease`` shows them), how
MicroTime is written and read, the Kubernetes field names, and the timing rule the elector refuses
to start without. The renew loop itself runs on an event loop whose clock jumps from timer to timer,
so when a leader that cannot renew stops its work is checked to the instant: at RenewDeadline after
its last successful renewal, not at LeaseDuration, when another replica may already have taken over.
The fake Lease API answers writes as the API server does (409 for a write based on another
version): two candidates racing for an expired Lease must leave exactly one leader.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import itertools
import math
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import anyio
import pytest

from secrets_operator import metrics
from secrets_operator.kube.client import ApiError
from secrets_operator.kube.leases import (
    LeaderElector,
    LeaseObservation,
    LeaseRecord,
    format_microtime,
    parse_microtime,
    released,
)
from secrets_operator.writing import NotLeaderError, leadership_guard
from tests.support import precondition_failed

ME = "replica-a"
OTHER = "replica-b"
T0 = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=30)


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def held(
    holder: str = OTHER,
    *,
    duration: int = 15,
    renew_time: str = "2024-05-06T07:08:09.000000Z",
    transitions: int = 3,
    resource_version: str = "100",
) -> LeaseRecord:
    return LeaseRecord(
        holder=holder,
        duration_seconds=duration,
        acquire_time="2024-05-06T07:00:00.000000Z",
        renew_time=renew_time,
        transitions=transitions,
        resource_version=resource_version,
    )


# -- who holds the Lease


def test_another_replicas_lease_is_held_until_its_duration_has_passed_since_we_saw_it() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)
    observation.observe(held(duration=15))

    clock.now += 14.9
    assert observation.held_by_other(ME)

    clock.now += 0.1
    assert not observation.held_by_other(ME), "expired at exactly observed_at + duration"


def test_re_observing_the_same_content_with_a_new_resource_version_does_not_extend_the_claim() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)
    observation.observe(held(resource_version="100"))

    clock.now += 10
    observation.observe(held(resource_version="101"))  # e.g. a relist, or someone touched a label
    clock.now += 5

    assert not observation.held_by_other(ME)
    assert observation.expires_in() == 0.0


def test_a_renewal_by_the_holder_extends_its_claim_from_when_we_saw_it() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)
    observation.observe(held(renew_time="2024-05-06T07:08:09.000000Z", resource_version="100"))

    clock.now += 10
    observation.observe(held(renew_time="2024-05-06T07:08:19.000000Z", resource_version="101"))
    clock.now += 14

    assert observation.held_by_other(ME)
    assert observation.expires_in() == pytest.approx(1.0)
    clock.now += 1
    assert not observation.held_by_other(ME)


def test_remote_timestamps_are_not_trusted_for_expiry() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)

    observation.observe(held(renew_time="1999-01-01T00:00:00.000000Z"))

    assert observation.held_by_other(ME), "a renewTime far in the past (clock skew) must not count"


def test_a_lease_with_an_empty_holder_is_never_held() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)

    observation.observe(held(holder="", duration=3600))

    assert not observation.held_by_other(ME)
    assert observation.expires_in() == 0.0


def test_our_own_lease_is_never_held_by_another() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)

    observation.observe(held(holder=ME, duration=3600))

    assert not observation.held_by_other(ME)
    assert observation.held_by_other(OTHER), "the same record does lock out every other replica"


def test_nothing_is_held_when_there_is_no_lease() -> None:
    observation = LeaseObservation(FakeClock())
    assert not observation.held_by_other(ME)
    assert observation.expires_in() == 0.0

    observation.observe(held())
    observation.observe(None)  # the Lease was deleted

    assert not observation.held_by_other(ME)
    assert observation.expires_in() == 0.0


def test_expires_in_counts_down_to_zero_and_stays_there() -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)
    observation.observe(held(duration=15))

    assert observation.expires_in() == pytest.approx(15.0)
    clock.now += 6
    assert observation.expires_in() == pytest.approx(9.0)
    clock.now += 100
    assert observation.expires_in() == 0.0


# -- the records we write


def test_renewing_our_own_lease_keeps_acquire_time_and_transitions() -> None:
    observation = LeaseObservation(FakeClock())
    mine = held(holder=ME, duration=15, transitions=4, resource_version="7")
    observation.observe(mine)

    renewed = observation.claim(ME, 20, T1)

    assert renewed.holder == ME
    assert renewed.acquire_time == mine.acquire_time
    assert renewed.transitions == 4
    assert renewed.renew_time == format_microtime(T1)
    assert renewed.duration_seconds == 20
    assert renewed.resource_version == "7", "the update must carry the version it was based on"


@pytest.mark.parametrize("previous_holder", [OTHER, ""], ids=["from-another", "from-released"])
def test_taking_over_a_lease_sets_a_new_acquire_time_and_counts_a_transition(previous_holder: str) -> None:
    clock = FakeClock()
    observation = LeaseObservation(clock)
    observation.observe(held(holder=previous_holder, transitions=4, resource_version="7"))
    clock.now += 60

    taken = observation.claim(ME, 15, T1)

    assert taken.holder == ME
    assert taken.acquire_time == format_microtime(T1)
    assert taken.renew_time == format_microtime(T1)
    assert taken.transitions == 5
    assert taken.duration_seconds == 15
    assert taken.resource_version == "7"


def test_creating_the_first_lease_starts_transitions_at_zero() -> None:
    observation = LeaseObservation(FakeClock())

    created = observation.claim(ME, 15, T0)

    assert created == LeaseRecord(
        holder=ME,
        duration_seconds=15,
        acquire_time=format_microtime(T0),
        renew_time=format_microtime(T0),
        transitions=0,
        resource_version="",
    )


def test_release_empties_the_holder_with_a_one_second_duration_and_keeps_transitions() -> None:
    given_up = released(held(holder=ME, duration=15, transitions=4, resource_version="9"), T1)

    assert given_up.holder == ""
    assert given_up.duration_seconds == 1
    assert given_up.transitions == 4
    assert given_up.renew_time == format_microtime(T1)
    assert given_up.resource_version == "9"


# -- MicroTime


def test_microtime_has_exactly_six_fractional_digits_and_a_z() -> None:
    assert format_microtime(T0) == "2024-05-06T07:08:09.123456Z"
    assert format_microtime(T0.replace(microsecond=0)) == "2024-05-06T07:08:09.000000Z"
    assert format_microtime(T0.replace(microsecond=5)) == "2024-05-06T07:08:09.000005Z"


def test_microtime_is_written_in_utc_whatever_the_datetimes_zone() -> None:
    berlin_summer = datetime.timezone(datetime.timedelta(hours=2))
    local = datetime.datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=berlin_summer)

    assert format_microtime(local) == "2024-05-06T07:08:09.123456Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-06T07:08:09.123456Z", T0),
        ("2024-05-06T07:08:09Z", T0.replace(microsecond=0)),
        ("2024-05-06T07:08:09.5Z", T0.replace(microsecond=500000)),
        ("2024-05-06T09:08:09.123456+02:00", T0),
    ],
)
def test_parse_microtime_accepts_microtime_and_time(text: str, expected: datetime.datetime) -> None:
    parsed = parse_microtime(text)

    assert parsed.tzinfo is not None, "a naive result could not be compared with aware datetimes"
    assert parsed == expected


@pytest.mark.parametrize("moment", [T0, T0.replace(microsecond=0), T0.replace(microsecond=1)])
def test_microtime_round_trips(moment: datetime.datetime) -> None:
    assert parse_microtime(format_microtime(moment)) == moment


# -- the API object


def test_lease_record_reads_and_writes_the_kubernetes_field_names() -> None:
    obj = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "secrets-operator", "namespace": "ops", "resourceVersion": "4711"},
        "spec": {
            "holderIdentity": OTHER,
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-05-06T07:00:00.000000Z",
            "renewTime": "2024-05-06T07:08:09.123456Z",
            "leaseTransitions": 3,
        },
    }

    record = LeaseRecord.from_json(obj)

    assert record == LeaseRecord(
        holder=OTHER,
        duration_seconds=15,
        acquire_time="2024-05-06T07:00:00.000000Z",
        renew_time="2024-05-06T07:08:09.123456Z",
        transitions=3,
        resource_version="4711",
    )
    assert record.spec() == obj["spec"]


@pytest.mark.parametrize(
    "record",
    [
        held(),
        LeaseRecord(holder="", duration_seconds=1, transitions=2, resource_version="5"),
    ],
    ids=["held", "released-without-times"],
)
def test_lease_record_round_trips_through_json(record: LeaseRecord) -> None:
    obj = {"metadata": {"resourceVersion": record.resource_version}, "spec": record.spec()}

    assert LeaseRecord.from_json(obj) == record


def test_a_lease_with_an_empty_spec_reads_as_unheld() -> None:
    record = LeaseRecord.from_json({"metadata": {"name": "secrets-operator"}, "spec": {}})

    assert record == LeaseRecord(holder="", duration_seconds=0)
    assert record.spec()["acquireTime"] is None, "an unset MicroTime is null, never an empty string"


# -- the elector's timing rule


def elector(
    lease_duration: float = 15,
    renew_deadline: float = 10,
    retry_period: float = 2,
    *,
    kube: object = None,  # construction does no I/O
    identity: str = ME,
    clock: Callable[[], float] | None = None,
) -> LeaderElector:
    """An elector for the Lease ops/secrets-operator; by default the chart's timings and a FakeClock."""
    return LeaderElector(
        kube,  # type: ignore[arg-type]
        namespace="ops",
        name="secrets-operator",
        identity=identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        clock=clock or FakeClock(),
    )


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "retry_period"),
    [
        (10, 10, 2),  # the deadline must be strictly shorter than the lease
        (8, 10, 2),
        (15, 10, 10),
        (15, 2.4, 2),  # exactly 1.2 x retry is not enough
    ],
)
def test_the_elector_refuses_timings_that_could_allow_two_leaders(
    lease_duration: float, renew_deadline: float, retry_period: float
) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        elector(lease_duration, renew_deadline, retry_period)


def test_the_elector_accepts_the_default_timings_and_may_not_write_before_acquiring() -> None:
    candidate = elector(15, 10, 2)

    assert not candidate.may_write()
    assert not candidate.leading


def test_a_lagging_watch_cannot_move_the_view_backwards() -> None:
    """A fresh GET, then an older event from a lagging watch: the expiry clock must not restart."""
    clock = _ForwardClock()
    observation = LeaseObservation(clock)
    fresh = LeaseRecord("a", 15, "t0", "t9", 1, resource_version="900")
    clock.now = 100.0
    observation.observe(fresh)
    stale = LeaseRecord("a", 15, "t0", "t5", 1, resource_version="850")
    clock.now = 110.0
    observation.observe(stale)
    assert observation.record == fresh
    clock.now = 115.5  # 15 s after the fresh version was first seen
    assert not observation.held_by_other("b")


def test_opaque_resource_versions_are_taken_as_they_come() -> None:
    observation = LeaseObservation(_ForwardClock())
    observation.observe(LeaseRecord("a", 15, resource_version="v2"))
    observation.observe(LeaseRecord("b", 15, resource_version="v1"))
    assert observation.record is not None
    assert observation.record.holder == "b"


class _ForwardClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _RecordingKube:
    """Stands in for the client where no request may be made; remembers any that is."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def request(self, method: str, path: str, **_: object) -> dict[str, object]:
        self.requests.append(f"{method} {path}")
        raise AssertionError("no request expected")


@pytest.mark.parametrize("observed", [None, held(holder=OTHER)], ids=["no-lease", "held-by-another"])
async def test_there_is_nothing_to_release_without_a_lease_of_our_own(observed: LeaseRecord | None) -> None:
    kube = _RecordingKube()
    candidate = elector(kube=kube)
    candidate.observation.observe(observed)

    assert await candidate._release() is False
    assert kube.requests == []  # never a write to a Lease that is not ours


# -- may_write() and write_budget(): the deadline a leader stops writing at


class _LeaseApi:
    """An API server holding one Lease (absent at first), with the API server's optimistic
    concurrency: a write based on another version than the stored one gets 409 Conflict
    (``precondition_failed``), a second create 409 AlreadyExists. Every write takes ``took``
    seconds on ``clock``; ``writes`` logs each one: its method, the holder it wrote, its status."""

    def __init__(self, clock: FakeClock | None = None, *, took: float = 0.0) -> None:
        self.clock, self.took = clock, took
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail_with: int | None = None
        self.writes: list[tuple[str, str, int]] = []

    async def request(self, method: str, path: str, *, body: Any = None, **_: object) -> dict[str, Any]:
        if method != "GET" and self.clock is not None:
            self.clock.now += self.took
        if self.fail_with is not None:
            raise ApiError(method=method, path=path, status=self.fail_with, reason="InternalError")
        if method == "GET":
            if self.lease is None:
                raise ApiError(method=method, path=path, status=404, reason="NotFound")
            return copy.deepcopy(self.lease)
        holder = ((body or {}).get("spec") or {}).get("holderIdentity") or ""
        try:
            self.lease = self._write(method, path, body)
        except ApiError as exc:
            self.writes.append((method, holder, exc.status))
            raise
        self.writes.append((method, holder, 200))
        return (
            copy.deepcopy(self.lease) if self.lease is not None else {"kind": "Status", "status": "Success"}
        )

    def _write(self, method: str, path: str, body: Any) -> dict[str, Any] | None:
        if method == "POST":
            if self.lease is not None:
                raise ApiError(method=method, path=path, status=409, reason="AlreadyExists")
            stored = {**body, "metadata": dict(body["metadata"])}
        else:
            if self.lease is None:
                raise ApiError(method=method, path=path, status=404, reason="NotFound")
            refused = precondition_failed(method, path, self.lease, body)
            if refused is not None:
                raise refused
            if method == "DELETE":
                return None
            stored = copy.deepcopy(self.lease)
            if method == "PUT":
                stored["spec"] = dict(body["spec"])
            else:  # a merge patch of the spec
                merged = {**stored.get("spec", {}), **body.get("spec", {})}
                stored["spec"] = {key: value for key, value in merged.items() if value is not None}
        self.version += 1
        stored["metadata"]["resourceVersion"] = str(self.version)
        return stored


def leader_with_clock(took: float = 0.0) -> tuple[LeaderElector, FakeClock, _LeaseApi]:
    clock = FakeClock()
    api = _LeaseApi(clock, took=took)
    candidate = elector(kube=api, clock=clock)
    return candidate, clock, api


async def test_a_leader_may_write_until_the_renew_deadline_counted_from_the_start_of_its_renewal() -> None:
    candidate, clock, _ = leader_with_clock(took=1.0)  # the acquiring write takes 1 s
    started = clock.now
    assert candidate.may_write() is False
    assert candidate.write_budget() is None

    assert await candidate._attempt() == ("acquired", 0.0)
    candidate.leading = True  # what run() does once the Lease is acquired

    assert clock.now == started + 1.0
    assert candidate.may_write() is True
    # A write may last until the renew deadline, 10 s after the renewal request *started*.
    assert candidate.write_budget() == pytest.approx(9.0)
    clock.now = started + 9.999
    assert candidate.may_write() is True
    assert candidate.write_budget() == pytest.approx(0.001)
    clock.now = started + 10.0  # the renew deadline, not 10 s after the answer came
    assert candidate.may_write() is False
    assert candidate.write_budget() is None
    clock.now = started + 14.0  # past the deadline though the Lease has not expired yet
    assert candidate.may_write() is False
    assert candidate.write_budget() is None


async def test_a_write_started_just_before_the_renew_deadline_must_end_by_that_deadline() -> None:
    candidate, clock, _ = leader_with_clock()
    started = clock.now
    assert (await candidate._attempt())[0] == "acquired"
    candidate.leading = True

    # The renewals keep failing; a write starts 1 ms before the renew deadline. The margin
    # LeaseDuration - RenewDeadline exists for clock skew between replicas: a write in flight
    # must not spend it, so it gets at most the 1 ms left, never the 5 s until the Lease expires.
    clock.now = started + 9.999
    budget = candidate.write_budget()
    assert budget is not None
    assert budget == pytest.approx(0.001)
    assert clock.now + budget <= started + candidate.renew_deadline


async def test_a_failed_renewal_does_not_move_the_deadline_and_a_successful_one_does() -> None:
    candidate, clock, api = leader_with_clock()
    started = clock.now
    assert (await candidate._attempt())[0] == "acquired"
    candidate.leading = True

    clock.now = started + 5
    api.fail_with = 500
    assert (await candidate._attempt())[0] == "failed"
    clock.now = started + 10
    assert candidate.may_write() is False, "a failed renewal must not extend the deadline"
    assert candidate.write_budget() is None

    api.fail_with = None
    assert (await candidate._attempt())[0] == "acquired"
    assert candidate.may_write() is True
    assert candidate.write_budget() == pytest.approx(10.0)
    clock.now = started + 19.999
    assert candidate.may_write() is True
    clock.now = started + 20
    assert candidate.may_write() is False


async def test_a_replica_that_is_not_leading_may_not_write_even_within_the_deadline() -> None:
    candidate, _, _ = leader_with_clock()
    assert (await candidate._attempt())[0] == "acquired"

    candidate.leading = False  # stepped down (lost, or shutting down)

    assert candidate.may_write() is False
    assert candidate.write_budget() is None


async def test_the_write_guard_refuses_every_write_the_elector_has_no_budget_for() -> None:
    """What the writer calls before each request (cli.assemble wires it): not yet leading, or past
    the renew deadline, it raises; in between it bounds the write by the time left."""
    candidate, clock, _ = leader_with_clock()
    guard = leadership_guard(candidate.write_budget)
    with pytest.raises(NotLeaderError):
        guard()

    assert (await candidate._attempt())[0] == "acquired"
    candidate.leading = True
    assert guard() == pytest.approx(10.0)

    clock.now += 10.0  # the renew deadline, with no renewal since
    with pytest.raises(NotLeaderError):
        guard()


# -- stepping down: a leader that cannot renew stops its work at the renew deadline


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever no task can run.

    The renew loop sleeps and times its requests out with anyio (on the loop's clock) and checks
    its deadline on the clock it is given; given this loop's clock, both are one time line, a
    test of many seconds takes none, and every instant is exact.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: _VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is None:
            raise RuntimeError("every task waits and no timer is set: the test would hang")
        if not ready and timeout:
            self.loop.now += timeout  # nothing to do until the next timer: it is due now
        return ready


def in_virtual_time(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    anyio.run(test, backend="asyncio", backend_options={"loop_factory": _VirtualTimeLoop})


#: A write's answer: "ok", or an error status (500, 409, ...); or the server never answers.
Answer = Literal["ok", "unanswered"] | int


class _ScriptedLeaseApi:
    """An API server whose answers to the elector's Lease writes follow a script.

    Write *n* takes ``script[n][0]`` seconds and then answers ``script[n][1]``; the last entry
    repeats. A GET finds no Lease, at once (only the first acquisition reads). Each write that is
    answered, or never will be, is logged as (when it started, its method, its answer); one the
    elector gives up on before its answer comes is not.
    """

    def __init__(self, script: list[tuple[float, Answer]]) -> None:
        self.script = script
        self.sent = 0
        self.writes: list[tuple[float, str, Answer]] = []

    async def request(self, method: str, path: str, *, body: object = None, **_: object) -> dict[str, object]:
        if method == "GET":
            raise ApiError(method=method, path=path, status=404, reason="NotFound")
        took, answer = self.script[min(self.sent, len(self.script) - 1)]
        self.sent += 1
        started = anyio.current_time()
        if answer == "unanswered":
            self.writes.append((started, method, answer))
            await anyio.sleep_forever()
        await anyio.sleep(took)
        self.writes.append((started, method, answer))
        if answer != "ok":
            raise ApiError(method=method, path=path, status=int(answer), reason="InternalError")
        assert isinstance(body, dict)
        version = str(self.sent)
        return {
            **body,
            "metadata": {"name": "secrets-operator", "namespace": "ops", "resourceVersion": version},
        }

    def last_success(self) -> tuple[float, str]:
        """When the last successful write started, and its method."""
        started, method, _ = [write for write in self.writes if write[2] == "ok"][-1]
        return started, method


@dataclasses.dataclass
class _Leadership:
    """What happened to one term of leadership, in virtual time."""

    api: _ScriptedLeaseApi
    acquired_at: float = math.nan
    work_started_at: float = math.nan
    work_cancelled_at: float = math.nan
    lost_at: float = math.nan
    leading_after: bool = True
    may_write_after: bool = True
    losses_counted: float = 0.0


def _losses() -> float:
    return (
        metrics.REGISTRY.get_sample_value("secrets_operator_leadership_changes_total", {"event": "lost"})
        or 0.0
    )


def lead_until_lost(
    script: list[tuple[float, Answer]], *, lease_duration: float, renew_deadline: float, retry_period: float
) -> _Leadership:
    """Acquire the Lease, run work that only ends when cancelled, and renew until the elector
    gives up: the same two steps as LeaderElector.run, without its watch of the Lease."""
    term = _Leadership(_ScriptedLeaseApi(script))
    losses_before = _losses()

    async def scenario() -> None:
        candidate = elector(
            lease_duration, renew_deadline, retry_period, kube=term.api, clock=anyio.current_time
        )

        async def work() -> None:
            term.work_started_at = anyio.current_time()
            try:
                await anyio.sleep_forever()
            finally:
                term.work_cancelled_at = anyio.current_time()

        with anyio.fail_after(10 * lease_duration):  # virtual seconds: a leader that never stops
            await candidate._acquire()
            term.acquired_at = anyio.current_time()
            await candidate._lead_until_lost(work)
        term.lost_at = anyio.current_time()
        term.leading_after, term.may_write_after = candidate.leading, candidate.may_write()

    in_virtual_time(scenario)
    term.losses_counted = _losses() - losses_before
    return term


@pytest.mark.parametrize("failing", [500, "unanswered"], ids=["renewals-refused", "renewals-unanswered"])
def test_a_leader_that_cannot_renew_stops_its_work_at_the_renew_deadline(failing: Answer) -> None:
    """Renewals succeed for a while, then fail. The work must be cancelled exactly RenewDeadline
    after the start of the last successful renewal: later would eat into the margin before
    another replica may take the Lease (it may at LeaseDuration, by its own clock); earlier
    would give up while renewing could still save the term."""
    ok: tuple[float, Answer] = (0.3, "ok")
    fail: tuple[float, Answer] = (0.3, failing)
    term = lead_until_lost([ok] * 4 + [fail], lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)

    last_renewal, method = term.api.last_success()
    assert method == "PATCH", "the last success was a renewal"
    assert last_renewal > term.acquired_at
    deadline = last_renewal + 10.0
    assert term.work_cancelled_at == pytest.approx(deadline, abs=1e-6), (
        f"the work stopped {term.work_cancelled_at - last_renewal:.3f} s after the last successful "
        f"renewal started; the renew deadline is 10 s (the lease duration 15 s)"
    )
    assert term.lost_at == pytest.approx(deadline, abs=1e-6)
    assert (term.leading_after, term.may_write_after, term.losses_counted) == (False, False, 1)
    # And it kept trying until then: the first failure came a RetryPeriod after the last success
    # (which took 0.3 s); refused attempts are repeated every RetryPeriod/4 (+ 0.3 s) until the
    # deadline; an unanswered one is waited for until the deadline.
    attempts = [started for started, _, answer in term.api.writes if answer != "ok"]
    assert attempts[0] == pytest.approx(last_renewal + 0.3 + 2.0)
    if failing == "unanswered":
        assert len(attempts) == 1
    else:
        gaps = [later - earlier for earlier, later in itertools.pairwise([*attempts, deadline])]
        assert max(gaps) <= 0.5 + 0.3 + 1e-6, f"renewal attempts {attempts} until {deadline}"


def test_a_slow_acquisition_does_not_push_the_step_down_past_the_renew_deadline() -> None:
    """The acquiring write is answered after 1.5 s (under the client's 2 x RetryPeriod timeout);
    no renewal succeeds after it. The first renewal is due a RetryPeriod after that answer, past
    the deadline counted from the acquisition's start, as the settings allow when RenewDeadline
    < RetryPeriod + the time an acquisition may take. The work must stop at the deadline all the
    same, not whenever the elector wakes up to renew. (Renewals cannot be that slow: each is cut
    at the deadline; acquiring has none.)"""
    script: list[tuple[float, Answer]] = [(1.5, "ok"), (0.2, 500)]
    term = lead_until_lost(script, lease_duration=4.0, renew_deadline=3.0, retry_period=2.0)

    acquired, method = term.api.last_success()
    assert method == "POST", "no renewal succeeded"
    assert term.work_started_at == pytest.approx(acquired + 1.5)
    assert term.work_cancelled_at == pytest.approx(acquired + 3.0, abs=1e-6), (
        f"the work stopped {term.work_cancelled_at - acquired:.3f} s after the acquisition started; "
        f"the renew deadline is 3 s"
    )
    assert (term.leading_after, term.may_write_after, term.losses_counted) == (False, False, 1)


# -- two candidates, one Lease


def test_of_two_candidates_racing_for_an_expired_lease_exactly_one_takes_it() -> None:
    """Both read the Lease a third replica holds, both wait for its claim to lapse and both try to
    take it at that instant, from the version they read. Only the resourceVersion the write
    carries makes the API server refuse the second: the loser must get 409 and not lead, and
    must see the winner's claim when it reads the Lease again."""
    api = _LeaseApi()
    api.version = 7
    api.lease = {
        "metadata": {"name": "secrets-operator", "namespace": "ops", "resourceVersion": "7"},
        "spec": held(holder="replica-c", duration=15, transitions=3).spec(),
    }
    candidates: dict[str, LeaderElector] = {}
    # who acquired, when, and whether it then considered itself the writer
    acquired: list[tuple[str, float, bool]] = []
    loser_after: list[tuple[bool, bool, float | None]] = []

    async def scenario() -> None:
        async def campaign(candidate: LeaderElector) -> None:
            await candidate._acquire()
            acquired.append((candidate.identity, anyio.current_time(), candidate.may_write()))

        started = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            for identity in (ME, OTHER):
                candidates[identity] = elector(kube=api, identity=identity, clock=anyio.current_time)
                tasks.start_soon(campaign, candidates[identity])
            # The winner does not renew here, so its own claim lapses 15 s after it took it (and
            # the loser, which re-reads it within 2.4 s, may take it then): stop well before that.
            await anyio.sleep(15 + 13)
            tasks.cancel_scope.cancel()
        assert acquired, "nobody took the expired Lease"
        assert acquired[0][1] == pytest.approx(started + 15, abs=0.01), "taken when the claim lapsed"
        for candidate in candidates.values():
            if candidate.identity != acquired[0][0]:
                loser_after.append((candidate.leading, candidate.may_write(), candidate.write_budget()))

    in_virtual_time(scenario)

    assert len(acquired) == 1, f"both candidates acquired the Lease: {acquired}"
    winner = acquired[0][0]
    (loser,) = {ME, OTHER} - {winner}
    assert acquired[0][2] is True, "the winner may write"
    assert loser_after == [(False, False, None)], "the loser considers itself the leader"
    assert api.writes == [("PATCH", winner, 200), ("PATCH", loser, 409)], "both tried, from one version"
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == winner
    assert api.lease["spec"]["leaseTransitions"] == 4
    record = candidates[loser].observation.record
    assert record is not None
    assert record.holder == winner, "the loser read the Lease again after its 409"
