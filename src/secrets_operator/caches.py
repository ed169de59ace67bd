"""The caches: which objects the operator watches, and what it looks up in them.

One informer for namespaces; one per blueprint (a field selector on its name, in its namespace,
at its kind's path); one per kind and copy name for the copies across all namespaces (field
selector ``metadata.name=<name>``, which lets RBAC restrict access with ``resourceNames``). A
copy name is a blueprint's target name or one of its earlier ones (``previousTargetNames``).
Every replica runs them all, so a new leader starts with warm caches.

Also kept here, since it is what the blueprint caches have seen: since when each blueprint has
been missing (PRUNE's grace), and the consistent read that confirms a blueprint is really gone
before any of its copies is pruned.

Deliberately not here: what an event means (the controller's triggers) and what to write.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.kube.informer import Informer
from secrets_operator.model import Blueprint, BlueprintRef, CopyInfo, Kind, NamespaceInfo
from secrets_operator.planning import Policy
from secrets_operator.trimming import Trimmer, trim_blueprint

log = logging.getLogger(__name__)

#: Seconds a consistent read that found a blueprint absent lets prunes go without another read: the
#: workers pruning its copies at the end of the grace share one read instead of one per namespace.
PRUNE_CONFIRMATION_SECONDS = 1.0
#: LIST pages in flight at once across the informers, which all list at start (and a few may at
#: any time). A page is up to 500 objects, or 32 MiB of copies of a large blueprint; 41 informers
#: each keeping a decoded page while asking for the next left an operator with 40,000 copies 40 MB
#: above what it keeps (docs/performance.md).
LIST_PAGES_IN_FLIGHT = 2

CopyKey = tuple[Kind, str]
Changed = Callable[[str, Any, Any], None]


def _copy_event(
    on_copy: Callable[[BlueprintRef, str], None], ref: BlueprintRef, namespace: str, *_: object
) -> None:
    """A copy changed: tell whose copy it is (or would be) and where."""
    on_copy(ref, namespace)


def _namespace_of(obj: JSON) -> str:
    return sys.intern(obj["metadata"]["namespace"])


class Caches:
    """Informers for one policy, with lookups by blueprint and by namespace."""

    def __init__(
        self,
        kube: Kube,
        policy: Policy,
        *,
        on_namespace: Changed,
        on_blueprint: Changed,
        on_copy: Callable[[BlueprintRef, str], None],
        on_copies_relisted: Callable[[CopyKey], None],
    ) -> None:
        self.policy = policy
        self.trimmer = Trimmer(policy)
        # blueprint -> when (monotonic) it was first seen missing, for PRUNE's grace. Kept by every
        # replica, so a standby that takes over knows how long a deleted blueprint has been gone.
        self.missing_since: dict[BlueprintRef, float] = {}
        # blueprint -> when (monotonic) a consistent read last found it absent (confirm_missing).
        self.confirmed_missing: dict[BlueprintRef, float] = {}
        self._confirming: dict[BlueprintRef, anyio.Lock] = {}
        # blueprint -> (until when, the error) of a confirming read that failed: shared, not repeated
        self._confirm_failed: dict[BlueprintRef, tuple[float, ApiError]] = {}
        self._on_blueprint = on_blueprint

        pages = anyio.CapacityLimiter(LIST_PAGES_IN_FLIGHT)
        self.namespaces: Informer[NamespaceInfo] = Informer(
            kube,
            name="namespaces",
            path="/api/v1/namespaces",
            pages=pages,
            trim=self.trimmer.namespace,
            on_change=on_namespace,
        )
        self.blueprint_informers: dict[BlueprintRef, Informer[Blueprint]] = {
            spec.ref: Informer(
                kube,
                name=f"blueprint {spec.ref.describe()}",
                path=f"/api/v1/namespaces/{spec.ref.namespace}/{spec.ref.kind.plural}",
                query=[("fieldSelector", f"metadata.name={spec.ref.name}")],
                pages=pages,
                trim=functools.partial(trim_blueprint, spec.ref),
                on_change=self._blueprint_changed,
            )
            for spec in policy.blueprints
        }
        # Which blueprint sizes a copy name's LIST pages (its names are refused to overlap).
        self.copy_owner: dict[CopyKey, BlueprintRef] = {
            (spec.ref.kind, name): spec.ref for spec in policy.blueprints for name in spec.names
        }
        self.copy_keys: dict[BlueprintRef, tuple[CopyKey, ...]] = {
            spec.ref: tuple((spec.ref.kind, name) for name in spec.names) for spec in policy.blueprints
        }
        self.copy_informers: dict[CopyKey, Informer[CopyInfo]] = {
            key: Informer(
                kube,
                name=f"copies {key[0]} {key[1]}",
                path=f"/api/v1/{key[0].plural}",
                query=[("fieldSelector", f"metadata.name={key[1]}")],
                key=_namespace_of,  # the name is fixed: one entry per namespace
                page_size=functools.partial(self._copy_page_size, ref),
                pages=pages,
                trim=functools.partial(self.trimmer.copy, key[0]),
                on_change=functools.partial(_copy_event, on_copy, ref),
                on_relist=functools.partial(on_copies_relisted, key),
            )
            for key, ref in self.copy_owner.items()
        }

    # -- lookups

    @property
    def informers(self) -> list[Informer[Any]]:
        return [self.namespaces, *self.blueprint_informers.values(), *self.copy_informers.values()]

    def blueprint(self, ref: BlueprintRef) -> Blueprint | None:
        return self.blueprint_informers[ref].store.get(f"{ref.namespace}/{ref.name}")

    def blueprints(self) -> dict[BlueprintRef, Blueprint | None]:
        return {ref: self.blueprint(ref) for ref in self.blueprint_informers}

    def copies(self, namespace: str, refs: Iterable[BlueprintRef] | None = None) -> dict[CopyKey, CopyInfo]:
        """The objects named like a copy in ``namespace``, by kind and name (of ``refs`` only)."""
        found = {}
        keys = (
            self.copy_informers.keys()
            if refs is None
            else [key for ref in refs for key in self.copy_keys[ref]]
        )
        for key in keys:
            informer = self.copy_informers[key]
            copy = informer.store.get(namespace)
            if copy is not None:
                found[key] = copy
        return found

    def missing_for(self, blueprints: dict[BlueprintRef, Blueprint | None]) -> dict[BlueprintRef, float]:
        """Seconds each missing blueprint has been seen missing."""
        now = time.monotonic()
        return {
            ref: now - since
            for ref, since in self.missing_since.items()
            if ref in blueprints and blueprints[ref] is None
        }

    def _copy_page_size(self, ref: BlueprintRef) -> int:
        """Copies per LIST page, so that a page stays around 32 MiB: copies are as large as their
        blueprint. Asked at every relist, so a blueprint that appears or grows is accounted for;
        while it is unknown, pages are small in case it is large."""
        blueprint = self.blueprint(ref)
        if blueprint is None:
            return 50
        size = sum(len(value) for data in (blueprint.data, blueprint.binary_data) for value in data.values())
        return max(10, min(500, (32 << 20) // (size + 2048)))

    def _blueprint_changed(self, key: str, old: Blueprint | None, new: Blueprint | None) -> None:
        if new is not None:
            self.missing_since.pop(new.ref, None)
        elif old is not None:
            self.missing_since.setdefault(old.ref, time.monotonic())
        self._on_blueprint(key, old, new)

    # -- sync

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

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.namespaces.run)
            for informer in self.blueprint_informers.values():
                tasks.start_soon(informer.run)
            for key in self.copy_informers:
                tasks.start_soon(self._run_copies, key)

    async def _run_copies(self, key: CopyKey) -> None:
        """Watch copies once their blueprint's size is known (or 10 s have passed): the size
        decides how many copies fit a LIST page. Other blueprints never hold it up."""
        with anyio.move_on_after(10):
            await self.blueprint_informers[self.copy_owner[key]].synced.wait()
        await self.copy_informers[key].run()

    def stuck(self, *, threshold: float) -> list[str]:
        """Informers whose loop has made no progress (not even a retry) for ``threshold`` seconds."""
        now = time.monotonic()
        return [informer.name for informer in self.informers if now - informer.heartbeat > threshold]

    # -- a consistent read before pruning

    async def confirm_missing(self, ref: BlueprintRef) -> bool:
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
            failed = self._confirm_failed.get(ref)
            if failed is not None and time.monotonic() < failed[0]:
                raise failed[1]  # the namespaces waiting here share one failed read
            started = time.monotonic()
            try:
                await self.blueprint_informers[ref].read_again()  # a change reaches _blueprint_changed
            except ApiError as exc:
                # Until Retry-After (a 429), or a second: not one read per namespace in the meantime.
                wait = max(exc.retry_after, PRUNE_CONFIRMATION_SECONDS)
                self._confirm_failed[ref] = (time.monotonic() + wait, exc)
                raise
            self._confirm_failed.pop(ref, None)
            if self.blueprint(ref) is None:
                self.confirmed_missing[ref] = started
                return True
            log.warning(
                "blueprint exists though its watch still showed it deleted (the watch lags); nothing pruned",
                extra={"blueprint": str(ref), "kind": str(ref.kind)},
            )
            return False
