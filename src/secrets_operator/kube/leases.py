"""Leader election on a coordination.k8s.io/v1 Lease, after client-go's tools/leaderelection.

- A Lease is held by another while ``observed_at + leaseDurationSeconds > now``: ``observed_at`` is
  the *local monotonic* time at which this replica last saw the record change. Remote timestamps
  are written (for humans and other tools) but never trusted: clocks skew.
- Acquire and renew are merge PATCHes carrying the last seen resourceVersion: two candidates
  cannot both win (the loser gets 409). ``leaseTransitions`` grows by one on every change of holder.
- The leader renews every RetryPeriod. If no renewal succeeds for RenewDeadline it stops leading:
  its work is cancelled, and :meth:`LeaderElector.may_write` turns false at that instant, so no
  write *starts* afterwards, and :meth:`LeaderElector.write_budget` times out every write still
  in flight at that instant too. Because RenewDeadline < LeaseDuration, it has stopped before any
  other replica may consider the Lease expired.
- On a graceful stop the leader's work is cancelled first, then the Lease is released
  (holder empty, duration 1 s).
- The elector is given a Kube of its own (``CLIENT_*``): renewals never queue behind writes.
- Unlike client-go, candidates also *watch* the Lease: a release is seen within milliseconds,
  and an expiry is acted on at the exact moment it happens rather than at the next poll.

Not used: kubernetes_asyncio.leaderelection, whose leader work survives losing the lease, which
never releases, never writes leaseTransitions and mixes local time with a "Z" suffix.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, NoReturn

import anyio

from secrets_operator import metrics
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.kube.informer import Informer

log = logging.getLogger(__name__)

MICROTIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: Leader election's own client budget. As controller-runtime gives leader election a client of
#: its own, the elector gets its own Kube (token bucket and connection pool): a renewal must never
#: wait behind a fan-out of writes at the shared API_QPS, which would delay it past RenewDeadline.
#: Its own traffic is one watch plus at most one request at a time, about one per RetryPeriod
#: (four while renewals fail); this bucket only stops a runaway loop.
CLIENT_QPS = 5.0
CLIENT_BURST = 10
CLIENT_CONNECTIONS = 4
CLIENT_USER_AGENT = "secrets-operator/leader-election"
Clock = Callable[[], float]
Attempt = Literal["acquired", "held", "failed"]
WallClock = Callable[[], datetime.datetime]


def format_microtime(moment: datetime.datetime) -> str:
    """UTC with exactly six fractional digits, as the API's MicroTime requires."""
    return moment.astimezone(datetime.UTC).strftime(MICROTIME_FORMAT)


def parse_microtime(text: str) -> datetime.datetime:
    """Parse MicroTime or Time (with or without fractional seconds)."""
    for pattern in (MICROTIME_FORMAT, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, pattern).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return datetime.datetime.fromisoformat(text)


def _older(record: LeaseRecord, than: LeaseRecord | None) -> bool:
    """Whether ``record`` is an older version than ``than``.

    resourceVersions are opaque to clients, but every etcd-backed API server issues increasing
    integers; when either is not one, nothing is assumed and the newer observation wins.
    """
    if than is None or not record.resource_version.isdigit() or not than.resource_version.isdigit():
        return False
    return int(record.resource_version) < int(than.resource_version)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """The election-relevant part of a Lease."""

    holder: str
    duration_seconds: int
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0
    resource_version: str = ""

    @classmethod
    def from_json(cls, obj: JSON) -> LeaseRecord:
        spec = obj.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime") or "",
            renew_time=spec.get("renewTime") or "",
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=obj.get("metadata", {}).get("resourceVersion", ""),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time or None,
            "renewTime": self.renew_time or None,
            "leaseTransitions": self.transitions,
        }

    def same_content(self, other: LeaseRecord | None) -> bool:
        return other is not None and dataclasses.replace(self, resource_version="") == dataclasses.replace(
            other, resource_version=""
        )


class LeaseObservation:
    """What this replica knows of the Lease, timed by its own monotonic clock (pure; unit-tested)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.record: LeaseRecord | None = None
        self.observed_at = -math.inf

    def observe(self, record: LeaseRecord | None) -> None:
        """Take in a version of the Lease, from a watch, a GET or our own write.

        Only forward: a version older than the one held (a lagging watch after a fresh GET) is
        ignored, or flipping between the two would restart the expiry clock forever.
        """
        if record is None:
            self.record = None
            return
        if _older(record, self.record):
            return
        if not record.same_content(self.record):
            self.observed_at = self.clock()
        self.record = record

    def held_by_other(self, identity: str) -> bool:
        record = self.record
        if record is None or not record.holder or record.holder == identity:
            return False
        return self.observed_at + record.duration_seconds > self.clock()

    def expires_in(self) -> float:
        """Seconds until the observed holder's claim lapses (0 if it already has)."""
        if self.record is None or not self.record.holder:
            return 0.0
        return max(0.0, self.observed_at + self.record.duration_seconds - self.clock())

    def claim(self, identity: str, duration_seconds: int, now: datetime.datetime) -> LeaseRecord:
        """The record to write to take or keep the Lease."""
        stamp = format_microtime(now)
        old = self.record
        if old is not None and old.holder == identity:
            return dataclasses.replace(old, duration_seconds=duration_seconds, renew_time=stamp)
        transitions = old.transitions + 1 if old is not None else 0
        return LeaseRecord(
            identity, duration_seconds, stamp, stamp, transitions, old.resource_version if old else ""
        )


