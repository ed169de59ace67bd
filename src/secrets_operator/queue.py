"""A de-duplicating work queue of namespace names with per-key exponential retry backoff.

Events only say *which namespace to look at*, so many events for one namespace collapse into
one pending key. A key being processed is never handed to a second worker: if it is added
again meanwhile, it is queued once more when the first worker is done (nothing is lost, nothing
runs twice at once). Failed keys come back after a per-key delay that doubles on each failure
and resets on success, like client-go's workqueue.

The queue also remembers when each key was first added, so the controller can measure the
time from an observed change to the write that answered it.
"""

from __future__ import annotations

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
        self._delayed: dict[str, float] = {}  # key -> due time
        self._delayed_since: dict[str, float] = {}  # key -> when the change behind a delay was seen
        self._wakeup = anyio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._pending) + len(self._delayed)

    def add(self, key: str, *, since: float | None = None) -> None:
        """Queue ``key`` now (no-op if already pending)."""
        first = self.clock() if since is None else since
        if key in self._processing:
            self._dirty_while_processing.setdefault(key, first)
            return
        if key not in self._pending:
            self._pending[key] = min(first, self._delayed_since.pop(key, first))
            self._delayed.pop(key, None)
            self._wakeup.set()

    def add_after(self, key: str, delay: float, *, since: float | None = None) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier plain ``add`` wins).

        ``since`` is when the change was observed, if the delay is part of reacting to it.
        """
        if key in self._pending:
            return
        due = self.clock() + delay
        self._delayed[key] = min(due, self._delayed.get(key, due))
        if since is not None:
            self._delayed_since.setdefault(key, since)
        self._wakeup.set()

    def retry(self, key: str) -> float:
        """Queue ``key`` again after its next backoff delay; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Cap the exponent: 2.0**1024 overflows, and a key may fail for days.
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(failures, 64))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff after a success."""
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def _promote_due(self) -> float | None:
        """Move due delayed keys to pending; return seconds until the next one is due."""
        now = self.clock()
        next_due: float | None = None
        for key, due in list(self._delayed.items()):
            if due <= now:
                del self._delayed[key]
                since = self._delayed_since.pop(key, now)
                if key in self._processing:
                    self._dirty_while_processing.setdefault(key, since)
                elif key not in self._pending:
                    self._pending[key] = since
            else:
                next_due = due - now if next_due is None else min(next_due, due - now)
        return next_due

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
        """Mark ``key`` processed; re-queue it if it was added while in flight."""
        self._processing.discard(key)
        since = self._dirty_while_processing.pop(key, None)
        if since is not None:
            self.add(key, since=since)
