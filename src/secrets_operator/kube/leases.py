"""Leader election on a coordination.k8s.io/v1 Lease, after client-go's tools/leaderelection.

- A Lease is held by another while ``observed_at + leaseDurationSeconds > now``: ``observed_at`` is
  the *local monotonic* time at which this replica last saw the record change. Remote timestamps
  are written (for humans and other tools) but never trusted: clocks skew.
- Acquire and renew are UPDATEs carrying the last seen resourceVersion: two candidates cannot
  both win (the loser gets 409). ``leaseTransitions`` grows by one on every change of holder.
- The leader renews every RetryPeriod. If no renewal succeeds for RenewDeadline it stops leading:
  its work is cancelled, and :meth:`LeaderElector.may_write` turns false at that instant, so no
  write *starts* afterwards. Because RenewDeadline < LeaseDuration, it has stopped before any
  other replica may consider the Lease expired.
- On a graceful stop the leader's work is cancelled first, then the Lease is released
  (holder empty, duration 1 s).
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
from typing import Any, NoReturn

import anyio

from secrets_operator import metrics
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.kube.informer import Informer

log = logging.getLogger(__name__)

MICROTIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
Clock = Callable[[], float]
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
        if record is None:
            self.record = None
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

    def release(self, now: datetime.datetime) -> LeaseRecord | None:
        """The record that gives the Lease up at once (client-go: empty holder, 1 s duration)."""
        if self.record is None:
            return None
        stamp = format_microtime(now)
        return dataclasses.replace(
            self.record, holder="", duration_seconds=1, acquire_time=stamp, renew_time=stamp
        )


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

    def _on_lease_change(self, key: str, old: LeaseRecord | None, new: LeaseRecord | None) -> None:
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
                if self.leading:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(self.retry_period):
                        await self._release()
                self._set_leading(False, "released")
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
            if await self._try_acquire_or_renew():
                self._set_leading(True, "acquired")
                return
            wait = self.retry_period * random.uniform(1.0, 1.2)
            if self.observation.record is not None and self.observation.record.holder:
                wait = min(wait, self.observation.expires_in() + 0.001)
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
            await anyio.sleep(self.retry_period)
            while True:
                self.heartbeat = self.clock()
                remaining = self._renewed_at + self.renew_deadline - self.clock()
                if remaining <= 0:
                    log.warning(
                        "could not renew the Lease within the renew deadline",
                        extra={"identity": self.identity},
                    )
                    return
                renewed = False
                with anyio.move_on_after(remaining):
                    renewed = await self._try_acquire_or_renew()
                if renewed:
                    break
                holder = self.observation.record.holder if self.observation.record else ""
                if holder and holder != self.identity and self.observation.held_by_other(self.identity):
                    log.warning("the Lease is held by another replica", extra={"holder": holder})
                    return
                await anyio.sleep(min(self.retry_period / 4, max(0.0, remaining)))

    async def _current(self) -> LeaseRecord | None:
        """The Lease as last seen by the watch, or by a GET when the watch has not synced."""
        if self.leading and self.observation.record is not None:
            return self.observation.record
        if self.informer.synced.is_set():
            return self.informer.store.get(f"{self.namespace}/{self.name}")
        try:
            return LeaseRecord.from_json(await self.kube.request("GET", f"{self.path}/{self.name}"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _try_acquire_or_renew(self) -> bool:
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
                created = await self.kube.request("POST", self.path, body=body, timeout=self.retry_period * 2)
                self.observation.observe(LeaseRecord.from_json(created))
                self._renewed_at = started
                return True
            self.observation.observe(current)
            if self.observation.held_by_other(self.identity):
                return False
            record = self.observation.claim(self.identity, self._duration_seconds, self.wall_clock())
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "resourceVersion": current.resource_version,
                },
                "spec": record.spec(),
            }
            updated = await self.kube.request(
                "PUT", f"{self.path}/{self.name}", body=body, timeout=self.retry_period * 2
            )
        except ApiError as exc:
            if exc.status == 409 and self.leading:
                # Our cached resourceVersion is stale (or someone else wrote): read it fresh next time.
                self.observation.observe(await self._get_or_none())
            elif exc.status not in (409,):
                log.warning("Lease request failed", extra={"error": str(exc)})
            return False
        self.observation.observe(LeaseRecord.from_json(updated))
        self._renewed_at = started
        return True

    async def _get_or_none(self) -> LeaseRecord | None:
        try:
            return LeaseRecord.from_json(await self.kube.request("GET", f"{self.path}/{self.name}"))
        except ApiError:
            return None

    async def _release(self) -> None:
        record = self.observation.release(self.wall_clock())
        if record is None:
            return
        self._renewed_at = -math.inf  # may_write() is false from here on
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": record.resource_version,
            },
            "spec": record.spec(),
        }
        try:
            await self.kube.request("PUT", f"{self.path}/{self.name}", body=body, timeout=self.retry_period)
            log.info("released the Lease", extra={"lease": f"{self.namespace}/{self.name}"})
        except ApiError as exc:
            log.warning("could not release the Lease", extra={"error": str(exc)})
