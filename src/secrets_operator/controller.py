"""The controller: informers → work queue → plan → writer, gated by leadership.

This is the only module that joins the domain (``planning``, ``model``) to the Kubernetes
plumbing (``kube/``). Its pieces:

- *caches*: one informer for namespaces, one per blueprint (field selector on its name, in its
  namespace) and one per blueprint name for the copies across all namespaces (field selector
  ``metadata.name=<name>``, which lets RBAC restrict Secret access with ``resourceNames``). The
  copies' data is reduced to a hash as it arrives; only blueprints keep data.
- *triggers*: a namespace event enqueues that namespace, a copy event its namespace, a blueprint
  event every namespace, a relist of copies and the resync timer every namespace. Events say only
  where to look.
- *reconcile*: plan one namespace from the caches, then apply the plan's writes. An in-sync
  namespace costs no request at all.
- *leadership*: every replica runs the caches; only the leader runs workers, and every write
  first checks that leadership is still valid (``write_guard``).

Secret data never leaves the caches except in the body of a write to the API server.
"""

from __future__ import annotations

import enum
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import anyio

from secrets_operator import metrics, redaction, reporting
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.kube.events import EventRecorder, ObjectRef
from secrets_operator.kube.informer import Informer
from secrets_operator.model import (
    LAST_APPLIED_ANNOTATION,
    Action,
    ActionKind,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    CopyState,
    NamespaceInfo,
    NamespacePlan,
    Row,
)
from secrets_operator.planning import (
    Policy,
    content_hash,
    plan_namespace,
    relevant_copy_metadata,
    relevant_namespace_labels,
)
from secrets_operator.queue import WorkQueue
from secrets_operator.settings import Settings

log = logging.getLogger(__name__)

REPORTING_CONTROLLER = "secrets-operator.io/secrets-operator"
#: Repeated failures of one namespace after which a Warning Event is recorded on the blueprint.
FAILURES_BEFORE_EVENT = 5
#: Delay before the first write into a namespace the operator has just seen created. When a create
#: reaches kube-apiserver before its own NamespaceLifecycle admission informer has seen the new
#: namespace, admission sleeps 50 ms (missingNamespaceWait, k8s.io/apiserver
#: pkg/admission/plugin/namespace/lifecycle). Measured here: without this grace 9 of 500 copies
#: took 50-100 ms; with 5 ms none did (docs/performance.md).
NEW_NAMESPACE_GRACE = 0.005
#: Seconds a consistent read that found a blueprint absent lets prunes go without another read: the
#: workers pruning its copies at the end of the grace share one read instead of one per namespace.
PRUNE_CONFIRMATION_SECONDS = 1.0
_intern = sys.intern


class NotLeaderError(Exception):
    """Raised before a write when this replica may no longer write."""


def leadership_guard(budget: Callable[[], float | None]) -> Callable[[], float | None]:
    """A write guard from an elector's ``write_budget``: no budget means no write."""

    def guard() -> float | None:
        seconds = budget()
        if seconds is None:
            raise NotLeaderError
        return seconds

    return guard


class WrittenDifferentlyError(Exception):
    """The API server stored other data than the operator wrote (e.g. a mutating webhook)."""


class Outcome(enum.StrEnum):
    """How a reconcile pass ended; the ``result`` of ``secrets_operator_reconciles_total``."""

    SUCCESS = "success"  # every write succeeded, or none was needed: the backoff resets
    ERROR = "error"  # a write failed: retried after the namespace's next backoff delay
    THROTTLED = "throttled"  # a write got 429: retried after Retry-After, the backoff kept as is


# ---------------------------------------------------------------- trimming raw API objects


_NOTHING: Mapping[str, str] = {}  # shared by every object without relevant metadata; never mutated
_MAX_SHARED = 4096


def _strings(mapping: Mapping[str, Any] | None, *, drop: Iterable[str] = ()) -> dict[str, str]:
    if not mapping:
        return {}
    dropped = set(drop)
    return {_intern(k): _intern(str(v)) for k, v in mapping.items() if k not in dropped}


