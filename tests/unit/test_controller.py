"""The controller's loop against a fake API server: how often it writes, what it counts, what it says.

A mutating webhook that changes data on every write (a timestamp, a nonce) must not have a
namespace rewritten at the client's full rate; a 429 is neither a success nor a failure; a 404
is not a conflict; problems in many namespaces make a few Events, sent off the write path, and
only on the blueprints concerned; a copy someone took over after the pass read it is neither
overwritten nor pruned (its write carries the version it was planned from). The fake stands in
for the API server's answers and for the watch events the operator's own writes cause, so the
loop runs exactly as it does in production.
"""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from kubernetes_asyncio.client import ApiClient

from secrets_operator import controller as controller_module
from secrets_operator import metrics, pacing
from secrets_operator.controller import Controller
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.model import EXCLUDE_LABEL, MANAGED_BY_LABEL, BlueprintRef, Kind, NamespaceInfo
from secrets_operator.queue import WorkQueue
from secrets_operator.reporting import Digest
from secrets_operator.settings import load
from secrets_operator.trimming import trim_blueprint
from tests.support import precondition_failed
from tools.waiting import wait_for

AUTH = BlueprintRef("home", "auth")
REGISTRY = BlueprintRef("home", "registry")


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class FakeApi(Kube):
    """Answers the controller's requests like an API server, and feeds the copies' watch events
    back (while the writing worker still holds the namespace, as a fast watch would). A PATCH or
    DELETE of a copy changed since the version it names gets 409, as from the API server."""

    def __init__(self) -> None:
        super().__init__(cast(ApiClient, None))
        self.controller: Controller | None = None
        self.secrets: dict[tuple[str, str], JSON] = {}
        self.writes: list[tuple[float, str, str]] = []
        self.events: list[JSON] = []
        self.mutate: Callable[[JSON], None] | None = None  # a mutating webhook
        # method, path, body -> the error to answer with, if any
        self.fail: Callable[[str, str, Any], ApiError | None] = lambda method, path, body: None
        self.latency: dict[str, float] = {}  # method -> seconds it takes, as a slow server would
        self._versions = itertools.count(1)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        timed: Callable[[float], None] | None = None,
        **_: Any,
    ) -> JSON:
        began = time.monotonic()
        await anyio.lowlevel.checkpoint()
        if not path.startswith("/apis/events.k8s.io/"):
            await anyio.sleep(self.latency.get(method, 0.0))
        answer = await self._answer(method, path, body)
        if timed is not None:
            timed(time.monotonic() - began)
        return answer

    async def _answer(self, method: str, path: str, body: Any) -> JSON:
        if path.startswith("/apis/events.k8s.io/"):
            self.events.append(body)
            return dict(body)
        self.writes.append((anyio.current_time(), method, path))
        failure = self.fail(method, path, body)
        if failure is not None:
            raise failure
        parts = path.split("/")
        namespace = parts[4]
        name = parts[6] if len(parts) > 6 else body["metadata"]["name"]
        if method in ("PATCH", "DELETE"):
            if (namespace, name) not in self.secrets:
                raise ApiError(method=method, path=path, status=404, reason="NotFound")
            refused = precondition_failed(method, path, self.secrets[(namespace, name)], body)
            if refused is not None:
                raise refused
        if method == "DELETE":
            self.secrets.pop((namespace, name))
            self._changed(namespace, name)
            return {}
        if method == "POST":
            stored = {**body, "metadata": dict(body["metadata"])}
        else:  # a merge patch of metadata and data
            stored = dict(self.secrets[(namespace, name)])
            metadata = dict(stored["metadata"])
            for field in ("labels", "annotations"):
                merged = {**metadata.get(field, {}), **body["metadata"].get(field, {})}
                metadata[field] = {k: v for k, v in merged.items() if v is not None}
            stored["metadata"] = metadata
            if "data" in body:
                merged = {**stored.get("data", {}), **body["data"]}
                stored["data"] = {k: v for k, v in merged.items() if v is not None}
        stored["data"] = dict(stored.get("data") or {})
        if self.mutate is not None:
            self.mutate(stored)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.secrets[(namespace, name)] = stored
        self._changed(namespace, name)
        return stored

    def _changed(self, namespace: str, name: str) -> None:
        assert self.controller is not None
        informer = self.controller.caches.copy_informers[(Kind.SECRET, name)]
        stored = self.secrets.get((namespace, name))
        old = informer.store.get(namespace)
        new = self.controller.caches.trimmer.copy(Kind.SECRET, stored) if stored is not None else None
        if new is None:
            informer.store.pop(namespace, None)
        else:
            informer.store[namespace] = new
        assert informer.on_change is not None
        informer.on_change(namespace, old, new)  # as the watch would