def released(record: LeaseRecord, now: datetime.datetime) -> LeaseRecord:
    """``record`` given up at once (client-go: empty holder, 1 s duration), same resourceVersion."""
    stamp = format_microtime(now)
    return dataclasses.replace(record, holder="", duration_seconds=1, acquire_time=stamp, renew_time=stamp)


class LeaderElector:
    """Campaigns for the Lease; runs ``lead`` while leading and cancels it the moment it is not."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        clock: Clock = time.monotonic,
        wall_clock: WallClock = utcnow,
    ) -> None:
        if not lease_duration > renew_deadline > 1.2 * retry_period:
            raise ValueError("need lease_duration > renew_deadline > 1.2 x retry_period")
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = (
            lease_duration,
            renew_deadline,
            retry_period,
        )
        self.clock, self.wall_clock = clock, wall_clock
        self.observation = LeaseObservation(clock)
        self.leading = False
        self._renewed_at = -math.inf  # monotonic start of the last successful acquire/renew
        self.heartbeat = clock()
        self._changed = anyio.Event()
        self._stale = False
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.informer: Informer[LeaseRecord] = Informer(
            kube,
            name="lease",
            path=self.path,
            query=[("fieldSelector", f"metadata.name={name}")],
            trim=LeaseRecord.from_json,
            on_change=self._on_lease_change,
        )

    @property
    def _duration_seconds(self) -> int:
        return math.ceil(self.lease_duration)

    def may_write(self) -> bool:
        """True only while leading and within RenewDeadline of the last successful renewal."""
        return self.leading and self.clock() < self._renewed_at + self.renew_deadline

    def write_budget(self) -> float | None:
        """None when this replica may not write; else how long a write started now may take.

        That is the time until the renew deadline (from the start of the last successful
        renewal): a write must finish, or be abandoned, by then. Not until the Lease could expire
        for others: LeaseDuration - RenewDeadline is the margin for clock skew between replicas
        (their monotonic clocks may run at different rates), and a write in flight must not
        spend it.
        """
        if not self.may_write():
            return None
        return max(0.0, self._renewed_at + self.renew_deadline - self.clock())

    def _on_lease_change(self, key: str, old: LeaseRecord | None, new: LeaseRecord | None) -> None:
        if self.leading and new is not None and new.holder == self.identity:
            # Our own renewals, possibly older than the record our last write returned: keep that.
            return
        self.observation.observe(new)
        self._changed.set()

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> NoReturn:
        """Campaign forever; on cancellation (shutdown), stop ``lead`` and then release the Lease."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.informer.run)
            try:
                while True:
                    await self._acquire()
                    await self._lead_until_lost(lead)
            finally:
                done = False
                if self.leading:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(self.retry_period) as limit:
                        done = await self._release()
                    if limit.cancelled_caught:
                        log.warning(
                            "releasing the Lease took longer than the retry period; it will expire instead"
                        )
                self._set_leading(False, "released" if done else "stopped")
        raise AssertionError("unreachable")  # pragma: no cover

    def _set_leading(self, leading: bool, event: str) -> None:
        if leading != self.leading:
            metrics.LEADER_TRANSITIONS.labels(event=event).inc()
            log.info(
                "started leading" if leading else f"stopped leading ({event})",
                extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity},
            )
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)

    async def _acquire(self) -> None:
        while True:
            self.heartbeat = self.clock()
            attempt, retry_after = await self._attempt()
            if attempt == "acquired":
                self._set_leading(True, "acquired")
                return
            wait = self.retry_period * random.uniform(1.0, 1.2)
            if attempt == "held":
                # Wake up exactly when the holder's claim lapses (or earlier, on a Lease event).
                wait = min(wait, self.observation.expires_in() + 0.001)
            else:
                # A failed attempt (409 from a stale view, 429, 5xx, no connection) waits a full,
                # jittered RetryPeriod: never a tight loop against the API server.
                wait = max(wait, retry_after)
            with anyio.move_on_after(wait):
                await self._changed.wait()
            self._changed = anyio.Event()

    async def _lead_until_lost(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async with anyio.create_task_group() as work:
            work.start_soon(lead)
            await self._renew_until_lost()
            work.cancel_scope.cancel()
        self._set_leading(False, "lost")

    async def _renew_until_lost(self) -> None:
        while True:
            # The next renewal is due a RetryPeriod from now, unless the deadline comes first: an
            # acquisition has no deadline of its own, and one that took longer than RenewDeadline -
            # RetryPeriod would otherwise keep the work running past the deadline.
            until_deadline = self._renewed_at + self.renew_deadline - self.clock()
            await anyio.sleep(min(self.retry_period, max(0.0, until_deadline)))
            while True:
                self.heartbeat = self.clock()
                remaining = self._renewed_at + self.renew_deadline - self.clock()
                if remaining <= 0:
                    log.warning(
                        "could not renew the Lease within the renew deadline",
                        extra={"identity": self.identity},
                    )
                    return
                attempt: Attempt = "failed"
                with anyio.move_on_after(remaining):
                    attempt, _ = await self._attempt()
                if attempt == "acquired":
                    break
                if attempt == "held":
                    holder = self.observation.record.holder if self.observation.record else ""
                    log.warning("the Lease is held by another replica", extra={"holder": holder})
                    return
                remaining = self._renewed_at + self.renew_deadline - self.clock()
                await anyio.sleep(min(self.retry_period / 4, max(0.0, remaining)))

    async def _get(self) -> LeaseRecord | None:
        try:
            found = await self.kube.request("GET", f"{self.path}/{self.name}", timeout=self.retry_period * 2)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return LeaseRecord.from_json(found)

    async def _current(self) -> LeaseRecord | None:
        """The Lease as this replica last wrote it, else as the watch shows it, else by GET.

        After a 409 the next attempt always GETs: the watch may be behind.
        """
        if self._stale:
            fresh = await self._get()  # raises on failure: the flag stays until a read succeeds
            self._stale = False
            return fresh
        if self.observation.record is not None or self.informer.synced.is_set():
            # Fed by the watch, by GETs and by our own writes, and never moving backwards.
            return self.observation.record
        return await self._get()

    async def _attempt(self) -> tuple[Attempt, float]:
        """One acquire-or-renew: ``acquired``, ``held`` (by another) or ``failed`` (+ Retry-After)."""
        started = self.clock()
        try:
            current = await self._current()
            if current is None:
                record = self.observation.claim(self.identity, self._duration_seconds, self.wall_clock())
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": record.spec(),
                }
                written = await self.kube.request("POST", self.path, body=body, timeout=self.retry_period * 2)
            else:
                self.observation.observe(current)
                if self.observation.held_by_other(self.identity):
                    return "held", 0.0
                record = self.observation.claim(self.identity, self._duration_seconds, self.wall_clock())
                written = await self._write(record, current.resource_version)
        except ApiError as exc:
            if exc.status == 409:
                self._stale = True  # someone else wrote, or our view is behind: read it fresh next time
            else:
                log.warning("Lease request failed", extra={"error": str(exc)})
            return "failed", exc.retry_after if exc.status == 429 else 0.0
        except Exception:
            log.exception("unexpected error in leader election")
            return "failed", 0.0
        self.observation.observe(LeaseRecord.from_json(written))
        self._renewed_at = started
        return "acquired", 0.0

    async def _write(self, record: LeaseRecord, resource_version: str) -> JSON:
        """Update the Lease's spec only (others' labels and annotations stay), if unchanged since read."""
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": record.spec()}
        return await self.kube.request(
            "PATCH",
            f"{self.path}/{self.name}",
            body=patch,
            content_type="application/merge-patch+json",
            timeout=self.retry_period * 2,
        )

    async def _release(self) -> bool:
        """Give the Lease up (holder empty, 1 s duration); True when the API server took it.

        A renewal cancelled by the shutdown may have reached the API server without its answer
        reaching us, so our resourceVersion is one behind and the release gets 409: then read the
        Lease and, if it is still ours, release that version. Otherwise a standby would wait out
        the whole lease duration.
        """
        current = self.observation.record
        if current is None or current.holder != self.identity:
            return False  # never release a Lease another replica holds by now
        self._renewed_at = -math.inf  # may_write() is false from here on
        try:
            try:
                await self._write(released(current, self.wall_clock()), current.resource_version)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                fresh = await self._get()
                if fresh is None or fresh.holder != self.identity:
                    return False  # taken over (or deleted) meanwhile: nothing of ours to release
                await self._write(released(fresh, self.wall_clock()), fresh.resource_version)
        except ApiError as exc:
            log.warning("could not release the Lease; it will expire instead", extra={"error": str(exc)})
            return False
        except Exception:  # shutting down: report, never replace the cancellation with a crash
            log.exception("could not release the Lease; it will expire instead")
            return False
        log.info("released the Lease", extra={"lease": f"{self.namespace}/{self.name}"})
        return True
