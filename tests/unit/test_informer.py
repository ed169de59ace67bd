"""How the informer's loop reacts to 410 Gone and relists, step by step, without a server.

The order of LIST, WATCH and backoff decides how fast a copy comes back after an outage and
how hard a struggling API server is hit. Integration tests show the result on a real server;
these pin the sequence itself: which answer relists at once, which backs off, and when the
relist callback runs. The fake client only replays a script of answers.
"""

from __future__ import annotations

import weakref
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
        self.lists: list[tuple[dict[str, str], int]] = []  # each LIST's query and page size

    def _next(self, call: str) -> tuple[Any, ...]:
        self.calls.append(call)
        if not self.steps:
            raise ScriptDone
        step = self.steps.pop(0)
        assert step[0] == call, f"expected {step[0]}, the informer made a {call}"
        return step

    async def list_page(self, path: str, *, query: Any, page_size: int, token: str = "") -> JSON:
        self.lists.append((dict(query), page_size))
        _, items = self._next("list")
        return {"metadata": {"resourceVersion": "1"}, "items": items}

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


async def test_the_first_list_is_consistent_and_a_relist_is_never_older_than_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = ScriptedKube(
        ("list", []),
        ("watch", [added("b", "7"), gone()], None),
        ("list", []),
    )
    await play(kube, monkeypatch)
    (first, first_page_size), (relist, relist_page_size) = kube.lists
    # No resourceVersion: a consistent read, served (v1.34+) from the watch cache in pages.
    assert first == {}
    assert first_page_size > 0
    # After the 410: not older than the last version seen, in pages too.
    assert relist == {"resourceVersion": "7", "resourceVersionMatch": "NotOlderThan"}
    assert relist_page_size > 0


class PagedKube(Kube):
    """A Kube whose requests are answered by a function of the query (pages, or errors)."""

    def __init__(self, answer: Any) -> None:
        super().__init__(cast(Any, None))
        self.answer = answer
        self.queries: list[dict[str, str]] = []

    async def request(self, method: str, path: str, *, query: Any = (), **_: Any) -> JSON:
        self.queries.append(dict(query))
        return cast(JSON, self.answer(dict(query)))


def expired(query: dict[str, str]) -> ApiError:
    return ApiError(method="GET", path="/x", status=410, reason="Expired", message="continue token expired")


def item(name: str) -> JSON:
    return {"metadata": {"name": name}}


async def test_an_expired_continue_token_starts_the_paged_list_over() -> None:
    expired_once = False

    def answer(query: dict[str, str]) -> JSON:
        nonlocal expired_once
        if "continue" in query:
            if not expired_once:
                expired_once = True
                raise expired(query)
            return {"metadata": {"resourceVersion": "9"}, "items": [item("b"), item("c")]}
        return {"metadata": {"resourceVersion": "9", "continue": "page-2"}, "items": [item("a")]}

    kube = PagedKube(answer)
    informer: Informer[str] = Informer(kube, name="test", path="/x", trim=lambda obj: obj["metadata"]["name"])
    informer.resource_version = "4"

    await informer._relist()

    not_older = {"resourceVersion": "4", "resourceVersionMatch": "NotOlderThan", "limit": "500"}
    assert kube.queries == [
        not_older,
        {**not_older, "continue": "page-2"},
        not_older,  # from the first page again, in pages: never the whole list in one response
        {**not_older, "continue": "page-2"},
    ]
    assert sorted(informer.store) == ["a", "b", "c"]
    assert informer.resource_version == "9"


class Page(dict[str, Any]):
    """A LIST page that can be watched for its end (a plain dict cannot be weakly referenced)."""


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_informers_listing_together_hold_at_most_their_shared_pages_in_memory(in_flight: int) -> None:
    """At start every informer lists at once. A page is in memory from its request (the body
    arriving) until its items are trimmed: no informer keeps one while it asks for the next (21
    informers doing so with 500 copies a page left the RSS 50 MB above what the operator keeps),
    and the informers share a bound on pages in flight (copy pages may be 32 MiB each)."""
    alive: set[int] = set()
    order: list[str] = []
    most = 0

    class CountingKube(Kube):
        def __init__(self) -> None:
            super().__init__(cast(Any, None))

        async def request(self, method: str, path: str, *, query: Any = (), **_: Any) -> JSON:
            nonlocal most
            number = int(dict(query).get("continue", "0"))
            page = Page(metadata={"resourceVersion": "5"}, items=[item(f"{path}-{number}")])
            if number < 4:
                page["metadata"]["continue"] = str(number + 1)
            order.append(path)
            alive.add(id(page))
            weakref.finalize(page, alive.discard, id(page))
            most = max(most, len(alive))
            await anyio.sleep(0.001)  # the body arrives meanwhile; the other informers get a turn
            return page

    pages = anyio.CapacityLimiter(in_flight)
    kube = CountingKube()
    informers: list[Informer[str]] = [
        Informer(kube, name=f"i{n}", path=f"/p{n}", pages=pages, trim=lambda obj: obj["metadata"]["name"])
        for n in range(6)
    ]
    async with anyio.create_task_group() as tasks:
        for informer in informers:
            tasks.start_soon(informer._relist)
    assert [len(informer.store) for informer in informers] == [5] * 6
    assert most == in_flight
    # The bound is held per page, not per list: the informers take turns page by page.
    assert len(set(order[:6])) == 6, order[:12]