async def wrote(api: FakeApi, namespace: str) -> bool:
    return any(f"/namespaces/{namespace}/" in write[2] for write in api.writes)


async def posted(api: FakeApi, reason: str) -> bool:
    return any(event["reason"] == reason for event in api.events)


def nonce_webhook() -> Callable[[JSON], None]:
    counter = itertools.count()

    def mutate(secret: JSON) -> None:
        secret["data"]["nonce"] = base64.b64encode(str(next(counter)).encode()).decode()

    return mutate


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    monkeypatch.setenv("SECRETS_OPERATOR_BLUEPRINTS", "home/auth,home/registry")
    monkeypatch.setenv("SECRETS_OPERATOR_MAX_CONCURRENT_WRITES", "4")
    fake = with_blueprints(FakeApi())
    assert fake.controller is not None
    fake.controller.namespaces.store["home"] = NamespaceInfo("home", {})
    return fake


def with_blueprints(fake: FakeApi) -> FakeApi:
    """A controller on ``fake`` from the environment's settings, with both blueprints cached."""
    controller = fake.controller = Controller(load(), fake, identity="test")
    for ref in (AUTH, REGISTRY):
        secret = {
            "metadata": {"name": ref.name, "namespace": ref.namespace, "uid": f"uid-{ref.name}"},
            "type": "Opaque",
            "data": {"key": base64.b64encode(ref.name.encode()).decode()},
        }
        controller.caches.blueprint_informers[ref].store[f"{ref}"] = trim_blueprint(ref, secret)
    for informer in controller.informers:
        informer.synced.set()
    return fake


def add_namespaces(api: FakeApi, *names: str) -> None:
    assert api.controller is not None
    for name in names:
        api.controller.namespaces.store[name] = NamespaceInfo(name, {})


@asynccontextmanager
async def leading(api: FakeApi) -> AsyncIterator[Controller]:
    assert api.controller is not None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(api.controller.lead)
        await anyio.lowlevel.checkpoint()
        yield api.controller
        tasks.cancel_scope.cancel()


