"""List+watch into a trimmed in-memory cache, the way client-go's reflector does it.

1. LIST in pages from the API server's watch cache (see ``_relist``: a consistent list first,
   then not older than the last version seen), remember the list's resourceVersion, replace the
   cache, and report every difference to the previous cache (so a relist after an outage
   triggers the right reconciles),
   then (except after the first) call ``on_relist``: what the caller wrote while the watch was
   down never reached the cache, so no difference can show it (a copy written, then deleted,
   before the relist).
2. WATCH from that resourceVersion with bookmarks and a randomised server timeout; every event,
   bookmarks included, advances the resourceVersion. A stream the server ends is simply reopened.
3. A client-side inactivity timeout (bookmarks arrive about every minute) catches half-open
   connections.
4. 410 Gone (as a status or an ERROR event) → relist at once (repeated ones back off).
   429 → wait for Retry-After. Any other error → exponential backoff with jitter (0.8 s
   doubling to 30 s), reset by a healthy stream.

Objects are reduced by a ``trim`` function as they arrive, so the cache holds only what the
caller needs (for Secrets: never the data, unless the caller asks for it). Consumers get a
callback per change; they must not block.

What it does not do: interpret objects. Keys are ``namespace/name`` (or ``name``) unless the
caller supplies a ``key`` function (e.g. the namespace alone, when the name is fixed).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, Generic, NoReturn, TypeVar

import anyio

from secrets_operator import metrics
from secrets_operator.kube.client import (
    JSON,
    ApiError,
    ContinueExpiredError,
    Kube,
    Query,
    resource_version_unavailable,
)

T = TypeVar("T")
Trim = Callable[[JSON], T]
OnChange = Callable[[str, "T | None", "T | None"], None]

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
CONTINUE_EXPIRED_ATTEMPTS = 3  # paged lists started over after a continue token expired, at most


def object_key(obj: JSON) -> str:
    metadata = obj.get("metadata", {})
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


class Backoff:
    """Exponential backoff with jitter; ``reset()`` after a healthy period."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay * random.uniform(1.0, 1.5)

    def reset(self) -> None:
        self._next = self.initial


