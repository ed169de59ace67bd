"""The Lease state machine decides whether this replica may write; a mistake means two writers.

Leader election hinges on a few pure rules, tested here without a cluster and with a clock the
test moves: when another replica's claim counts as live (timed locally from when the record was
last seen *changing*, never from remote timestamps), what record we write to take, keep or give
up the Lease (acquireTime and leaseTransitions, as ``kubectl describe lease`` shows them), how
MicroTime is written and read, the Kubernetes field names, and the timing rule the elector refuses
to start without.
"""

from __future__ import annotations

import datetime

import pytest

from secrets_operator.kube.client import ApiError
from secrets_operator.kube.leases import (
    LeaderElector,
    LeaseObservation,
    LeaseRecord,
    format_microtime,
    parse_microtime,
    released,
)

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


def elector(lease_duration: float, renew_deadline: float, retry_period: float) -> LeaderElector:
    return LeaderElector(
        None,  # type: ignore[arg-type]  # construction does no I/O
        namespace="ops",
        name="secrets-operator",
        identity=ME,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        clock=FakeClock(),
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
    candidate = LeaderElector(
        kube,  # type: ignore[arg-type]
        namespace="ops",
        name="secrets-operator",
        identity=ME,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=FakeClock(),
    )
    candidate.observation.observe(observed)

    assert await candidate._release() is False
    assert kube.requests == []  # never a write to a Lease that is not ours


# -- may_write() and write_budget(): the deadline a leader stops writing at


class _LeaseApi:
    """An API server holding one Lease (absent at first); every write takes ``took`` seconds."""

    def __init__(self, clock: FakeClock, *, took: float = 0.0) -> None:
        self.clock, self.took = clock, took
        self.version = 0
        self.fail_with: int | None = None

    async def request(self, method: str, path: str, *, body: object = None, **_: object) -> dict[str, object]:
        if method != "GET":
            self.clock.now += self.took
        if self.fail_with is not None:
            raise ApiError(method=method, path=path, status=self.fail_with, reason="InternalError")
        if method == "GET":
            raise ApiError(method=method, path=path, status=404, reason="NotFound")
        assert isinstance(body, dict)
        self.version += 1
        return {"metadata": {"name": "secrets-operator", "resourceVersion": str(self.version)}, **body}


def leader_with_clock(took: float = 0.0) -> tuple[LeaderElector, FakeClock, _LeaseApi]:
    clock = FakeClock()
    api = _LeaseApi(clock, took=took)
    candidate = LeaderElector(
        api,  # type: ignore[arg-type]
        namespace="ops",
        name="secrets-operator",
        identity=ME,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock,
    )
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
