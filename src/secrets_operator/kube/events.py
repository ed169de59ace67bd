"""Kubernetes Events (events.k8s.io/v1) about objects, sent off the caller's path, never a flood.

A condition that persists (a conflict, a refused Secret type) is seen again and again; a
condition that hits thousands of namespaces at once is seen thousands of times. Events cost
API requests on the same rate-limit budget as the writes that matter, and etcd space. So:

- ``emit`` never blocks and never sends: it filters, then puts the Event on a bounded queue that
  ``run`` (its own task) drains. A full queue drops the Event and counts it
  (``secrets_operator_events_total{result="dropped"}``): a reconcile never waits for an Event.
- The same note about the same object is said again only after ``repeat_after`` seconds.
- A spam filter like client-go's event correlator (``EventSourceObjectSpamFilter``): a token
  bucket per source, object, type and reason (client-go has no reason in the key; with it, one
  problem's stream cannot starve another's first report), ``burst`` Events at once, then one
  per ``refill_every`` seconds.

Aggregating many similar conditions into one Event (one per blueprint and reason, with a count)
is the caller's job: this module knows nothing of what the objects are.

Callers pass the ``note`` text; it must never contain Secret data (reporting.py builds notes
from names and reasons only, and quotes and cuts short any value read from an object it does not
own: ``planning.untrusted``). The API server refuses (422) an Event whose note is over 1 kB, that
is 1,024 bytes of UTF-8, not characters: ``emit`` cuts a longer note to fit (:func:`fit_note`), so
a long non-ASCII value cannot cost the whole aggregated Event. Sending is best effort: a failure is
logged and counted, never raised.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Literal, NoReturn

import anyio

from secrets_operator import metrics
from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.kube.leases import format_microtime, utcnow

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]

#: The API server's limit on an events.k8s.io/v1 Event's note, in bytes of UTF-8.
NOTE_LIMIT = 1024
#: Ends a note cut to fit, within the limit.
CUT_MARK = "…"


def fit_note(note: str, limit: int = NOTE_LIMIT) -> str:
    """``note`` if it is at most ``limit`` bytes of UTF-8, else its longest start that, with
    :data:`CUT_MARK`, is: cut between characters, never inside one."""
    encoded = note.encode("utf-8", "replace")  # a lone surrogate would be refused: sent as "?"
    if len(encoded) <= limit:
        return encoded.decode()
    room = limit - len(CUT_MARK.encode())
    return encoded[:room].decode("utf-8", "ignore") + CUT_MARK  # "ignore": the character cut in two


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


@dataclasses.dataclass(frozen=True)
class _Event:
    regarding: ObjectRef
    type: EventType
    reason: str
    action: str
    note: str


class SpamFilter:
    """A token bucket per key (client-go: burst 25, one token per 5 minutes), least recently
    used keys forgotten beyond ``memory``."""

    def __init__(
        self,
        *,
        burst: int = 25,
        refill_every: float = 300.0,
        memory: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.refill_every, self.memory, self.clock = burst, refill_every, memory, clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: Hashable) -> bool:
        """Take a token for ``key`` if it has one."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) / self.refill_every)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.memory:
            self._buckets.popitem(last=False)
        return allowed


class EventRecorder:
    """Creates Events as ``reporting_controller``/``reporting_instance``; see the module docstring."""

    def __init__(
        self,
        kube: Kube,
        *,
        reporting_controller: str,
        reporting_instance: str,
        repeat_after: float = 1800.0,
        memory: int = 10_000,
        queue_size: int = 1000,
        burst: int = 25,
        refill_every: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.reporting_controller, self.reporting_instance = reporting_controller, reporting_instance
        self.repeat_after, self.memory, self.queue_size, self.clock = repeat_after, memory, queue_size, clock
        self.spam = SpamFilter(burst=burst, refill_every=refill_every, clock=clock)
        self._said: OrderedDict[tuple[ObjectRef, str, str], float] = OrderedDict()
        self._queue: collections.deque[_Event] = collections.deque()
        self._queued = anyio.Event()

    def emit(self, regarding: ObjectRef, *, type: EventType, reason: str, action: str, note: str) -> bool:
        """Queue an Event for ``run`` to send; never blocks. True when it was queued.

        ``note`` is cut to the API server's limit here (:func:`fit_note`), before it is compared
        with the notes said before.
        """
        note = fit_note(note)
        key = (regarding, reason, note)
        now = self.clock()
        last = self._said.get(key)
        if last is not None and now - last < self.repeat_after:
            metrics.EVENTS.labels(result="duplicate").inc()
            return False
        if len(self._queue) >= self.queue_size:
            metrics.EVENTS.labels(result="dropped").inc()
            log.warning("Event queue full; Event dropped", extra={"reason": reason})
            return False
        # Keyed by reason too (client-go keys by source and object only): a stream of one kind of
        # problem must not use up the budget that the first report of another kind needs.
        if not self.spam.allow((self.reporting_controller, self.reporting_instance, regarding, type, reason)):
            metrics.EVENTS.labels(result="rate_limited").inc()
            return False
        self._said[key] = now
        self._said.move_to_end(key)
        while len(self._said) > self.memory:
            self._said.popitem(last=False)
        self._queue.append(_Event(regarding, type, reason, action, note))
        self._queued.set()
        return True

    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> NoReturn:
        """Send queued Events, one at a time, forever."""
        while True:
            while not self._queue:
                self._queued = anyio.Event()
                await self._queued.wait()
            await self._send(self._queue.popleft())

    async def _send(self, event: _Event) -> None:
        regarding = event.regarding
        involved = {
            "apiVersion": regarding.api_version,
            "kind": regarding.kind,
            "namespace": regarding.namespace,
            "name": regarding.name,
        }
        if regarding.uid:
            involved["uid"] = regarding.uid
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # client-go's naming: the object's name and a unique suffix (generateName would need
            # a trailing character that is valid at the end of a DNS subdomain).
            "metadata": {
                "name": f"{regarding.name[:230]}.{time.time_ns():x}",
                "namespace": regarding.namespace,
            },
            "eventTime": format_microtime(utcnow()),
            "reportingController": self.reporting_controller,
            "reportingInstance": self.reporting_instance[:128],
            "action": event.action,
            "reason": event.reason,
            "regarding": involved,
            "note": event.note,  # fit_note'd by emit
            "type": event.type,
        }
        try:
            await self.kube.request(
                "POST", f"/apis/events.k8s.io/v1/namespaces/{regarding.namespace}/events", body=body
            )
        except ApiError as exc:
            metrics.EVENTS.labels(result="failed").inc()
            log.warning("could not record an Event", extra={"reason": event.reason, "error": str(exc)})
            return
        metrics.EVENTS.labels(result="sent").inc()
