"""The prune grace is the controller's clock: what starts it, what ends it, who keeps it, and
the read that must confirm a blueprint is gone before its copies are.

Planning only receives a number of seconds, so these rules live in the controller. The tests drive
its event handlers and leadership with a fake clock and a fake API server: no cluster needed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest

from secrets_operator import caches as caches_module
from secrets_operator import controller as controller_module
from secrets_operator.controller import Controller
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.model import (
    ActionKind,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    CopyState,
    Kind,
    NamespaceInfo,
)
from secrets_operator.planning import BlueprintSpec, content_hash
from secrets_operator.settings import Settings
from secrets_operator.trimming import trim_blueprint
from tools.waiting import wait_for

REF = BlueprintRef("auth", "htpasswd")
KEY = f"{REF.namespace}/{REF.name}"
GRACE = 4.0
DATA = {"auth": "YWxpY2U6eA=="}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def at(self, seconds: float) -> None:
        """Move to ``seconds`` after the start of the test."""
        self.now = 1000.0 + seconds


class FakeApi:
    """Answers the consistent read of the blueprint, records everything else."""

    def __init__(self) -> None:
        self.blueprint: JSON | None = None
        self.requests: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **options: Any) -> JSON:
        self.requests.append((method, path))
        return {}

    async def list_page(self, path: str, *, query: Any = (), page_size: int = 500, token: str = "") -> JSON:
        """The informer's paged LIST, in one page: whatever the server holds now."""
        self.requests.append(("GET", path))
        items = [self.blueprint] if self.blueprint is not None else []
        return {"items": items, "metadata": {"resourceVersion": "100"}}


def blueprint_object(resource_version: str = "7") -> JSON:
    return _object_of(REF, resource_version)


def _our_copy(ref: BlueprintRef, namespace: str) -> CopyInfo:
    return CopyInfo(
        namespace=namespace,
        name=ref.name,
        resource_version="42",
        type="Opaque",
        immutable=False,
        labels={"app.kubernetes.io/managed-by": "secrets-operator"},
        annotations={"secrets-operator.io/source": str(ref)},
        data_hash=content_hash("Opaque", DATA),
        data_keys=frozenset(DATA),
    )


