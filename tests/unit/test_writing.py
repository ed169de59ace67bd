"""The writer's hedged create: a copy in a just-created namespace must not wait out the API
server's 50 ms missing-namespace wait, and the second request must never hide an error or
create twice."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from kubernetes_asyncio.client import ApiClient

from secrets_operator import metrics
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.model import Action, ActionKind, BlueprintRef
from secrets_operator.writing import HEDGE_AFTER, Writer

REF = BlueprintRef("home", "auth")
BODY = {"metadata": {"name": "auth", "namespace": "team"}, "type": "Opaque", "data": {}}


class SlowFirst(Kube):
    """The first POST waits like NamespaceLifecycle's missing-namespace wait, then finds the copy
    created (409) if a later POST created it meanwhile."""

    def __init__(self, *, first_wait: float, answers: list[ApiError | None] | None = None) -> None:
        super().__init__(cast(ApiClient, None))
        self.first_wait = first_wait
        self.answers = answers or []
        self.sent: list[float] = []
        self.created = False

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> JSON:
        number = len(self.sent)
        self.sent.append(anyio.current_time())
        if number == 0:
            await anyio.sleep(self.first_wait)
        answer = self.answers[number] if number < len(self.answers) else None
        if answer is not None:
            raise answer
        if self.created:
            raise ApiError(method=method, path=path, status=409, reason="AlreadyExists")
        self.created = True
        return dict(body)


def create() -> Action:
    return Action(ActionKind.CREATE, "team", "auth", REF, "copy missing", body=BODY)


def hedged() -> float:
    return metrics.REGISTRY.get_sample_value("secrets_operator_hedged_creates_total") or 0.0


async def test_a_create_stuck_in_the_missing_namespace_wait_is_answered_by_the_second() -> None:
    kube = SlowFirst(first_wait=0.05)
    before = hedged()
    started = anyio.current_time()
    await Writer(kube, blueprints=dict).apply(create(), hedge=True)
    assert len(kube.sent) == 2
    assert kube.sent[1] - kube.sent[0] >= HEDGE_AFTER
    assert hedged() == before + 1
    # both are back before apply returns; the copy was created once (the first got 409)
    assert anyio.current_time() - started >= 0.05
    assert kube.created


async def test_a_quick_create_is_sent_once() -> None:
    kube = SlowFirst(first_wait=0)
    before = hedged()
    await Writer(kube, blueprints=dict).apply(create(), hedge=True)
    assert len(kube.sent) == 1
    assert hedged() == before


async def test_without_hedge_the_create_waits_and_is_sent_once() -> None:
    kube = SlowFirst(first_wait=0.03)
    await Writer(kube, blueprints=dict).apply(create())
    assert len(kube.sent) == 1


async def test_a_real_error_is_not_hidden_by_the_others_409() -> None:
    forbidden = ApiError(method="POST", path="x", status=403, reason="Forbidden", message="denied")
    kube = SlowFirst(first_wait=0.03, answers=[None, forbidden])
    await Writer(kube, blueprints=dict).apply(create(), hedge=True)  # the first created it: success
    both = SlowFirst(first_wait=0.03, answers=[forbidden, forbidden])
    with pytest.raises(ApiError) as raised:
        await Writer(both, blueprints=dict).apply(create(), hedge=True)
    assert raised.value.status == 403
    exists = ApiError(method="POST", path="x", status=409, reason="AlreadyExists")
    twin = SlowFirst(first_wait=0.03, answers=[exists, exists])  # someone else's object is there
    with pytest.raises(ApiError) as raised:
        await Writer(twin, blueprints=dict).apply(create(), hedge=True)
    assert raised.value.status == 409