class Informer(Generic[T]):
    """A cache of one resource collection kept current by list+watch."""

    def __init__(
        self,
        kube: Kube,
        *,
        name: str,
        path: str,
        trim: Trim[T],
        on_change: OnChange[T] | None = None,
        on_relist: Callable[[], None] | None = None,
        query: Query = (),
        key: Callable[[JSON], str] = object_key,
        page_size: int | Callable[[], int] = 500,
        pages: anyio.CapacityLimiter | None = None,
        inactivity_timeout: float = 70.0,
        watch_timeout: tuple[int, int] = (300, 600),
    ) -> None:
        self.kube, self.name, self.path, self.query = kube, name, path, tuple(query)
        self.trim, self.on_change, self.on_relist, self.key = trim, on_change, on_relist, key
        self.page_size = page_size
        # Shared by informers that list together (at start, they all do): a page is held from
        # its request until its items are trimmed, so at most this many are in memory at once.
        self.pages = pages or anyio.CapacityLimiter(1)
        self.inactivity_timeout = inactivity_timeout
        self.watch_timeout = watch_timeout
        self.store: dict[str, T] = {}
        self._streamed = False  # the current watch stream has delivered at least one event
        self.resource_version = ""
        self.synced = anyio.Event()
        self.heartbeat = time.monotonic()

    # -- one-shot use (check, sync --once)

    async def list_once(self) -> None:
        """LIST everything into the cache without watching (used by read-only commands).

        A consistent read: a one-shot report must not show a lagging cache's view.
        """
        await self._relist(consistent=True)

    async def read_again(self) -> None:
        """A consistent LIST now, applied as a relist is: differences reach ``on_change``.

        For a caller that must not act on a view its watch may not have caught up with (a
        stalled stream, a lagging watch cache, a reconnect backoff).
        """
        await self._relist(consistent=True)

    # -- continuous use

    async def run(self) -> NoReturn:
        """List, then watch forever; never returns, recovers from every error."""
        backoff = Backoff()
        need_list = True
        failures = 0  # consecutive failed or empty cycles
        gone = 0  # consecutive cycles that ended in 410 Gone
        while True:
            gone_before, gone = gone, 0
            self.heartbeat = time.monotonic()
            reason, error, retry_after = "", "", 0.0
            self._streamed = False
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                opened = time.monotonic()
                delivered = await self._watch_once()
                if delivered:
                    failures = 0
                    backoff.reset()
                    metrics.WATCH_RESTARTS.labels(informer=self.name, reason="timeout").inc()
                    continue
                if time.monotonic() - opened >= 1.0:
                    failures = 0  # a quiet stream the server closed on schedule
                    backoff.reset()
                    metrics.WATCH_RESTARTS.labels(informer=self.name, reason="timeout").inc()
                    continue
                reason = "short"  # closed at once without a single event: like client-go, an error
                error = "the watch closed at once without any event"
            except ApiError as exc:
                if self._streamed and not (exc.is_gone and gone_before):
                    # The stream was healthy before it broke (a proxy's connection age, a restart):
                    # this is not a failure streak, whatever comes next. Unless it is one more
                    # 410 right after a relist: those keep backing off.
                    failures = 0
                    backoff.reset()
                if exc.reason == "InactivityTimeout":
                    # Nothing arrived, not even a bookmark: reopen from where we are, no penalty.
                    metrics.WATCH_RESTARTS.labels(informer=self.name, reason="inactivity").inc()
                    log.debug("watch was silent; reopening", extra={"informer": self.name})
                    continue
                if exc.is_gone:
                    need_list = True
                    reason = "gone"
                    error = str(exc)
                    gone = gone_before + 1
                    if gone == 1:
                        # What a reconnect after an outage usually meets: relist at once, even
                        # after a broken stream. Repeated 410s back off below.
                        metrics.WATCH_RESTARTS.labels(informer=self.name, reason="gone").inc()
                        log.info("watch expired, relisting", extra={"informer": self.name})
                        continue
                else:
                    reason = "error"
                    error = str(exc)
                    if exc.status == 429:
                        retry_after = exc.retry_after
            except Exception:
                log.exception("informer failed unexpectedly; retrying", extra={"informer": self.name})
                reason, error = "error", "unexpected error"
            failures += 1
            if failures >= 3:
                need_list = True  # after repeated failures, do not trust the resourceVersion any more
            metrics.WATCH_RESTARTS.labels(informer=self.name, reason=reason).inc()
            delay = max(backoff.next(), retry_after)
            log.warning(
                "list/watch failed, retrying",
                extra={"informer": self.name, "error": error, "retry_in": round(delay, 2)},
            )
            self.heartbeat = time.monotonic()
            await anyio.sleep(delay)

    async def _relist(self, *, consistent: bool = False) -> None:
        """LIST into a fresh cache, always in pages of ``page_size``, from the watch cache.

        Every request carries ``limit``: a copy is as large as its blueprint, and a list of them
        in one response would cost the whole collection's size in memory at once (at start and
        at every 410). On the supported servers (v1.35 to v1.37) both lists below are served from the
        API server's watch cache, pages cut from its snapshots:

        - First list (and ``list_once``): a consistent read (no ``resourceVersion``).
        - Later lists (after 410 Gone, or repeated failures): ``resourceVersion`` = the last one
          seen, ``resourceVersionMatch=NotOlderThan``: never older than what this cache already
          holds, so a relist cannot move it back in time.
        - That version unavailable (410, or 504 too large): a consistent read, as client-go's
          reflector does.
        - A continue token that expires (410) on a later page: the paged list starts over with
          the same query (never one unpaged list), a few times at most.
        """
        version = "" if consistent or not self.resource_version else self.resource_version
        try:
            fresh, resource_version = await self._list(version)
        except ApiError as exc:
            if (
                version == ""
                or isinstance(exc, ContinueExpiredError)
                or not resource_version_unavailable(exc)
            ):
                raise
            log.info("resourceVersion unavailable; listing consistently", extra={"informer": self.name})
            fresh, resource_version = await self._list("")
        self._replace(fresh, resource_version)

    async def _list(self, version: str) -> tuple[dict[str, T], str]:
        query = [*self.query]
        if version:
            query += [("resourceVersion", version), ("resourceVersionMatch", "NotOlderThan")]
        for attempt in range(1, CONTINUE_EXPIRED_ATTEMPTS + 1):
            page_size = max(1, self.page_size() if callable(self.page_size) else self.page_size)
            try:
                return await self._collect(query, page_size)
            except ContinueExpiredError:
                if attempt == CONTINUE_EXPIRED_ATTEMPTS:
                    raise
                log.info(
                    "continue token expired; listing again from the first page", extra={"informer": self.name}
                )
        raise AssertionError("unreachable")

    async def _collect(self, query: Query, page_size: int) -> tuple[dict[str, T], str]:
        fresh: dict[str, T] = {}
        resource_version = ""
        token = ""
        while True:
            async with self.pages:
                page = await self.kube.list_page(self.path, query=query, page_size=page_size, token=token)
                for item in page.get("items", []):
                    fresh[self.key(item)] = self.trim(item)
                metadata = page.get("metadata", {})
                resource_version = metadata.get("resourceVersion", resource_version)
                token = metadata.get("continue", "")
                del page, metadata  # gone before another page comes in
            self.heartbeat = time.monotonic()
            if not token:
                return fresh, resource_version

    def _replace(self, fresh: dict[str, T], resource_version: str) -> None:
        old, self.store = self.store, fresh
        self.resource_version = resource_version
        first = not self.synced.is_set()
        if self.on_change is not None:
            for key, new in fresh.items():
                previous = old.get(key)
                if previous != new:
                    self.on_change(key, previous, new)
            for key in old.keys() - fresh.keys():
                self.on_change(key, old[key], None)
        self.synced.set()
        if self.on_relist is not None and not first:
            self.on_relist()

    async def _watch_once(self) -> bool:
        """One watch stream until the server closes it; True when it delivered anything."""
        delivered = False
        timeout_seconds = random.randint(*self.watch_timeout)
        async for event in self.kube.watch(
            self.path,
            query=self.query,
            resource_version=self.resource_version,
            timeout_seconds=timeout_seconds,
            inactivity_timeout=self.inactivity_timeout,
        ):
            self.heartbeat = time.monotonic()
            self._apply(event)
            delivered = self._streamed = True
        return delivered

    def _apply(self, event: JSON) -> None:
        kind = event.get("type")
        obj: dict[str, Any] = event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code", 0) or 0)
            raise ApiError(
                method="WATCH",
                path=self.path,
                status=code,
                reason=str(obj.get("reason", "")),
                message=str(obj.get("message", ""))[:300],
            )
        resource_version = obj.get("metadata", {}).get("resourceVersion")
        if resource_version:
            self.resource_version = resource_version
        if kind == "BOOKMARK":
            return
        key = self.key(obj)
        previous = self.store.get(key)
        if kind in ("ADDED", "MODIFIED"):
            new = self.trim(obj)
            self.store[key] = new
            if self.on_change is not None and previous != new:
                self.on_change(key, previous, new)
        elif kind == "DELETED":
            self.store.pop(key, None)
            if self.on_change is not None and previous is not None:
                self.on_change(key, previous, None)