def test_the_caches_informers_share_one_bound_of_two_pages() -> None:
    from secrets_operator.caches import LIST_PAGES_IN_FLIGHT, Caches
    from secrets_operator.model import BlueprintRef
    from secrets_operator.planning import BlueprintSpec, Policy

    policy = Policy(
        blueprints=(BlueprintSpec(BlueprintRef("home", "a")), BlueprintSpec(BlueprintRef("home", "b")))
    )
    caches = Caches(
        cast(Any, None),
        policy,
        on_namespace=lambda *_: None,
        on_blueprint=lambda *_: None,
        on_copy=lambda *_: None,
        on_copies_relisted=lambda *_: None,
    )
    assert len(caches.informers) == 5
    assert len({id(informer.pages) for informer in caches.informers}) == 1
    assert LIST_PAGES_IN_FLIGHT == 2
    assert caches.namespaces.pages.total_tokens == 2


async def test_continue_tokens_that_keep_expiring_fail_the_relist_without_an_unpaged_list() -> None:
    def answer(query: dict[str, str]) -> JSON:
        if "continue" in query:
            raise expired(query)
        return {"metadata": {"resourceVersion": "9", "continue": "page-2"}, "items": [item("a")]}

    kube = PagedKube(answer)
    informer: Informer[str] = Informer(kube, name="test", path="/x", trim=lambda obj: obj["metadata"]["name"])
    informer.resource_version = "4"

    with pytest.raises(ApiError):  # the run loop backs off and relists
        await informer._relist()
    assert all("limit" in query for query in kube.queries), kube.queries
    assert len(kube.queries) == 6  # three attempts of two pages each
    assert informer.resource_version == "4"


class ListAndWatchKube(PagedKube):
    """LISTs answered page by page through the real ``list_page``; WATCHes from a script."""

    def __init__(self, answer: Any, watches: list[list[JSON]]) -> None:
        super().__init__(answer)
        self.watches = watches

    async def watch(self, path: str, **_: Any) -> AsyncIterator[JSON]:
        if not self.watches:
            raise ScriptDone
        for event in self.watches.pop(0):
            yield event


@pytest.mark.parametrize("page_size", [500, lambda: 37])
async def test_every_list_request_carries_a_limit(monkeypatch: pytest.MonkeyPatch, page_size: Any) -> None:
    """A copy is as large as its blueprint: one unpaged list of them costs the whole collection's
    size at once (OOM at start and at every 410). First list, relist after 410, the consistent
    fallback and a restart after an expired continue token: every request is a page."""
    pages_served = 0

    def answer(query: dict[str, str]) -> JSON:
        nonlocal pages_served
        pages_served += 1
        if query.get("resourceVersion") == "8":
            raise expired(query)  # the second relist's version is gone: consistent fallback
        if pages_served == 4:
            raise expired(query)  # the first relist's continue token expires once
        if "continue" in query:
            return {"metadata": {"resourceVersion": "7"}, "items": [item("b")]}
        return {"metadata": {"resourceVersion": "7", "continue": "page-2"}, "items": [item("a")]}

    async def sleep(delay: float) -> None:
        pass

    monkeypatch.setattr(anyio, "sleep", sleep)
    kube = ListAndWatchKube(answer, [[added("b", "7"), gone()], [added("b", "8"), gone()], []])
    informer: Informer[str] = Informer(
        kube, name="test", path="/x", trim=lambda obj: obj["metadata"]["name"], page_size=page_size
    )
    with pytest.raises(ScriptDone):
        await informer.run()
    lists = [query for query in kube.queries if "watch" not in query]
    assert len(lists) >= 8, lists  # first list, relist (restarted), relist (gone), consistent
    expected = "500" if page_size == 500 else "37"
    assert all(query.get("limit") == expected for query in lists), lists


async def test_a_resource_version_the_server_no_longer_has_falls_back_to_a_consistent_list() -> None:
    def answer(query: dict[str, str]) -> JSON:
        if query.get("resourceVersion"):
            raise expired(query)
        return {"metadata": {"resourceVersion": "12"}, "items": [item("a")]}

    kube = PagedKube(answer)
    informer: Informer[str] = Informer(kube, name="test", path="/x", trim=lambda obj: obj["metadata"]["name"])
    informer.resource_version = "4"

    await informer._relist()

    assert kube.queries[-1] == {"limit": "500"}
    assert list(informer.store) == ["a"]
    assert informer.resource_version == "12"
