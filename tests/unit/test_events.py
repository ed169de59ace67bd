"""Events must never flood: aggregated per blueprint and reason, rate-limited per object, and sent
off the write path from a bounded queue.

5,000 conflicting namespaces once meant 5,000 Event POSTs, inline before the writes, on the same
rate budget. These tests pin the digest (one summary per blueprint and reason per window), the
spam filter (client-go's: a token bucket per source and object, burst 25, one more per 5 minutes)
and the queue (emit never blocks; a full queue drops and counts), with a fake clock.

An Event's note is limited to 1,024 bytes of UTF-8, and the API server refuses a longer one whole:
a note cut by characters lost the aggregated Event, every namespace in it, to one long non-ASCII
value that anybody who may create a Secret can put into the source annotation of a conflicting one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import anyio
import pytest
from kubernetes_asyncio.client import ApiClient

from secrets_operator import metrics
from secrets_operator.kube.client import JSON, Kube
from secrets_operator.kube.events import CUT_MARK, NOTE_LIMIT, EventRecorder, ObjectRef, SpamFilter
from secrets_operator.model import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SOURCE_ANNOTATION,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    NamespaceInfo,
)
from secrets_operator.planning import Policy, content_hash, plan_namespace, untrusted
from secrets_operator.reporting import Digest, Reporter
from tools.waiting import wait_for

AUTH = BlueprintRef("home", "auth")
REGISTRY = BlueprintRef("home", "registry")
SECRET = ObjectRef("v1", "Secret", "home", "auth", "uid-1")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recording(Kube):
    def __init__(self) -> None:
        super().__init__(cast(ApiClient, None))
        self.posted: list[JSON] = []
        self.gate = anyio.Event()

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> JSON:
        await self.gate.wait()
        self.posted.append(body)
        return dict(body)


def dropped() -> float:
    return metrics.REGISTRY.get_sample_value("secrets_operator_events_total", {"result": "dropped"}) or 0.0


# -- the digest


def test_namespaces_of_one_blueprint_and_reason_become_one_summary_with_a_count() -> None:
    clock = FakeClock()
    digest = Digest(window=10.0, clock=clock)
    for i in range(5000):
        digest.add(AUTH, "Conflict", f"team-{i}", "not ours")
    digest.add(REGISTRY, "Conflict", "team-0", "not ours")
    digest.add(AUTH, "ReplicationFailing", "team-7", "5 attempts failed")

    assert digest.due() == [], "nothing before the window has passed"
    clock.now += 10.0
    summaries = {(s.blueprint, s.reason): s for s in digest.due()}

    assert set(summaries) == {(AUTH, "Conflict"), (REGISTRY, "Conflict"), (AUTH, "ReplicationFailing")}
    conflict = summaries[(AUTH, "Conflict")]
    assert conflict.count == 5000
    assert conflict.examples == ("team-0", "team-1", "team-2")
    assert conflict.namespaces() == "5,000 namespaces (e.g. team-0, team-1, team-2)"
    assert summaries[(REGISTRY, "Conflict")].namespaces() == "1 namespace (team-0)"
    assert digest.due() == [], "a summary is given once"


def test_a_namespace_seen_twice_in_a_window_is_counted_once() -> None:
    clock = FakeClock()
    digest = Digest(window=1.0, clock=clock)
    for _ in range(3):
        digest.add(AUTH, "ReplicationFailing", "team-a")
    clock.now += 1.0
    (summary,) = digest.due()
    assert summary.count == 1


def test_each_window_starts_with_its_first_namespace() -> None:
    clock = FakeClock()
    digest = Digest(window=10.0, clock=clock)
    digest.add(AUTH, "Conflict", "a")
    clock.now += 6.0
    digest.add(REGISTRY, "Conflict", "b")
    clock.now += 4.0
    assert [s.blueprint for s in digest.due()] == [AUTH]
    clock.now += 6.0
    assert [s.blueprint for s in digest.due()] == [REGISTRY]


# -- the spam filter


def test_the_spam_filter_allows_a_burst_then_one_per_refill_period() -> None:
    clock = FakeClock()
    spam = SpamFilter(burst=25, refill_every=300.0, clock=clock)

    assert [spam.allow("auth") for _ in range(26)] == [True] * 25 + [False]
    clock.now += 299.0
    assert not spam.allow("auth")
    clock.now += 1.0
    assert spam.allow("auth")
    assert not spam.allow("auth")
    assert spam.allow("registry"), "another object has its own bucket"


def test_the_spam_filter_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    spam = SpamFilter(burst=3, refill_every=1.0, clock=clock)
    for _ in range(3):
        spam.allow("x")
    clock.now += 1000.0
    assert [spam.allow("x") for _ in range(4)] == [True, True, True, False]


def test_the_spam_filter_forgets_the_least_recently_used_objects() -> None:
    spam = SpamFilter(burst=1, memory=2, clock=FakeClock())
    for key in ("a", "b", "c"):
        spam.allow(key)
    assert len(spam._buckets) == 2


# -- the recorder: emit never blocks


async def test_emit_queues_without_sending_and_run_sends_in_order() -> None:
    kube = Recording()
    recorder = EventRecorder(kube, reporting_controller="c", reporting_instance="i", clock=FakeClock())
    for i in range(3):
        assert recorder.emit(SECRET, type="Warning", reason="Conflict", action="Replicate", note=f"n{i}")
    assert kube.posted == [], "emit must not send: the caller is on the write path"
    assert recorder.pending() == 3

    kube.gate.set()

    async def all_sent() -> bool:
        return len(kube.posted) == 3

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(recorder.run)
        await wait_for(all_sent, timeout=5, what="three Events sent")
        tasks.cancel_scope.cancel()
    assert [event["note"] for event in kube.posted] == ["n0", "n1", "n2"]
    assert kube.posted[0]["regarding"]["uid"] == "uid-1"


async def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    kube = Recording()  # its gate stays shut: nothing is ever sent
    recorder = EventRecorder(
        kube, reporting_controller="c", reporting_instance="i", queue_size=10, burst=100, clock=FakeClock()
    )
    before = dropped()
    queued = [  # emit is not even async: it cannot block
        recorder.emit(SECRET, type="Warning", reason="Conflict", action="Replicate", note=f"n{i}")
        for i in range(15)
    ]
    assert queued == [True] * 10 + [False] * 5
    assert dropped() - before == 5


def test_the_same_note_is_not_repeated_within_the_repeat_period() -> None:
    clock = FakeClock()
    recorder = EventRecorder(
        Recording(), reporting_controller="c", reporting_instance="i", repeat_after=1800.0, clock=clock
    )

    def emit() -> bool:
        return recorder.emit(SECRET, type="Warning", reason="Refused", action="Replicate", note="same")

    assert emit()
    clock.now += 1799.0
    assert not emit()
    clock.now += 1.0
    assert emit()


def test_one_object_gets_at_most_the_burst_of_events() -> None:
    clock = FakeClock()
    recorder = EventRecorder(Recording(), reporting_controller="c", reporting_instance="i", clock=clock)
    queued = [
        recorder.emit(SECRET, type="Warning", reason="Conflict", action="Replicate", note=f"{i} namespaces")
        for i in range(100)
    ]
    assert sum(queued) == 25
    clock.now += 600.0
    assert (
        sum(
            recorder.emit(SECRET, type="Warning", reason="Conflict", action="Replicate", note=f"later {i}")
            for i in range(10)
        )
        == 2
    )


def test_a_stream_of_one_problem_does_not_starve_the_first_report_of_another() -> None:
    clock = FakeClock()
    recorder = EventRecorder(Recording(), reporting_controller="c", reporting_instance="i", clock=clock)
    for i in range(26):  # a new summary every window, each note different: the burst used up
        recorder.emit(SECRET, type="Warning", reason="Conflict", action="Replicate", note=f"{i} namespaces")
        clock.now += 10.0
    assert recorder.emit(SECRET, type="Warning", reason="Refused", action="Replicate", note="not copied")


# -- notes: within the API server's limit, whatever a tenant writes


async def sent(recorder: EventRecorder, kube: Recording, count: int) -> list[JSON]:
    """Run the recorder until ``count`` Event bodies were posted; those bodies."""
    kube.gate.set()

    async def all_sent() -> bool:
        return len(kube.posted) >= count

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(recorder.run)
        await wait_for(all_sent, timeout=5, what=f"{count} Events sent")
        tasks.cancel_scope.cancel()
    return kube.posted


@pytest.mark.parametrize("char", ["x", "ä", "€", "😀"])
async def test_a_long_note_is_cut_to_1024_bytes_between_characters(char: str) -> None:
    kube = Recording()
    recorder = EventRecorder(kube, reporting_controller="c", reporting_instance="i", clock=FakeClock())
    recorder.emit(
        SECRET, type="Warning", reason="Conflict", action="Replicate", note="3 namespaces: " + char * 1500
    )

    (event,) = await sent(recorder, kube, 1)

    note = event["note"]
    assert len(note.encode()) <= NOTE_LIMIT, f"{len(note.encode())} bytes: the API server refuses it"
    assert len(note.encode()) > NOTE_LIMIT - 4, "no more cut than one character needs"
    assert note.endswith(CUT_MARK), "a cut note says so"
    assert note.startswith("3 namespaces: " + char), note[:40]
    assert set(note.removeprefix("3 namespaces: ").removesuffix(CUT_MARK)) == {char}, "no half character"


def test_a_note_within_the_limit_is_left_as_it_is() -> None:
    kube = Recording()
    recorder = EventRecorder(kube, reporting_controller="c", reporting_instance="i", clock=FakeClock())
    note = "ä" * (NOTE_LIMIT // 2)  # 1,024 bytes exactly
    recorder.emit(SECRET, type="Warning", reason="Conflict", action="Replicate", note=note)
    assert recorder._queue[0].note == note


def managed_for(namespace: str, source: str) -> CopyInfo:
    """A Secret named like the copy, marked as managed by secrets-operator for ``source``: the
    annotation is the Secret's owner's to write, anything at all."""
    return CopyInfo(
        namespace=namespace,
        name=AUTH.name,
        resource_version="1",
        type="Opaque",
        immutable=False,
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        annotations={SOURCE_ANNOTATION: source},
        data_hash=content_hash("Opaque", {}),
        data_keys=frozenset(),
    )


@pytest.mark.parametrize("value", ["ä" * 500, "😀" * 500])
async def test_a_long_foreign_source_annotation_cannot_cost_the_conflict_event(value: str) -> None:
    """Planning, the reporter's digest and the recorder, as the controller drives them: the Event
    still names the namespaces in conflict, and shows the foreign value quoted and cut short."""
    blueprint = Blueprint(
        ref=AUTH,
        type="Opaque",
        data={"k": "dg=="},
        immutable=False,
        labels={},
        annotations={},
        hash=content_hash("Opaque", {"k": "dg=="}),
        uid="uid-auth",
    )
    kube = Recording()
    recorder = EventRecorder(kube, reporting_controller="c", reporting_instance="i", clock=FakeClock())
    reporter = Reporter(recorder, blueprint=lambda ref: blueprint, window=0.0)
    for i, namespace in enumerate(["team-a", "team-b", "team-c", "team-d"]):
        plan = plan_namespace(
            Policy(),
            namespace=NamespaceInfo(namespace, {}),
            name=namespace,
            blueprints={AUTH: blueprint},
            copies={(AUTH.kind, AUTH.name): managed_for(namespace, value if i == 0 else "other/auth")},
        )
        reporter.plan(plan)
    reporter.emit_due()

    (event,) = await sent(recorder, kube, 1)

    note = event["note"]
    assert len(note.encode()) <= NOTE_LIMIT, f"{len(note.encode())} bytes: the API server refuses it"
    assert event["reason"] == "Conflict"
    assert note.startswith("4 namespaces (e.g. team-a, team-b, team-c) newly in conflict: "), note
    quoted = untrusted(value)
    assert f"for another source {quoted}" in note, note
    assert quoted == repr(value[:63]) + "… (500 characters)"
    assert value[:64] not in note, "at most 63 characters of the value"


def test_an_untrusted_value_is_capped_with_its_escapes() -> None:
    """Bidi overrides and newlines are escaped (6 and 2 characters each): the cap counts what is
    shown, so an escaped value is no longer than a plain one."""
    for value in ["\u202e" * 500, "a\nb" * 500]:
        shown = untrusted(value)
        assert "\u202e" not in shown, shown
        assert "\n" not in shown, shown
        quoted = shown.split("…")[0]
        assert len(quoted) <= 63 + 2, (len(quoted), quoted)
        assert shown.endswith(" (500 characters)") or shown.endswith(" (1,500 characters)"), shown
    assert untrusted("other/auth") == "'other/auth'"


def test_a_long_foreign_type_is_quoted_and_capped_in_the_conflict_detail() -> None:
    """Under ``adopt``, a twin of another type stays a conflict whose detail names its type."""
    blueprint = Blueprint(
        ref=AUTH,
        type="Opaque",
        data={},
        immutable=False,
        labels={},
        annotations={},
        hash=content_hash("Opaque", {}),
    )
    theirs = dataclasses.replace(
        managed_for("team-a", "other/auth"), labels={}, type="example.com/" + "x" * 500
    )
    plan = plan_namespace(
        Policy(conflict_policy="adopt"),
        namespace=NamespaceInfo("team-a", {}),
        name="team-a",
        blueprints={AUTH: blueprint},
        copies={(AUTH.kind, AUTH.name): theirs},
    )
    (row,) = plan.rows
    assert f"its type is {untrusted(theirs.type)}, not 'Opaque'" in row.detail, row.detail
    assert "x" * 64 not in row.detail, row.detail
