"""How the informer's loop reacts to 410 Gone and relists, step by step, without a server.

The order of LIST, WATCH and backoff decides how fast a copy comes back after an outage and
how hard a struggling API server is hit. Integration tests show the result on a real server;
these pin the sequence itself: which answer relists at once, which backs off, and when the
relist callback runs. The fake client only replays a script of answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import pytest

from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.kube.informer import Informer


class ScriptDone(BaseException):
    """Ends the informer's endless loop once the script is played (not an Exception: the loop
    recovers from every Exception)."""


def gone() -> JSON:
    return {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}


def added(name: str, resource_version: str) -> JSON:
    return {"type": "ADDED", "object": {"metadata": {"name": name, "resourceVersion": resource_version}}}


def broken() -> ApiError:
    return ApiError(method="WATCH", path="/x", status=0, reason="StreamBroken", message="cut")


class ScriptedKube:
    """Answers LISTs and WATCHes in the order of a script; each step names the call it expects."""

    def __init__(self, *steps: tuple[Any, ...]) -> None:
        self.steps = list(steps)
        self.calls: list[str] = []

    def _next(self, call: str) -> tuple[Any, ...]:
        self.calls.append(call)
        if not self.steps:
            raise ScriptDone
        step = self.steps.pop(0)
        assert step[0] == call, f"expected {step[0]}, the informer made a {call}"
        return step

    async def list_pages(self, path: str, *, query: Any, page_size: int) -> AsyncIterator[JSON]:
        _, items = self._next("list")
        yield {"metadata": {"resourceVersion": "1"}, "items": items}

    async def watch(self, path: str, **_: Any) -> AsyncIterator[JSON]:
        _, events, error = self._next("watch")
        for event in events:
            yield event
        if error is not None:
            raise error


async def play(kube: ScriptedKube, monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], int]:
    """Run an informer through the script; the backoff sleeps it asked for, and its relists."""
    sleeps: list[float] = []
    relists = 0

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    def relisted() -> None:
        nonlocal relists
        relists += 1

    monkeypatch.setattr(anyio, "sleep", sleep)  # what the informer waits with
    informer: Informer[str] = Informer(
        cast(Kube, kube), name="test", path="/x", trim=lambda obj: obj["metadata"]["name"], on_relist=relisted
    )
    with pytest.raises(ScriptDone):
        await informer.run()
    assert not kube.steps, "the informer stopped before the script ended"
    return sleeps, relists


async def test_the_first_410_relists_at_once_and_a_repeated_one_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = ScriptedKube(
        ("list", [{"metadata": {"name": "a"}}]),
        ("watch", [gone()], None),
        ("list", []),
        ("watch", [gone()], None),
        ("list", []),
    )
    sleeps, relists = await play(kube, monkeypatch)
    assert kube.calls == ["list", "watch", "list", "watch", "list", "watch"]
    assert len(sleeps) == 1  # only before the second relist
    assert relists == 2  # every relist but the first list


async def test_a_410_right_after_a_broken_stream_relists_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a reconnect after an API server restart meets: the stream breaks, the resumed watch
    # finds its resourceVersion compacted away.
    kube = ScriptedKube(
        ("list", []),
        ("watch", [], broken()),
        ("watch", [gone()], None),
        ("list", []),
    )
    sleeps, relists = await play(kube, monkeypatch)
    assert len(sleeps) == 1  # the backoff after the broken stream, none after the 410
    assert relists == 1


async def test_repeated_410s_keep_backing_off_even_after_streams_that_delivered_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = ScriptedKube(
        ("list", []),
        ("watch", [added("b", "2"), gone()], None),
        ("list", []),
        ("watch", [added("b", "3"), gone()], None),
        ("list", []),
        ("watch", [added("b", "4"), gone()], None),
        ("list", []),
    )
    sleeps, relists = await play(kube, monkeypatch)
    assert relists == 3
    assert len(sleeps) == 2
    # The backoff doubles (0.8 s, then 1.6 s, each with up to 50% jitter) instead of starting
    # over at every stream that delivered something before its 410.
    assert sleeps[1] >= 1.6, sleeps
