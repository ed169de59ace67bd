"""The controller: events → work queue → plan → writer, gated by leadership.

This is the only module that joins the domain (``planning``, ``model``) to the Kubernetes
plumbing (``kube/``), through the pieces it owns:

- ``caches.Caches``: the informers and what is looked up in them;
- ``writing.Writer``: the leadership-guarded writes and the redaction of their errors;
- ``reporting.Reporter``: the copies gauges and the aggregated Events.

What stays here is control flow. *Triggers*: a namespace event enqueues that namespace, a copy
event its namespace, a blueprint event every namespace, a relist of copies and the resync timer
every namespace; events say only where to look, and which blueprints' pairs (``_scope``).
*Reconcile*: plan one namespace from the caches, then apply the plan's writes (an in-sync
namespace costs no request). *Leadership*: every replica
runs the caches; only the leader runs workers, and every write first checks that leadership is
still valid (the writer's guard).

Blueprint data never leaves the caches except in the body of a write to the API server.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

import anyio

from secrets_operator import metrics, pacing
from secrets_operator.caches import Caches, CopyKey
from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.kube.events import EventRecorder
from secrets_operator.kube.informer import Informer
from secrets_operator.model import Action, ActionKind, Blueprint, BlueprintRef, NamespaceInfo, NamespacePlan
from secrets_operator.pacing import NewNamespacePacing
from secrets_operator.planning import Policy, plan_namespace
from secrets_operator.queue import WorkQueue
from secrets_operator.reporting import Reporter
from secrets_operator.settings import Settings
from secrets_operator.writing import NotLeaderError, Writer, WrittenDifferentlyError, leadership_guard

__all__ = ["Controller", "NotLeaderError", "Outcome", "WrittenDifferentlyError", "leadership_guard"]

log = logging.getLogger(__name__)

REPORTING_CONTROLLER = "secrets-operator.io/secrets-operator"
#: Repeated failures of one namespace after which a Warning Event is recorded on the blueprint.
FAILURES_BEFORE_EVENT = 5


class Outcome(enum.StrEnum):
    """How a reconcile pass ended; the ``result`` of ``secrets_operator_reconciles_total``."""

    SUCCESS = "success"  # every write succeeded, or none was needed: the backoff resets
    ERROR = "error"  # a write failed: retried after the namespace's next backoff delay
    THROTTLED = "throttled"  # a write got 429: retried after Retry-After, the backoff kept as is


class Controller:
    """Caches, queue, workers and writer for one set of settings."""

    def __init__(self, settings: Settings, kube: Kube, *, identity: str) -> None:
        self.settings = settings
        self.policy: Policy = settings.policy
        self.kube = kube
        self.identity = identity
        self.queue = WorkQueue()
        # Read when scraped, so never stale (lead() replaces the queue: read through self).
        metrics.QUEUE_DEPTH.set_function(lambda: len(self.queue))
        metrics.QUEUE_IN_PROGRESS.set_function(lambda: self.queue.in_progress())
        self.active = False  # True while this replica leads and runs workers
        self.caches = Caches(
            kube,
            self.policy,
            on_namespace=self._namespace_changed,
            on_blueprint=self._blueprint_changed,
            on_copy=self._copy_changed,
            on_copies_relisted=self._copies_relisted,
        )
        self.writer = Writer(kube, blueprints=self.caches.blueprints)
        self.events = EventRecorder(
            kube, reporting_controller=REPORTING_CONTROLLER, reporting_instance=identity
        )
        # Problems turn into one Event per blueprint and reason per window, not one per namespace.
        self.reporter = Reporter(self.events, blueprint=self.caches.blueprint)
        # namespace -> the blueprints whose writes failed in its last pass
        self.failed_blueprints: dict[str, set[BlueprintRef]] = {}
        # namespace -> the blueprints whose pairs its next pass plans (None: all); see _scope
        self._scopes: dict[str, set[BlueprintRef] | None] = {}
        # The delay before the first write into a new namespace, learned (see pacing), and
        # namespace -> when it was seen created, until its next pass.
        self.pacing = NewNamespacePacing()
        self._created: dict[str, float] = {}

    # -- what the command line and the web endpoints look at

    @property
    def namespaces(self) -> Informer[NamespaceInfo]:
        return self.caches.namespaces

    @property
    def informers(self) -> list[Informer[Any]]:
        return self.caches.informers

    @property
    def write_guard(self) -> Callable[[], float | None]:
        return self.writer.guard

    @write_guard.setter
    def write_guard(self, guard: Callable[[], float | None]) -> None:
        self.writer.guard = guard

    def synced(self) -> bool:
        return self.caches.synced()

    async def wait_synced(self) -> None:
        await self.caches.wait_synced()

    async def list_once(self) -> None:
        await self.caches.list_once()

    def blueprint(self, ref: BlueprintRef) -> Blueprint | None:
        return self.caches.blueprint(ref)

    def blueprints(self) -> dict[BlueprintRef, Blueprint | None]:
        return self.caches.blueprints()

    def stuck(self, *, threshold: float) -> list[str]:
        return self.caches.stuck(threshold=threshold)

    def describe_error(self, exc: ApiError) -> str:
        return self.writer.describe_error(exc)

    async def apply(self, action: Action, *, timed: Callable[[float], None] | None = None) -> None:
        await self.writer.apply(action, timed=timed)

    # -- triggers

    def _namespace_changed(self, key: str, old: NamespaceInfo | None, new: NamespaceInfo | None) -> None:
        if not self.active:
            return
        self._scope(key, None)
        if old is None and new is not None:
            now = time.monotonic()
            self._created[key] = now
            if self.pacing.delay:
                self.queue.add_after(key, self.pacing.delay, since=now)
            else:
                self.queue.add(key, since=now)
        else:
            self.queue.add(key)

    def _copy_changed(self, ref: BlueprintRef, namespace: str) -> None:
        if self.active:
            self._scope(namespace, ref)
            self.queue.add(namespace)

    def _scope(self, namespace: str, ref: BlueprintRef | None) -> None:
        """Note which blueprint's pairs the next pass of ``namespace`` must plan (None: all).

        A blueprint change then costs one pair per namespace, not one per blueprint and
        namespace. A pass with no note plans every blueprint, and every re-queue for a reason of
        the controller's own (a retry, a prune recheck, a Retry-After hold) notes "all", so that a
        narrow note from an event in the meantime never hides a pair that still needs work.
        """
        if ref is None:
            self._scopes[namespace] = None
        elif namespace not in self._scopes:
            self._scopes[namespace] = {ref}
        else:
            scoped = self._scopes[namespace]
            if scoped is not None:
                scoped.add(ref)

    def _copies_relisted(self, key: CopyKey) -> None:
        """A relist compares with the cache, and a copy written while the watch was down never
        reached the cache: written and deleted meanwhile, it shows no difference. Planning from
        the fresh cache finds it; namespaces in sync cost no request."""
        if self.active:
            log.info("copies relisted; checking every namespace", extra={"kind": str(key[0]), "copy": key[1]})
            self.enqueue_all(self.caches.copy_owner[key])

    def _blueprint_changed(self, key: str, old: Blueprint | None, new: Blueprint | None) -> None:
        either = new or old
        kind = str(either.ref.kind) if either is not None else ""
        if new is None:
            log.warning(
                f"blueprint deleted; its copies will be pruned in {self.policy.prune_grace_seconds:g} s "
                "unless it returns"
                if self.policy.prune
                else "blueprint does not exist; copies are kept and will follow it once it exists",
                extra={"blueprint": key, "kind": kind},
            )
        elif old is None or old.hash != new.hash:
            # The resourceVersion, not the content hash: a hash of a weak secret can be brute-forced.
            log.info(
                "blueprint observed",
                extra={
                    "blueprint": key,
                    "kind": kind,
                    "resource_version": new.resource_version,
                    "type": new.type,
                },
            )
        if self.active and either is not None:
            self.enqueue_all(either.ref)

    def enqueue_all(self, ref: BlueprintRef | None = None) -> None:
        """Every namespace, for one blueprint's pairs (``ref``) or for all of them."""
        now = time.monotonic()
        for name in self.namespaces.store:
            self._scope(name, ref)
            self.queue.add(name, since=now)

    # -- planning

    def plan(self, namespace: str, only: set[BlueprintRef] | None = None) -> NamespacePlan:
        """The namespace's plan, for the pairs of ``only`` (None: every blueprint)."""
        blueprints = self.blueprints() if only is None else {ref: self.blueprint(ref) for ref in only}
        return plan_namespace(
            self.policy,
            namespace=self.namespaces.store.get(namespace),
            name=namespace,
            blueprints=blueprints,
            copies=self.caches.copies(namespace, only),
            missing_for=self.caches.missing_for(blueprints),
        )

    def plan_all(self) -> list[NamespacePlan]:
        return [self.plan(name) for name in sorted(self.namespaces.store)]

    async def _report_events(self) -> NoReturn:
        """Turn the digest into Events, off the write path (the recorder sends them)."""
        while True:
            await anyio.sleep(1.0)
            self.reporter.emit_due()

    # -- reconcile and workers

    async def reconcile(self, namespace: str, since: float) -> Outcome:
        """Make one namespace right; SUCCESS when every write succeeded (or none was needed).

        A write answered with 429 stops the pass and holds the namespace for the server's
        Retry-After: THROTTLED, which neither resets the backoff (as a success would) nor adds to
        it. The blueprints whose writes failed are left in ``failed_blueprints``.
        """
        only = self._scopes.pop(namespace, None)
        created = self._created.pop(namespace, None)
        # Its first create tells whether this operator outran the API server's view of it.
        racing = created is not None and time.monotonic() - created < pacing.FRESH_SECONDS
        plan = self.plan(namespace, only)
        try:
            # A blueprint found back leaves the plan's deletes; the others are confirmed in turn.
            while not await self._prunes_confirmed(plan):
                plan = self.plan(namespace, only)
        except ApiError as exc:
            self._scope(namespace, None)
            if exc.status == 429:  # a saturated server: wait as it asked, like a throttled write
                self.queue.hold(namespace, max(exc.retry_after, 1.0), since=since)
                return Outcome.THROTTLED
            log.warning(
                "could not read the blueprint again before pruning; will retry",
                extra={"namespace": namespace, "error": self.describe_error(exc)},
            )
            return Outcome.ERROR
        if plan.recheck_after is not None:  # a prune grace ends then
            self._scope(namespace, None)
            self.queue.add_after(namespace, plan.recheck_after)
        self.reporter.plan(plan, only)
        ok = True
        failed = self.failed_blueprints[namespace] = set()
        for action in plan.actions:
            fields = {
                "namespace": action.namespace,
                "kind": str(action.blueprint.kind),
                "copy": action.name,
                "blueprint": str(action.blueprint),
            }
            # Only the first create tells (the next are sent after the server had the namespace),
            # and only if it succeeds (a failure's time says nothing about the wait).
            first_create = racing and action.kind == ActionKind.CREATE
            if first_create:
                racing = False
            try:
                await self.apply(action, timed=self._paced if first_create else None)
            except WrittenDifferentlyError:
                ok = False
                failed.add(action.blueprint)
                metrics.WRITES.labels(
                    kind=str(action.blueprint.kind), action=str(action.kind), result="error"
                ).inc()
                log.warning(
                    "the API server stored different data than written (a mutating webhook?); will retry",
                    extra={**fields, "reason": action.reason},
                )
                continue
            except ApiError as exc:
                if _namespace_terminating(exc):
                    log.debug("namespace is terminating; skipped", extra=fields)
                    metrics.WRITES.labels(
                        kind=str(action.blueprint.kind), action=str(action.kind), result="skipped"
                    ).inc()
                    continue
                ok = False
                if exc.status == 429:
                    metrics.WRITES.labels(
                        kind=str(action.blueprint.kind), action=str(action.kind), result="throttled"
                    ).inc()
                    self._scope(namespace, None)  # the writes after this one were not tried
                    self.queue.hold(namespace, max(exc.retry_after, 1.0), since=since)
                    log.info("throttled by the API server", extra={**fields, "retry_in": exc.retry_after})
                    return Outcome.THROTTLED  # already held: no extra backoff on top of Retry-After
                failed.add(action.blueprint)
                # 409: a precondition failed or the copy exists (a newer state to plan from); 404:
                # the copy or the namespace is gone (the cache is behind). Neither is the copy's fault.
                result = {409: "conflict", 404: "not_found"}.get(exc.status, "error")
                metrics.WRITES.labels(
                    kind=str(action.blueprint.kind), action=str(action.kind), result=result
                ).inc()
                level = logging.INFO if result != "error" else logging.WARNING
                log.log(
                    level,
                    f"{action.kind} failed; will retry",
                    extra={**fields, "error": self.describe_error(exc), "reason": action.reason},
                )
                continue
            metrics.WRITES.labels(
                kind=str(action.blueprint.kind), action=str(action.kind), result="success"
            ).inc()
            metrics.PROPAGATION.observe(time.monotonic() - since)
            log.info(
                f"{action.kind}d copy" if action.kind != ActionKind.REPLACE else "replaced copy",
                extra={**fields, "reason": action.reason},
            )
        return Outcome.SUCCESS if ok else Outcome.ERROR

    def _paced(self, seconds: float) -> None:
        """The API server's answer to the first create into a new namespace took ``seconds``."""
        self.pacing.observe(seconds)
        metrics.NEW_NAMESPACE_DELAY.set(self.pacing.delay)

    async def _prunes_confirmed(self, plan: NamespacePlan) -> bool:
        """False when a blueprint whose copies the plan deletes turns out to exist after all."""
        refs = {action.blueprint for action in plan.actions if action.kind == ActionKind.DELETE}
        for ref in sorted(refs):
            if self.blueprint(ref) is None and not await self.caches.confirm_missing(ref):
                return False
        return True

    async def _worker(self) -> None:
        while True:
            namespace, since = await self.queue.get()
            try:
                outcome = await self.reconcile(namespace, since)
            except NotLeaderError:
                # Leadership lapsed; the elector is about to cancel this work. Should it not (the
                # renewal succeeded after all), the namespace is simply tried again.
                self._scope(namespace, None)
                self.queue.add_after(namespace, 0.5, since=since)
                await anyio.sleep(0.5)
                continue
            except Exception:
                log.exception("reconcile crashed; will retry", extra={"namespace": namespace})
                outcome = Outcome.ERROR
            finally:
                self.queue.done(namespace)
            failed = self.failed_blueprints.pop(namespace, set())
            metrics.RECONCILES.labels(result=str(outcome)).inc()
            if outcome == Outcome.SUCCESS:
                self.queue.forget(namespace)
            if outcome != Outcome.ERROR:
                continue
            self._scope(namespace, None)  # a retry plans every pair: a narrower event must not hide it
            self.queue.retry(namespace)
            if self.queue.failures(namespace) == FAILURES_BEFORE_EVENT:
                self._record_failing(namespace, failed)

    def _record_failing(self, namespace: str, failed: set[BlueprintRef]) -> None:
        """Count the namespace against the blueprints whose writes failed (all of them, if the
        pass crashed before it could tell)."""
        for ref in failed or [ref for ref, blueprint in self.blueprints().items() if blueprint]:
            self.reporter.failing(
                ref,
                namespace,
                f"{FAILURES_BEFORE_EVENT} attempts in a row failed; retrying with backoff (up to "
                f"{self.queue.max_delay:.0f}s)",
            )

    async def _resync(self) -> None:
        while True:
            await anyio.sleep(self.settings.resync_seconds)
            log.info("periodic resync", extra={"namespaces": len(self.namespaces.store)})
            self.enqueue_all()

    async def lead(self) -> None:
        """Leader work: reconcile everything once, then follow events, until cancelled."""
        await self.wait_synced()
        self.queue = WorkQueue()
        self._scopes = {}
        self._created = {}
        self.reporter.reset()
        now = time.monotonic()
        for ref, blueprint in self.blueprints().items():
            if blueprint is None:  # missing since before this replica watched: the grace starts now
                self.caches.missing_since.setdefault(ref, now)
        self.active = True
        try:
            self.enqueue_all()
            async with anyio.create_task_group() as tasks:
                for _ in range(self.settings.max_concurrent_writes):
                    tasks.start_soon(self._worker)
                tasks.start_soon(self._resync)
                tasks.start_soon(self._report_events)
                tasks.start_soon(self.events.run)
        finally:
            self.active = False
            self.reporter.reset()

    async def run_informers(self) -> None:
        await self.caches.run()


def _namespace_terminating(exc: ApiError) -> bool:
    return exc.status in (403, 409) and "being terminated" in exc.message