def conflicting(api: FakeApi, namespace: str, name: str) -> None:
    """A Secret with the blueprint's name that the operator did not create."""
    assert api.controller is not None
    secret = {"metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}, "data": {}}
    api.secrets[(namespace, name)] = secret
    api.controller.caches.copy_informers[(Kind.SECRET, name)].store[namespace] = (
        api.controller.caches.trimmer.copy(Kind.SECRET, secret)
    )


# -- the queue's gauges


async def test_the_queue_gauges_count_waiting_and_in_progress_keys_whenever_scraped(api: FakeApi) -> None:
    """Read at scrape time: a key a worker holds counts as in progress (a test waiting for "nothing
    left to do" must see it), and a key put back in backoff counts as waiting at once."""
    assert api.controller is not None
    queue = api.controller.queue
    add_namespaces(api, "a", "b")
    api.controller.enqueue_all()
    assert (sample("secrets_operator_queue_depth"), sample("secrets_operator_queue_in_progress")) == (3, 0)
    key, _ = await queue.get()
    assert (sample("secrets_operator_queue_depth"), sample("secrets_operator_queue_in_progress")) == (2, 1)
    queue.done(key)
    queue.retry(key)  # back, in backoff
    assert (sample("secrets_operator_queue_depth"), sample("secrets_operator_queue_in_progress")) == (3, 0)


# -- backoff against a webhook that changes every write


async def test_a_webhook_that_changes_every_write_gets_a_few_writes_not_a_flood(api: FakeApi) -> None:
    """Backoff from 0.2 s: passes at 0, 0.2, 0.6, 1.4 s in two seconds. Before the fix, the watch
    event of each write re-queued the namespace at once: hundreds of writes."""
    add_namespaces(api, "team")
    api.mutate = nonce_webhook()
    written_before = sample("secrets_operator_writes_total", kind="Secret", action="update", result="error")

    async with leading(api):
        await anyio.sleep(2.0)

    writes = [w for w in api.writes if "/namespaces/team/" in w[2]]
    # Two blueprints: each pass writes both copies (both are changed by the webhook).
    assert len(writes) <= 2 * 5, f"{len(writes)} writes in 2 s: the backoff was bypassed"
    assert len(writes) >= 2 * 3, "the namespace is still retried"
    assert (
        sample("secrets_operator_writes_total", kind="Secret", action="update", result="error")
        > written_before
    )


# -- what a pass counts


async def test_a_throttled_write_is_not_a_success_and_keeps_the_backoff(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_namespaces(api, "team")
    throttle = ApiError(method="POST", path="x", status=429, reason="TooManyRequests", retry_after=5)
    api.fail = lambda method, path, body: throttle if "/namespaces/team/" in path else None
    success = sample("secrets_operator_reconciles_total", result="success")
    throttled = sample("secrets_operator_reconciles_total", result="throttled")
    queues: list[WorkQueue] = []

    def queue() -> WorkQueue:
        made = WorkQueue()
        for _ in range(3):
            made.retry("team")  # the namespace had failed three times before
        made.forget("home")
        queues.append(made)
        return made

    monkeypatch.setattr(controller_module, "WorkQueue", queue)
    async with leading(api):
        await wait_for(lambda: wrote(api, "team"), timeout=5, what="a write into team")
        await anyio.sleep(0.1)

    assert queues[0].failures("team") == 3, "a 429 reset (or added to) the namespace's backoff"
    assert queues[0].in_backoff("team"), "the namespace waits for Retry-After"
    assert sample("secrets_operator_reconciles_total", result="throttled") == throttled + 1
    assert sample("secrets_operator_reconciles_total", result="success") - success <= 1  # "home" only
    assert sample("secrets_operator_writes_total", kind="Secret", action="create", result="throttled") >= 1


async def test_a_write_answered_404_is_counted_as_not_found_not_as_a_conflict(api: FakeApi) -> None:
    add_namespaces(api, "gone")
    missing = ApiError(
        method="POST", path="x", status=404, reason="NotFound", message='namespaces "gone" not found'
    )
    api.fail = lambda method, path, body: missing if "/namespaces/gone/" in path else None
    conflicts = sample("secrets_operator_writes_total", kind="Secret", action="create", result="conflict")
    not_found = sample("secrets_operator_writes_total", kind="Secret", action="create", result="not_found")

    async with leading(api):
        await wait_for(lambda: wrote(api, "gone"), timeout=5, what="a write into gone")
        await anyio.sleep(0.05)

    assert (
        sample("secrets_operator_writes_total", kind="Secret", action="create", result="not_found")
        > not_found
    )
    assert (
        sample("secrets_operator_writes_total", kind="Secret", action="create", result="conflict")
        == conflicts
    )


# -- Events


def post_count(api: FakeApi, reason: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in api.events:
        if event["reason"] == reason:
            name = event["regarding"]["name"]
            counts[name] = counts.get(name, 0) + 1
    return counts


async def test_conflicts_in_many_namespaces_make_one_event_per_blueprint(api: FakeApi) -> None:
    names = [f"team-{i:02}" for i in range(30)]
    add_namespaces(api, *names)
    for name in names:
        conflicting(api, name, "auth")
    assert api.controller is not None
    api.controller.reporter.digest = Digest(window=0.2)

    async with leading(api):
        await anyio.sleep(1.5)  # a full pass, the window, the reporting tick, the send

    assert post_count(api, "Conflict") == {"auth": 1}
    (event,) = [e for e in api.events if e["reason"] == "Conflict"]
    assert event["note"].startswith("30 namespaces (e.g. team-"), event["note"]
    assert "not created by secrets-operator" in event["note"]


async def test_replication_failing_is_recorded_only_on_the_blueprint_that_failed(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_namespaces(api, "team")
    broken = ApiError(method="POST", path="x", status=500, reason="InternalError")
    # Only the copies of home/auth fail; home/registry's are written fine.
    api.fail = lambda method, path, body: (
        broken if "/namespaces/team/" in path and "auth" in str(body) else None
    )
    monkeypatch.setattr(controller_module, "WorkQueue", functools.partial(WorkQueue, base_delay=0.01))
    assert api.controller is not None
    api.controller.reporter.digest = Digest(window=0.1)

    async with leading(api):
        await wait_for(lambda: posted(api, "ReplicationFailing"), timeout=10, what="ReplicationFailing")
        await anyio.sleep(1.2)

    assert post_count(api, "ReplicationFailing") == {"auth": 1}


def test_a_new_leadership_term_forgets_the_problems_collected_in_an_earlier_one(api: FakeApi) -> None:
    """A standby's digest could be hours old: nothing of it may become an Event later."""
    assert api.controller is not None
    api.controller.reporter.digest.add(AUTH, "Conflict", "team-a", "an old conflict")
    api.controller.reporter.reset()
    api.controller.reporter.digest.clock = lambda: float("inf")  # every window long over
    assert api.controller.reporter.digest.due() == []


# -- a blueprint change costs one pair per namespace


def now(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """An async probe for wait_for from a plain condition."""

    async def probe() -> bool:
        return condition()

    return probe


async def test_a_blueprint_change_plans_only_that_blueprints_pairs(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With B blueprints, an update of one used to replan B pairs in every namespace; now one."""
    names = [f"team-{i}" for i in range(20)]
    add_namespaces(api, *names)
    planned: list[tuple[str, str]] = []
    real = controller_module.plan_namespace  # type: ignore[attr-defined]

    def counting(policy: Any, **kwargs: Any) -> Any:
        planned.extend((str(ref), kwargs["name"]) for ref in kwargs["blueprints"])
        return real(policy, **kwargs)

    monkeypatch.setattr(controller_module, "plan_namespace", counting)
    async with leading(api) as controller:
        await wait_for(now(lambda: len(api.secrets) == 2 * len(names)), timeout=10, what="every copy written")
        await wait_for(now(lambda: len(controller.queue) == 0), timeout=10, what="an empty queue")
        await anyio.sleep(0.2)
        planned.clear()
        writes = len(api.writes)
        secret = {
            "metadata": {"name": AUTH.name, "namespace": AUTH.namespace, "uid": "uid-auth"},
            "type": "Opaque",
            "data": {"key": base64.b64encode(b"rotated").decode()},
        }
        informer = controller.caches.blueprint_informers[AUTH]
        old = informer.store[f"{AUTH}"]
        new = informer.store[f"{AUTH}"] = trim_blueprint(AUTH, secret)
        assert informer.on_change is not None
        informer.on_change(f"{AUTH}", old, new)  # as the watch would
        await wait_for(
            now(lambda: len(api.writes) == writes + len(names)), timeout=10, what="every copy updated"
        )
        await wait_for(now(lambda: len(controller.queue) == 0), timeout=10, what="an empty queue")
        await anyio.sleep(0.2)
    # One pass per namespace for the update, and one more for each copy's own watch event: all
    # for home/auth, never for home/registry.
    assert {ref for ref, _ in planned} == {str(AUTH)}, sorted(set(planned))[:5]
    assert {namespace for _, namespace in planned} == {*names, "home"}


# -- a narrow note never hides a pair that still needs work


def copies_in(api: FakeApi, namespace: str) -> set[str]:
    return {name for (where, name) in api.secrets if where == namespace}


async def test_a_namespace_event_after_a_copy_event_plans_every_blueprint(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    add_namespaces(api, "team")
    controller.active = True
    controller._copy_changed(AUTH, "team")  # someone edited the auth copy: note {auth}
    controller._namespace_changed("team", None, NamespaceInfo("team", {}))  # then the namespace
    await controller.reconcile("team", time.monotonic())
    assert copies_in(api, "team") == {"auth", "registry"}


async def test_a_429_hold_then_a_narrow_event_still_plans_every_blueprint(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    add_namespaces(api, "team")
    controller.active = True
    throttled = ApiError(method="POST", path="x", status=429, reason="TooManyRequests", retry_after=0)
    api.fail = lambda method, path, body: throttled if "auth" in str(body) else None
    assert await controller.reconcile("team", time.monotonic()) == "throttled"  # registry never tried
    api.fail = lambda method, path, body: None
    controller._copy_changed(AUTH, "team")  # an event during the hold: note {auth}
    await controller.reconcile("team", time.monotonic())
    assert copies_in(api, "team") == {"auth", "registry"}


async def test_a_prune_recheck_survives_a_narrow_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_OPERATOR_BLUEPRINTS", "home/auth,home/registry")
    monkeypatch.setenv("SECRETS_OPERATOR_PRUNE", "true")
    monkeypatch.setenv("SECRETS_OPERATOR_PRUNE_GRACE_SECONDS", "30")
    fake = with_blueprints(FakeApi())
    controller = fake.controller
    assert controller is not None
    add_namespaces(fake, "team")
    controller.active = True
    await controller.reconcile("team", time.monotonic())
    assert copies_in(fake, "team") == {"auth", "registry"}

    async def one_pass() -> None:
        with anyio.fail_after(1):
            namespace, since = await controller.queue.get()
        try:
            assert await controller.reconcile(namespace, since) == "success"
        finally:
            controller.queue.done(namespace)
        controller.queue.forget(namespace)

    key = f"{REGISTRY}"
    old = controller.caches.blueprint_informers[REGISTRY].store.pop(key)
    controller.caches._blueprint_changed(key, old, None)  # registry deleted: note {registry}
    await one_pass()  # registry within its grace: a recheck when it ends
    assert "team" in controller.queue._delayed
    controller._copy_changed(AUTH, "team")  # a narrow event meanwhile
    await one_pass()
    assert "team" in controller.queue._delayed, "the prune recheck was lost"


# -- the first write into a new namespace: no delay until the API server shows it is outrun


def created(api: FakeApi, *names: str) -> None:
    """Namespaces the watch has just reported created."""
    assert api.controller is not None
    for name in names:
        info = NamespaceInfo(name, {})
        api.controller.namespaces.store[name] = info
        api.controller._namespace_changed(name, None, info)


async def test_a_new_namespace_is_written_at_once_while_no_create_met_the_wait(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    controller.active = True
    created(api, "team")
    assert controller.queue._pending == {"team": controller.queue._pending["team"]}  # not delayed
    await controller.reconcile("team", time.monotonic())
    assert copies_in(api, "team") == {"auth", "registry"}
    assert controller.pacing.delay == 0
    assert controller.pacing.slow_creates == 0


async def test_a_slow_first_create_in_a_new_namespace_delays_the_next_new_namespace(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    controller.active = True
    api.latency = {"POST": 0.06}  # the 50 ms missingNamespaceWait, and then some
    created(api, "team")
    key, since = await controller.queue.get()
    await controller.reconcile(key, since)
    controller.queue.done(key)
    # Only the first create counts: the second one was sent after the server had the namespace.
    assert controller.pacing.slow_creates == 1
    assert controller.pacing.delay == pytest.approx(pacing.STEP)
    assert sample("secrets_operator_new_namespace_delay_seconds") == pytest.approx(pacing.STEP)
    api.latency = {}
    created(api, "next")
    assert "next" not in controller.queue._pending
    assert 0 < controller.queue._delayed["next"] - time.monotonic() <= pacing.STEP


async def test_only_a_namespace_seen_created_just_now_teaches_the_delay(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    controller.active = True
    api.latency = {"POST": 0.06}
    add_namespaces(api, "old")  # a resync or a blueprint's first copies: not a race with admission
    await controller.reconcile("old", time.monotonic())
    created(api, "late")
    controller._created["late"] -= pacing.FRESH_SECONDS  # seen created a second ago
    await controller.reconcile("late", time.monotonic())
    assert copies_in(api, "old") == copies_in(api, "late") == {"auth", "registry"}
    assert controller.pacing.slow_creates == 0
    assert controller.pacing.delay == 0


async def test_the_first_create_is_measured_even_after_an_update(api: FakeApi) -> None:
    """An update is admitted whether or not the server has seen the namespace: only the first
    create can meet the wait, even when another write comes first."""
    controller = api.controller
    assert controller is not None
    controller.active = True
    add_namespaces(api, "team")
    await controller.reconcile("team", time.monotonic())  # both copies exist now
    api.secrets.pop(("team", "registry"))
    controller.caches.copy_informers[(Kind.SECRET, "registry")].store.pop("team")
    auth = dict(api.secrets[("team", "auth")])  # someone edits the auth copy: an update is due
    auth["data"] = {"key": "ZHJpZnQ="}
    api.secrets[("team", "auth")] = auth
    controller.caches.copy_informers[(Kind.SECRET, "auth")].store["team"] = controller.caches.trimmer.copy(
        Kind.SECRET, auth
    )
    api.latency = {"PATCH": 0.06, "POST": 0.06}  # an update first, then the create: both slow
    controller._created["team"] = time.monotonic()
    await controller.reconcile("team", time.monotonic())
    assert [method for _, method, _ in api.writes[-2:]] == ["PATCH", "POST"]
    assert controller.pacing.slow_creates == 1  # the create, not the update before it


async def test_a_first_create_that_fails_is_not_measured_and_ends_the_measurement(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    controller.active = True
    api.latency = {"POST": 0.06}
    refused = ApiError(method="POST", path="x", status=500, reason="InternalError")
    api.fail = lambda method, path, body: refused if "auth" in str(body) else None
    created(api, "team")
    await controller.reconcile("team", time.monotonic())
    assert copies_in(api, "team") == {"registry"}  # the second create, slow too, is not the first
    assert controller.pacing.slow_creates == 0


async def test_a_new_leadership_term_forgets_the_namespaces_seen_created(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    controller._created["gone"] = time.monotonic()
    async with leading(api):
        await wait_for(now(lambda: not controller._created), timeout=2, what="a clean slate")


# -- a copy someone else changed after the pass planned from it


def taken_over(api: FakeApi, namespace: str, name: str) -> JSON:
    """Someone else takes the copy over (drops the operator's label, writes data of its own);
    the watch has not shown it yet, so the cache still holds the version the next pass plans from."""
    secret = copy.deepcopy(api.secrets[(namespace, name)])
    del secret["metadata"]["labels"][MANAGED_BY_LABEL]
    secret["data"] = {"key": base64.b64encode(b"theirs").decode()}
    secret["metadata"]["resourceVersion"] = str(next(api._versions))
    api.secrets[(namespace, name)] = secret
    return copy.deepcopy(secret)


async def _left_alone_once_seen(api: FakeApi, controller: Controller, theirs: JSON) -> None:
    """The watch catches up with the take-over of team/auth: the next pass writes nothing."""
    api._changed("team", "auth")  # no longer the operator's copy
    writes = len(api.writes)
    assert await controller.reconcile("team", time.monotonic()) == "success"
    assert len(api.writes) == writes
    assert api.secrets.get(("team", "auth")) == theirs


async def test_an_update_of_a_copy_taken_over_meanwhile_is_refused_and_leaves_it_alone(api: FakeApi) -> None:
    controller = api.controller
    assert controller is not None
    controller.active = True
    add_namespaces(api, "team")
    assert await controller.reconcile("team", time.monotonic()) == "success"
    edited = api.secrets[("team", "auth")]
    edited["data"] = {"key": base64.b64encode(b"drifted").decode()}
    edited["metadata"]["resourceVersion"] = str(next(api._versions))
    api._changed("team", "auth")  # the watch shows the drift: the next pass updates the copy
    theirs = taken_over(api, "team", "auth")
    conflicts = sample("secrets_operator_writes_total", kind="Secret", action="update", result="conflict")

    outcome = await controller.reconcile("team", time.monotonic())

    assert api.writes[-1][1:] == ("PATCH", "/api/v1/namespaces/team/secrets/auth")
    assert api.secrets[("team", "auth")] == theirs, "the update overwrote a copy it had not seen"
    assert outcome == "error"  # retried with backoff
    assert (
        sample("secrets_operator_writes_total", kind="Secret", action="update", result="conflict")
        == conflicts + 1
    )
    await _left_alone_once_seen(api, controller, theirs)
    assert {row.name: str(row.state) for row in controller.plan("team").rows}["auth"] == "conflict"


async def test_a_prune_of_a_copy_taken_over_meanwhile_is_refused_and_leaves_it_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRETS_OPERATOR_BLUEPRINTS", "home/auth,home/registry")
    monkeypatch.setenv("SECRETS_OPERATOR_PRUNE", "true")
    api = with_blueprints(FakeApi())
    controller = api.controller
    assert controller is not None
    controller.active = True
    add_namespaces(api, "team")
    assert await controller.reconcile("team", time.monotonic()) == "success"
    theirs = taken_over(api, "team", "auth")
    controller.namespaces.store["team"] = NamespaceInfo("team", {EXCLUDE_LABEL: "true"})  # opts out
    conflicts = sample("secrets_operator_writes_total", kind="Secret", action="delete", result="conflict")

    outcome = await controller.reconcile("team", time.monotonic())

    deletes = [path for _, method, path in api.writes if method == "DELETE"]
    assert sorted(deletes) == [f"/api/v1/namespaces/team/secrets/{name}" for name in ("auth", "registry")]
    assert api.secrets.get(("team", "auth")) == theirs, "the prune deleted a Secret it no longer owned"
    assert outcome == "error"  # retried with backoff
    assert ("team", "registry") not in api.secrets, "the copy still ours is pruned"
    assert (
        sample("secrets_operator_writes_total", kind="Secret", action="delete", result="conflict")
        == conflicts + 1
    )
    await _left_alone_once_seen(api, controller, theirs)