def _object_of(ref: BlueprintRef, resource_version: str) -> JSON:
    return {
        "metadata": {"name": ref.name, "namespace": ref.namespace, "resourceVersion": resource_version},
        "type": "Opaque",
        "data": dict(DATA),
    }


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    # Only the controller's clock: the event loop keeps the real one.
    monkeypatch.setattr(controller_module, "time", SimpleNamespace(monotonic=lambda: fake.now))
    monkeypatch.setattr(caches_module, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def replica(api: FakeApi) -> Controller:
    """A replica whose caches hold the blueprint, one target namespace and the copy there."""
    settings = Settings(blueprints=(BlueprintSpec(REF),), prune=True, prune_grace_seconds=GRACE)
    controller = Controller(settings, cast(Kube, api), identity="test")
    controller.namespaces.store["team-a"] = NamespaceInfo("team-a", {})
    controller.caches.blueprint_informers[REF].store[KEY] = trim_blueprint(REF, blueprint_object())
    controller.caches.copy_informers[(Kind.SECRET, REF.name)].store["team-a"] = _our_copy(REF, "team-a")
    for informer in controller.informers:
        informer.synced.set()
    return controller


def watch_deletes(controller: Controller) -> None:
    old = controller.caches.blueprint_informers[REF].store.pop(KEY)
    controller.caches._blueprint_changed(KEY, old, None)


def watch_creates(controller: Controller, resource_version: str) -> None:
    new: Blueprint = trim_blueprint(REF, blueprint_object(resource_version))
    controller.caches.blueprint_informers[REF].store[KEY] = new
    controller.caches._blueprint_changed(KEY, None, new)


def prunes(controller: Controller) -> bool:
    return any(action.kind is ActionKind.DELETE for action in controller.plan("team-a").actions)


def test_a_blueprint_that_comes_back_cancels_the_grace_and_a_new_delete_starts_it_again(clock: Clock) -> None:
    """A flapping blueprint: deleted, back, deleted again. The grace counts from the last delete."""
    controller = replica(FakeApi())
    watch_deletes(controller)
    clock.at(1.0)
    watch_creates(controller, "8")
    clock.at(2.0)
    watch_deletes(controller)
    clock.at(GRACE + 0.5)  # the grace of the first delete is over, not that of the second
    assert not prunes(controller), "pruned early: the grace counted from the first delete"
    (row,) = controller.plan("team-a").rows
    assert row.state is CopyState.BLUEPRINT_MISSING
    assert row.prune_in == pytest.approx(1.5)
    clock.at(2.0 + GRACE + 0.1)
    assert prunes(controller)


async def test_a_standby_keeps_its_own_clock_so_a_new_leader_neither_restarts_the_grace_nor_prunes_early(
    clock: Clock,
) -> None:
    api = FakeApi()
    standby = replica(api)
    watch_deletes(standby)  # seen while standing by: it does not write, but it notes the time
    clock.at(0.6 * GRACE)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(standby.lead)  # the leader is gone: this replica takes over

        async def leading() -> bool:
            return standby.active

        await wait_for(leading, timeout=5, what="the standby to lead")
        await anyio.sleep(0.1)  # its first pass over every namespace
        assert not [request for request in api.requests if request[0] == "DELETE"], "pruned early"
        clock.at(GRACE - 0.1)
        assert not prunes(standby), "pruned before the grace was over"
        clock.at(GRACE + 0.1)
        assert prunes(standby), "the new leader restarted the grace when it took over"
        assert await standby.reconcile("team-a", since=clock.now)
        tasks.cancel_scope.cancel()
    assert ("DELETE", f"/api/v1/namespaces/team-a/secrets/{REF.name}") in api.requests


async def test_the_end_of_the_grace_reads_the_blueprint_again_and_prunes_only_if_it_is_still_absent(
    clock: Clock,
) -> None:
    api = FakeApi()
    controller = replica(api)
    controller.active = True
    watch_deletes(controller)
    api.blueprint = blueprint_object("9")  # back, but its watch stalled: the cache still shows it deleted
    clock.at(GRACE + 0.5)
    assert prunes(controller)
    assert await controller.reconcile("team-a", since=clock.now)
    listed = f"/api/v1/namespaces/{REF.namespace}/secrets"
    assert api.requests == [("GET", listed)], "a copy was written or deleted from a stale cache"
    blueprint = controller.blueprint(REF)
    assert blueprint is not None
    assert blueprint.resource_version == "9"
    assert REF not in controller.caches.missing_since  # the grace is cancelled
    assert not prunes(controller)

    api.requests.clear()
    watch_deletes(controller)
    api.blueprint = None  # gone for good
    clock.at(2 * GRACE + 1.0)
    assert await controller.reconcile("team-a", since=clock.now)
    assert api.requests == [("GET", listed), ("DELETE", f"/api/v1/namespaces/team-a/secrets/{REF.name}")]


# -- several blueprints, and a saturated server


class Servers:
    """Each blueprint's consistent read answers what the server holds now (or one error)."""

    def __init__(self, error: ApiError | None = None) -> None:
        self.present: dict[str, JSON] = {}
        self.requests: list[tuple[str, str]] = []
        self.error = error

    async def request(self, method: str, path: str, **_: Any) -> JSON:
        self.requests.append((method, path))
        return {}

    async def list_page(self, path: str, *, query: Any = (), page_size: int = 500, token: str = "") -> JSON:
        self.requests.append(("LIST", path))
        if self.error is not None:
            raise self.error
        name = dict(query)["fieldSelector"].split("=", 1)[1]
        return {
            "items": [self.present[name]] if name in self.present else [],
            "metadata": {"resourceVersion": "100"},
        }


def _pruning(api: Servers, refs: tuple[BlueprintRef, ...], namespaces: list[str]) -> Controller:
    settings = Settings(
        blueprints=tuple(BlueprintSpec(ref) for ref in refs), prune=True, prune_grace_seconds=4
    )
    controller = Controller(settings, cast(Kube, api), identity="test")
    for namespace in namespaces:
        controller.namespaces.store[namespace] = NamespaceInfo(namespace, {})
    for ref in refs:
        controller.caches.blueprint_informers[ref].store[f"{ref}"] = trim_blueprint(ref, _object_of(ref, "7"))
        for namespace in namespaces:
            controller.caches.copy_informers[(Kind.SECRET, ref.name)].store[namespace] = _our_copy(
                ref, namespace
            )
    for informer in controller.informers:
        informer.synced.set()
    controller.active = True
    for ref in refs:  # deleted, as the watches saw it
        old = controller.caches.blueprint_informers[ref].store.pop(f"{ref}")
        controller.caches._blueprint_changed(f"{ref}", old, None)
    return controller


async def test_every_missing_blueprint_is_confirmed_before_its_copies_are_pruned(clock: Clock) -> None:
    """Two blueprints past the grace, both back while their watches lag: finding the first back
    used to replan once and prune the second's copy without reading it again."""
    first, second = BlueprintRef("auth", "a-secret"), BlueprintRef("auth", "b-secret")
    api = Servers()
    controller = _pruning(api, (first, second), ["team"])
    api.present = {first.name: _object_of(first, "9"), second.name: _object_of(second, "9")}
    clock.at(5.0)
    await controller.reconcile("team", since=clock.now)
    assert [request for request in api.requests if request[0] == "DELETE"] == []
    assert controller.blueprint(first) is not None
    assert controller.blueprint(second) is not None


async def test_a_throttled_read_before_pruning_is_shared_and_honours_retry_after(clock: Clock) -> None:
    throttled = ApiError(method="GET", path="x", status=429, reason="TooManyRequests", retry_after=5)
    api = Servers(error=throttled)
    names = [f"team-{index}" for index in range(50)]
    controller = _pruning(api, (REF,), names)
    clock.at(5.0)
    outcomes = {await controller.reconcile(namespace, since=clock.now) for namespace in names}
    assert outcomes == {"throttled"}  # held for Retry-After, not retried with backoff as an error
    assert len([request for request in api.requests if request[0] == "LIST"]) == 1  # one read, shared
