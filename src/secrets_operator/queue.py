"""A de-duplicating work queue of namespace names with per-key exponential retry backoff.

Events only say *which namespace to look at*, so many events for one namespace collapse into
one pending key. A key being processed is never handed to a second worker: if it is added
again meanwhile, it is queued once more when the first worker is done (nothing is lost, nothing
runs twice at once). Failed keys come back after a per-key delay that doubles on each failure
and resets on success, like client-go's workqueue.

Unlike client-go's, a key in backoff *stays* in backoff: events for it (a plain ``add``, the
re-queue of a key that became dirty while it was processed, a shorter ``add_after``) do not
bring it forward; they are absorbed into the pending retry, which reads the caches anyway. A
write that a mutating webhook changes differently every time (a timestamp, a nonce) produces
an event after every write; without this, that event would cut every backoff short and the
namespace would be rewritten as fast as the client's rate limit allows. Only ``forget`` (a
successful reconcile) ends a backoff early.

Delayed keys wait in a heap ordered by due time (stale entries are skipped when they surface,
and the heap is rebuilt once they outnumber the live ones), so ``get`` costs O(log n) per due
key rather than a scan of every delayed key: thousands of namespaces may be in backoff at once.

The queue also remembers when each key was first added, so the controller can measure the
time from an observed change to the write that answered it.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio


class WorkQueue:
    """Keys in, keys out, at most once in flight per key."""

    def __init__(
        self,
        *,
        base_delay: float = 0.2,
        max_delay: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay, self.max_delay, self.clock = base_delay, max_delay, clock
        self._pending: OrderedDict[str, float] = OrderedDict()  # key -> first added (monotonic)
        self._processing: set[str] = set()
        self._dirty_while_processing: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._held_until: dict[str, float] = {}  # key -> end of its backoff
        self._delayed: dict[str, float] = {}  # key -> due time (the truth; the heap may be stale)
        self._heap: list[tuple[float, str]] = []  # (due, key), lazily deleted
        self._delayed_since: dict[str, float] = {}  # key -> when the change behind a delay was seen
        self._wakeup = anyio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._pending) + len(self._delayed)

    def in_progress(self) -> int:
        """Keys taken by :meth:`get` and not yet :meth:`done`."""
        return len(self._processing)

    def in_backoff(self, key: str) -> bool:
        """True while ``key`` waits out a ``retry`` or ``hold`` delay."""
        return self._held_until.get(key, float("-inf")) > self.clock()

    def add(self, key: str, *, since: float | None = None) -> None:
        """Queue ``key`` now (no-op if already pending; absorbed if the key is in backoff)."""
        first = self.clock() if since is None else since
        if key in self._processing:
            self._dirty_while_processing.setdefault(key, first)
            return
        if key in self._pending:
            return
        if self.in_backoff(key):
            self._delayed_since[key] = min(first, self._delayed_since.get(key, first))
            if key not in self._delayed:
                self._schedule(key, self._held_until[key])
            return
        self._pending[key] = min(first, self._delayed_since.pop(key, first))
        self._delayed.pop(key, None)  # its heap entry is skipped when it surfaces
        self._wakeup.set()

    def add_after(self, key: str, delay: float, *, since: float | None = None) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier plain ``add`` wins, unless the key is
        in backoff: then it comes back when its backoff ends, not earlier).

        ``since`` is when the change was observed, if the delay is part of reacting to it.
        """
        if key in self._pending:
            return
        due = self.clock() + delay
        if self.in_backoff(key):
            due = max(due, self._held_until[key])
        if due < self._delayed.get(key, float("inf")):
            self._schedule(key, due)
        if since is not None:
            self._delayed_since.setdefault(key, since)
        self._wakeup.set()

    def retry(self, key: str) -> float:
        """Queue ``key`` again after its next backoff delay; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Cap the exponent: 2.0**1024 overflows, and a key may fail for days.
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(failures, 64))
        self.hold(key, delay)
        return delay

    def hold(self, key: str, delay: float, *, since: float | None = None) -> None:
        """Keep ``key`` out for ``delay`` seconds (at least; a longer backoff is kept), then queue it.

        Nothing brings it forward meanwhile but ``forget``. Counts no failure: for a delay the
        server asked for (429 ``Retry-After``) rather than one the key earned.
        """
        delay = min(delay, self.max_delay)  # never parked for good, whatever a server asked
        until = max(self.clock() + delay, self._held_until.get(key, float("-inf")))
        self._held_until[key] = until
        pending_since = self._pending.pop(key, None)
        for seen in (pending_since, since):
            if seen is not None:
                self._delayed_since[key] = min(seen, self._delayed_since.get(key, seen))
        self._schedule(key, until)
        self._wakeup.set()

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff after a success."""
        self._failures.pop(key, None)
        self._held_until.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def _schedule(self, key: str, due: float) -> None:
        self._delayed[key] = due
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 2 * len(self._delayed) + 64:  # mostly stale: rebuild
            self._heap = [(when, name) for name, when in self._delayed.items()]
            heapq.heapify(self._heap)

    def _promote_due(self) -> float | None:
        """Move due delayed keys to pending; return seconds until the next one is due."""
        now = self.clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if self._delayed.get(key) != due:
                continue  # rescheduled or taken since this entry was pushed
            del self._delayed[key]
            since = self._delayed_since.pop(key, now)
            if key in self._processing:
                self._dirty_while_processing.setdefault(key, since)
            elif key not in self._pending:
                self._pending[key] = since
        while heap and self._delayed.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap:
            return None
        return heap[0][0] - now

    async def get(self) -> tuple[str, float]:
        """The next key and when it was first added; waits until there is one."""
        while True:
            wait = self._promote_due()
            if self._pending:
                key, since = self._pending.popitem(last=False)
                self._processing.add(key)
                return key, since
            # Every idle worker waits on the same event; it is replaced only once it has fired
            # (by then all its waiters are awake), so no worker can miss a wake-up.
            event = self._wakeup
            if event.is_set():
                event = self._wakeup = anyio.Event()
            with anyio.move_on_after(wait if wait is not None else 3600):
                await event.wait()

    def done(self, key: str) -> None:
        """Mark ``key`` processed; re-queue it if it was added while in flight (still respecting
        its backoff, should ``retry`` have been called before ``done``)."""
        self._processing.discard(key)
        since = self._dirty_while_processing.pop(key, None)
        if since is not None:
            self.add(key, since=since)