class Trimmer:
    """Reduces raw API objects to what planning can ever compare, for one (static) policy.

    Most namespaces and copies then share the same interned strings, key sets and the empty
    mapping, so the caches grow by little more than a small object per namespace and per copy.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._key_sets: dict[frozenset[str], frozenset[str]] = {}
        self._mappings: dict[frozenset[tuple[str, str]], Mapping[str, str]] = {}

    def _shared(self, mapping: dict[str, str]) -> Mapping[str, str]:
        """One instance per distinct content: the copies of a blueprint carry the same marks.

        Shared mappings are only ever read. Distinct contents are few (a handful per blueprint);
        the table is emptied if it ever grows past a bound, which costs sharing, not correctness.
        """
        if not mapping:
            return _NOTHING
        if len(self._mappings) >= _MAX_SHARED:
            self._mappings.clear()
            self._key_sets.clear()
        return self._mappings.setdefault(frozenset(mapping.items()), mapping)

    def namespace(self, obj: JSON) -> NamespaceInfo:
        metadata = obj["metadata"]
        terminating = obj.get("status", {}).get("phase") == "Terminating" or bool(
            metadata.get("deletionTimestamp")
        )
        labels = relevant_namespace_labels(metadata.get("labels") or {}, self.policy)
        return NamespaceInfo(
            name=_intern(metadata["name"]),
            labels=self._shared(_strings(labels)),
            terminating=terminating,
        )

    def copy(self, obj: JSON) -> CopyInfo:
        """Everything planning compares about a Secret, and none of its data."""
        metadata = obj["metadata"]
        secret_type = obj.get("type") or "Opaque"
        data = obj.get("data") or {}
        labels, annotations = relevant_copy_metadata(
            metadata.get("labels") or {}, metadata.get("annotations") or {}, self.policy
        )
        keys = frozenset(_intern(key) for key in data)
        return CopyInfo(
            namespace=_intern(metadata["namespace"]),
            name=_intern(metadata["name"]),
            resource_version=metadata.get("resourceVersion", ""),
            type=_intern(secret_type),
            immutable=bool(obj.get("immutable")),
            labels=self._shared(_strings(labels)),
            annotations=self._shared(_strings(annotations)),
            data_hash=_intern(content_hash(secret_type, data)),
            data_keys=self._key_sets.setdefault(keys, keys),
        )


def trim_blueprint(ref: BlueprintRef, obj: JSON) -> Blueprint:
    metadata = obj["metadata"]
    secret_type = obj.get("type") or "Opaque"
    data: dict[str, str] = dict(obj.get("data") or {})
    return Blueprint(
        ref=ref,
        type=secret_type,
        data=data,
        immutable=bool(obj.get("immutable")),
        labels=_strings(metadata.get("labels")),
        annotations=_strings(metadata.get("annotations"), drop=[LAST_APPLIED_ANNOTATION]),
        hash=_intern(content_hash(secret_type, data)),
        resource_version=metadata.get("resourceVersion", ""),
        uid=metadata.get("uid", ""),
    )


def _namespace_of(obj: JSON) -> str:
    return _intern(obj["metadata"]["namespace"])


# ----------------------------------------------------------------------------- controller


class Controller:
    """Caches, queue, workers and writer for one set of settings."""

    def __init__(self, settings: Settings, kube: Kube, *, identity: str) -> None:
        self.settings = settings
        self.policy: Policy = settings.policy
        self.kube = kube
        self.identity = identity
        self.queue = WorkQueue()
        self.active = False  # True while this replica leads and runs workers
        # Called right before each write: raises NotLeaderError when this replica may not write,
        # else returns the seconds the write may take (None: no bound). See kube/leases.py.
        self.write_guard: Callable[[], float | None] = lambda: None
        self.events = EventRecorder(
            kube, reporting_controller=REPORTING_CONTROLLER, reporting_instance=identity
        )
        # Problems turn into one Event per blueprint and reason per window, not one per namespace.
        self.digest = reporting.Digest()
        # namespace -> the blueprints whose writes failed in its last pass
        self.failed_blueprints: dict[str, set[BlueprintRef]] = {}
        self.trimmer = Trimmer(self.policy)
        # blueprint -> namespace -> state, for the copies gauge and for logging state changes once.
        self.states: dict[BlueprintRef, dict[str, CopyState]] = {ref: {} for ref in settings.refs}
        self.state_counts: dict[tuple[BlueprintRef, CopyState], int] = {}
        # blueprint -> when (monotonic) it was first seen missing, for PRUNE's grace. Kept by every
        # replica, so a standby that takes over knows how long a deleted blueprint has been gone.
        self.missing_since: dict[BlueprintRef, float] = {}
        # blueprint -> when (monotonic) a consistent read last found it absent (_confirm_missing).
        self.confirmed_missing: dict[BlueprintRef, float] = {}
        self._confirming: dict[BlueprintRef, anyio.Lock] = {}
        self._redaction: tuple[tuple[tuple[BlueprintRef, str], ...], redaction.Redactor] = (
            (),
            redaction.Redactor(()),
        )

        self.namespaces: Informer[NamespaceInfo] = Informer(
            kube,
            name="namespaces",
            path="/api/v1/namespaces",
            trim=self.trimmer.namespace,
            on_change=self._namespace_changed,
        )
        self.blueprint_informers: dict[BlueprintRef, Informer[Blueprint]] = {
            ref: Informer(
                kube,
                name=f"blueprint {ref}",
                path=f"/api/v1/namespaces/{ref.namespace}/secrets",
                query=[("fieldSelector", f"metadata.name={ref.name}")],
                trim=functools.partial(trim_blueprint, ref),
                on_change=self._blueprint_changed,
            )
            for ref in settings.refs
        }
        self.copy_informers: dict[str, Informer[CopyInfo]] = {
            ref.name: Informer(
                kube,
                name=f"copies {ref.name}",
                path="/api/v1/secrets",
                query=[("fieldSelector", f"metadata.name={ref.name}")],
                key=_namespace_of,  # the name is fixed: one entry per namespace
                page_size=functools.partial(self._copy_page_size, ref),
                trim=self.trimmer.copy,
                on_change=self._copy_changed,
                on_relist=functools.partial(self._copies_relisted, ref.name),
            )
            for ref in settings.refs
        }

    # -- caches

    @property
    def informers(self) -> list[Informer[Any]]:
        return [self.namespaces, *self.blueprint_informers.values(), *self.copy_informers.values()]

    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers)

    async def wait_synced(self) -> None:
        for informer in self.informers:
            await informer.synced.wait()

    async def list_once(self) -> None:
        """Fill every cache with one paginated LIST (read-only commands)."""
        try:
            first: list[Informer[Any]] = [self.namespaces, *self.blueprint_informers.values()]
            async with anyio.create_task_group() as tasks:
                for informer in first:
                    tasks.start_soon(informer.list_once)
            async with anyio.create_task_group() as tasks:  # after the blueprints: page sizes
                for informer in self.copy_informers.values():
                    tasks.start_soon(informer.list_once)
        except* ApiError as failures:
            raise failures.exceptions[0] from None

    def _copy_page_size(self, ref: BlueprintRef) -> int:
        """Copies per LIST page, so that a page stays around 32 MiB: copies are as large as their
        blueprint. Asked at every relist, so a blueprint that appears or grows is accounted for;
        while it is unknown, pages are small in case it is large."""
        blueprint = self.blueprint(ref)
        if blueprint is None:
            return 50
        size = sum(len(value) for value in blueprint.data.values()) + 2048
        return max(10, min(500, (32 << 20) // size))

    def blueprint(self, ref: BlueprintRef) -> Blueprint | None:
        return self.blueprint_informers[ref].store.get(f"{ref.namespace}/{ref.name}")

    def blueprints(self) -> dict[BlueprintRef, Blueprint | None]:
        return {ref: self.blueprint(ref) for ref in self.blueprint_informers}

    def _namespace_changed(self, key: str, old: NamespaceInfo | None, new: NamespaceInfo | None) -> None:
        if not self.active:
            return
        if old is None and new is not None:
            self.queue.add_after(key, NEW_NAMESPACE_GRACE, since=time.monotonic())
        else:
            self.queue.add(key)

    def _copy_changed(self, key: str, old: CopyInfo | None, new: CopyInfo | None) -> None:
        if self.active:
            self.queue.add(key)  # copy informers are keyed by namespace

    def _copies_relisted(self, name: str) -> None:
        """A relist compares with the cache, and a copy written while the watch was down never
        reached the cache: written and deleted meanwhile, it shows no difference. Planning from
        the fresh cache finds it; namespaces in sync cost no request."""
        if self.active:
            log.info("copies relisted; checking every namespace", extra={"secret": name})
            self.enqueue_all()

    def copies(self, namespace: str) -> dict[str, CopyInfo]:
        """The Secrets named like a blueprint in ``namespace``, by name."""
        found = {}
        for name, informer in self.copy_informers.items():
            copy = informer.store.get(namespace)
            if copy is not None:
                found[name] = copy
        return found

    def _blueprint_changed(self, key: str, old: Blueprint | None, new: Blueprint | None) -> None:
        if new is not None:
            self.missing_since.pop(new.ref, None)
        elif old is not None:
            self.missing_since.setdefault(old.ref, time.monotonic())
        if new is None:
            log.warning(
                f"blueprint deleted; its copies will be pruned in {self.policy.prune_grace_seconds:g} s "
                "unless it returns"
                if self.policy.prune
                else "blueprint does not exist; copies are kept and will follow it once it exists",
                extra={"blueprint": key},
            )
        elif old is None or old.hash != new.hash:
            # The resourceVersion, not the content hash: a hash of a weak secret can be brute-forced.
            log.info(
                "blueprint observed",
                extra={"blueprint": key, "resource_version": new.resource_version, "type": new.type},
            )
        if self.active:
            self.enqueue_all()

    def enqueue_all(self) -> None:
        now = time.monotonic()
        for name in self.namespaces.store:
            self.queue.add(name, since=now)
        metrics.QUEUE_DEPTH.set(len(self.queue))

    # -- planning

    def plan(self, namespace: str) -> NamespacePlan:
        blueprints = self.blueprints()
        now = time.monotonic()
        return plan_namespace(
            self.policy,
            namespace=self.namespaces.store.get(namespace),
            name=namespace,
            blueprints=blueprints,
            copies=self.copies(namespace),
            missing_for={
                ref: now - since
                for ref, since in self.missing_since.items()
                if ref in blueprints and blueprints[ref] is None
            },
        )

    def plan_all(self) -> list[NamespacePlan]:
        return [self.plan(name) for name in sorted(self.namespaces.store)]

    async def _report(self, plan: NamespacePlan) -> None:
        """Track states for the metrics gauge; log and record an Event when a pair turns bad."""
        if not plan.rows:  # the namespace is gone: forget its pairs
            for ref, states in self.states.items():
                self._count(ref, states.pop(plan.namespace, None), -1)
            return
        for row in plan.rows:
            states = self.states.setdefault(row.blueprint, {})
            previous = states.get(row.namespace)
            if previous == row.state:
                continue
            states[row.namespace] = row.state
            self._count(row.blueprint, previous, -1)
            self._count(row.blueprint, row.state, +1)
            if row.state in (CopyState.CONFLICT, CopyState.REFUSED):
                await self._report_problem(row)

    async def _report_problem(self, row: Row) -> None:
        conflict = row.state == CopyState.CONFLICT
        log.warning(
            "copy not written" if conflict else "blueprint refused",
            extra={
                "blueprint": str(row.blueprint),
                "namespace": row.namespace,
                "state": str(row.state),
                "detail": row.detail,
            },
        )
        self.digest.add(row.blueprint, "Conflict" if conflict else "Refused", row.namespace, row.detail)

    def _emit_summaries(self) -> None:
        """One Warning Event on the blueprint per reason whose window has passed."""
        for summary in self.digest.due():
            if summary.reason == "Conflict":
                note = f"{summary.namespaces()} newly in conflict: {summary.detail}"
            elif summary.reason == "Refused":
                note = f"not copied to {summary.namespaces()}: {summary.detail}"
            else:
                note = f"{summary.namespaces()}: {summary.detail}"
            blueprint = self.blueprint(summary.blueprint)
            self.events.emit(
                ObjectRef(
                    "v1",
                    "Secret",
                    summary.blueprint.namespace,
                    summary.blueprint.name,
                    blueprint.uid if blueprint else "",
                ),
                type="Warning",
                reason=summary.reason,
                action="Replicate",
                note=note,
            )

    async def _report_events(self) -> NoReturn:
        """Turn the digest into Events, off the write path (the recorder sends them)."""
        while True:
            await anyio.sleep(1.0)
            self._emit_summaries()

    def _count(self, ref: BlueprintRef, state: CopyState | None, delta: int) -> None:
        if state is None:
            return
        key = (ref, state)
        self.state_counts[key] = self.state_counts.get(key, 0) + delta
        metrics.COPIES.labels(blueprint=str(ref), state=str(state)).set(self.state_counts[key])

    # -- writing

    def describe_error(self, exc: ApiError) -> str:
        """An API error for a log line or `sync` output: cut short, then redacted.

        Cutting first bounds the cost (messages can be 64 KiB); it cannot let data through, since
        redaction catches any run of a value's characters wherever it starts or ends.
        """
        limit = 200 + ApiError.MESSAGE_LIMIT
        return self.redact(exc.describe()[: limit + redaction.FRAGMENT])[:limit]

    def redact(self, text: str) -> str:
        """``text`` without any fragment of a blueprint's data (see ``redaction``), and without
        what a webhook or admission policy quoted (it may be a copy's old data, never read here).

        Server messages are ours to log, but an admission webhook's message could quote the
        object it refused; nothing of a Secret's data may reach a log line that way.
        """
        return self._redactor().redact_message(text)

    def _redactor(self) -> redaction.Redactor:
        """One per set of blueprint versions: built at the first message that needs it."""
        versions = tuple(
            (ref, blueprint.hash) for ref, blueprint in self.blueprints().items() if blueprint is not None
        )
        if self._redaction[0] != versions:
            values = [
                value
                for blueprint in self.blueprints().values()
                if blueprint is not None
                for value in blueprint.data.values()
            ]
            self._redaction = (versions, redaction.Redactor(values))
        return self._redaction[1]

    async def _send(self, method: str, path: str, body: Any, content_type: str = "application/json") -> JSON:
        return await self.kube.request(
            method, path, body=body, content_type=content_type, guard=self.write_guard
        )

    async def apply(self, action: Action) -> None:
        """One write, with preconditions; raises ApiError or NotLeaderError.

        Raises WrittenDifferently when the API server stored something other than what was
        written (a mutating webhook at work): retrying with backoff beats fighting it in a loop.
        """
        secrets = f"/api/v1/namespaces/{action.namespace}/secrets"
        stored: JSON | None = None
        if action.kind == ActionKind.CREATE:
            stored = await self._send("POST", secrets, action.body)
        elif action.kind == ActionKind.UPDATE:
            stored = await self._send(
                "PATCH", f"{secrets}/{action.name}", action.body, content_type="application/merge-patch+json"
            )
        elif action.kind in (ActionKind.DELETE, ActionKind.REPLACE):
            preconditions = {"resourceVersion": action.resource_version}
            options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
            await self._send("DELETE", f"{secrets}/{action.name}", options)
            if action.kind == ActionKind.REPLACE:
                stored = await self._send("POST", secrets, action.body)
        if stored is not None and action.hash:
            written = content_hash(stored.get("type") or "Opaque", stored.get("data") or {})
            if written != action.hash:
                raise WrittenDifferentlyError

    async def reconcile(self, namespace: str, since: float) -> Outcome:
        """Make one namespace right; SUCCESS when every write succeeded (or none was needed).

        A write answered with 429 stops the pass and holds the namespace for the server's
        Retry-After: THROTTLED, which neither resets the backoff (as a success would) nor adds to
        it. The blueprints whose writes failed are left in ``failed_blueprints``.
        """
        plan = self.plan(namespace)
        try:
            if not await self._prunes_confirmed(plan):
                plan = self.plan(namespace)  # the blueprint is back: plan from it
        except ApiError as exc:
            log.warning(
                "could not read the blueprint again before pruning; will retry",
                extra={"namespace": namespace, "error": self.describe_error(exc)},
            )
            return Outcome.ERROR
        if plan.recheck_after is not None:  # a prune grace ends then
            self.queue.add_after(namespace, plan.recheck_after)
        await self._report(plan)
        ok = True
        failed = self.failed_blueprints[namespace] = set()
        for action in plan.actions:
            fields = {
                "namespace": action.namespace,
                "secret": action.name,
                "blueprint": str(action.blueprint),
            }
            try:
                await self.apply(action)
            except WrittenDifferentlyError:
                ok = False
                failed.add(action.blueprint)
                metrics.WRITES.labels(action=str(action.kind), result="error").inc()
                log.warning(
                    "the API server stored different data than written (a mutating webhook?); will retry",
                    extra={**fields, "reason": action.reason},
                )
                continue
            except ApiError as exc:
                if _namespace_terminating(exc):
                    log.debug("namespace is terminating; skipped", extra=fields)
                    metrics.WRITES.labels(action=str(action.kind), result="skipped").inc()
                    continue
                ok = False
                if exc.status == 429:
                    metrics.WRITES.labels(action=str(action.kind), result="throttled").inc()
                    self.queue.hold(namespace, max(exc.retry_after, 1.0), since=since)
                    log.info("throttled by the API server", extra={**fields, "retry_in": exc.retry_after})
                    return Outcome.THROTTLED  # already held: no extra backoff on top of Retry-After
                failed.add(action.blueprint)
                # 409: a precondition failed or the copy exists (a newer state to plan from); 404:
                # the copy or the namespace is gone (the cache is behind). Neither is the copy's fault.
                result = {409: "conflict", 404: "not_found"}.get(exc.status, "error")
                metrics.WRITES.labels(action=str(action.kind), result=result).inc()
                level = logging.INFO if result != "error" else logging.WARNING
                log.log(
                    level,
                    f"{action.kind} failed; will retry",
                    extra={**fields, "error": self.describe_error(exc), "reason": action.reason},
                )
                continue
            metrics.WRITES.labels(action=str(action.kind), result="success").inc()
            metrics.PROPAGATION.observe(time.monotonic() - since)
            log.info(
                f"{action.kind}d copy" if action.kind != ActionKind.REPLACE else "replaced copy",
                extra={**fields, "reason": action.reason},
            )
        return Outcome.SUCCESS if ok else Outcome.ERROR

    async def _prunes_confirmed(self, plan: NamespacePlan) -> bool:
        """False when a blueprint whose copies the plan deletes turns out to exist after all."""
        refs = {action.blueprint for action in plan.actions if action.kind == ActionKind.DELETE}
        for ref in sorted(refs):
            if self.blueprint(ref) is None and not await self._confirm_missing(ref):
                return False
        return True

    async def _confirm_missing(self, ref: BlueprintRef) -> bool:
        """Whether a consistent read shows the blueprint absent; if it is there, it enters the cache.

        The grace measures how long the *cache* has shown the blueprint missing. A stalled watch (a
        half-open stream, a lagging watch cache, a reconnect backoff; a silent one is noticed only
        after 70 s) can show it missing long after it came back, so a prune first has the
        blueprint's informer read it again: a consistent LIST by name (no resourceVersion), which
        the API server answers from etcd or from a cache it proved current. Found, it enters the
        cache as any relist's result does, which ends the grace and lets the copies follow it.
        The LIST by name is what the informer always sends, so RBAC needs no other verb.
        """
        async with self._confirming.setdefault(ref, anyio.Lock()):
            confirmed = self.confirmed_missing.get(ref)
            if confirmed is not None and time.monotonic() - confirmed < PRUNE_CONFIRMATION_SECONDS:
                return True
            started = time.monotonic()
            await self.blueprint_informers[ref].read_again()  # a change reaches _blueprint_changed
            if self.blueprint(ref) is None:
                self.confirmed_missing[ref] = started
                return True
            log.warning(
                "blueprint exists though its watch still showed it deleted (the watch lags); nothing pruned",
                extra={"blueprint": str(ref)},
            )
            return False

    async def _worker(self) -> None:
        while True:
            namespace, since = await self.queue.get()
            metrics.QUEUE_DEPTH.set(len(self.queue))
            try:
                outcome = await self.reconcile(namespace, since)
            except NotLeaderError:
                # Leadership lapsed; the elector is about to cancel this work. Should it not (the
                # renewal succeeded after all), the namespace is simply tried again.
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
            self.queue.retry(namespace)
            if self.queue.failures(namespace) == FAILURES_BEFORE_EVENT:
                self._record_failing(namespace, failed)

    def _record_failing(self, namespace: str, failed: set[BlueprintRef]) -> None:
        """Count the namespace against the blueprints whose writes failed (all of them, if the
        pass crashed before it could tell)."""
        for ref in failed or [ref for ref, blueprint in self.blueprints().items() if blueprint]:
            self.digest.add(
                ref,
                "ReplicationFailing",
                namespace,
                f"{FAILURES_BEFORE_EVENT} attempts in a row failed; retrying with backoff (up to "
                f"{self.queue.max_delay:.0f}s)",
            )

    async def _resync(self) -> None:
        while True:
            await anyio.sleep(self.settings.resync_seconds)
            log.info("periodic resync", extra={"namespaces": len(self.namespaces.store)})
            self.enqueue_all()

    def _reset_states(self) -> None:
        """Start each leadership term with a clean copies gauge (a standby's would go stale)."""
        self.states = {ref: {} for ref in self.settings.refs}
        self.state_counts.clear()
        self.digest.clear()
        metrics.COPIES.clear()

    async def lead(self) -> None:
        """Leader work: reconcile everything once, then follow events, until cancelled."""
        await self.wait_synced()
        self.queue = WorkQueue()
        self._reset_states()
        now = time.monotonic()
        for ref, blueprint in self.blueprints().items():
            if blueprint is None:  # missing since before this replica watched: the grace starts now
                self.missing_since.setdefault(ref, now)
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
            self._reset_states()

    async def run_informers(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.namespaces.run)
            for ref, informer in self.blueprint_informers.items():
                tasks.start_soon(informer.run)
                tasks.start_soon(self._run_copies, ref)

    async def _run_copies(self, ref: BlueprintRef) -> None:
        """Watch a blueprint's copies, once its own size is known (or 10 s have passed): the size
        decides how many copies fit a LIST page. Other blueprints never hold it up."""
        with anyio.move_on_after(10):
            await self.blueprint_informers[ref].synced.wait()
        await self.copy_informers[ref.name].run()

    def stuck(self, *, threshold: float) -> list[str]:
        """Informers whose loop has made no progress (not even a retry) for ``threshold`` seconds."""
        now = time.monotonic()
        return [informer.name for informer in self.informers if now - informer.heartbeat > threshold]


def _namespace_terminating(exc: ApiError) -> bool:
    return exc.status in (403, 409) and "being terminated" in exc.message
