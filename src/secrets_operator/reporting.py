"""Reporting: the copies gauge, and problems as one Event per blueprint and reason.

:class:`Reporter` follows the state of every blueprint × namespace pair as plans are made: it
keeps the ``secrets_operator_copies`` and ``secrets_operator_excluded_namespaces`` gauges, logs a
pair that turns bad once, and feeds the digest below; the Events it records are sent by the
recorder in the background, off the write path.

A Secret named like a blueprint in 5,000 namespaces is 5,000 conflicts; a webhook that refuses
every write fails 5,000 namespaces. One Event each would be 5,000 requests on the writes' rate
budget and 5,000 objects in etcd, and nobody reads them. The digest collects the namespaces that
turned bad during a short window and yields one summary per blueprint and reason, with a count and
a few example namespaces; this module turns each into one Event on the blueprint.

The digest is pure: it knows blueprint references and names, never data, and nothing of the API.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection

from secrets_operator import metrics
from secrets_operator.kube.events import EventRecorder, ObjectRef
from secrets_operator.model import Blueprint, BlueprintRef, CopyState, NamespacePlan, Row

log = logging.getLogger(__name__)

#: Example namespaces named in one summary.
EXAMPLES = 3


@dataclasses.dataclass(frozen=True)
class Summary:
    """Namespaces that turned bad for one blueprint and reason within one window."""

    blueprint: BlueprintRef
    reason: str
    count: int
    examples: tuple[str, ...]
    detail: str  # the first namespace's detail: names and reasons, never data

    def namespaces(self) -> str:
        """``"3 namespaces (a, b, c)"`` or ``"1,204 namespaces (e.g. a, b, c)"``."""
        listed = ", ".join(self.examples)
        noun = "namespace" if self.count == 1 else "namespaces"
        hint = "" if self.count == len(self.examples) else "e.g. "
        return f"{self.count:,} {noun} ({hint}{listed})"


@dataclasses.dataclass
class _Batch:
    opened: float
    detail: str
    examples: list[str]
    seen: set[str]


class Digest:
    """Collects (blueprint, reason, namespace) and yields a :class:`Summary` per blueprint and
    reason once ``window`` seconds have passed since its first namespace."""

    def __init__(self, *, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.clock = window, clock
        self._batches: dict[tuple[BlueprintRef, str], _Batch] = {}

    def add(self, blueprint: BlueprintRef, reason: str, namespace: str, detail: str = "") -> None:
        batch = self._batches.get((blueprint, reason))
        if batch is None:
            batch = self._batches[(blueprint, reason)] = _Batch(self.clock(), detail, [], set())
        if namespace not in batch.seen:
            batch.seen.add(namespace)
            if len(batch.examples) < EXAMPLES:
                batch.examples.append(namespace)

    def due(self) -> list[Summary]:
        """The summaries whose window has passed (each is then forgotten)."""
        now = self.clock()
        ready = [key for key, batch in self._batches.items() if now - batch.opened >= self.window]
        summaries = []
        for key in ready:
            batch = self._batches.pop(key)
            summaries.append(Summary(key[0], key[1], len(batch.seen), tuple(batch.examples), batch.detail))
        return summaries

    def clear(self) -> None:
        self._batches.clear()


#: Bound of the table of shared tuples (see Reporter._share).
_MAX_SHARED = 65536
#: Within one namespace: a blueprint and the copy's name (its target, or an earlier one).
_Pair = tuple[BlueprintRef, str]
_State = tuple[CopyState, str]  # the state and the rule that excluded the namespace ("" if none)


class Reporter:
    """The gauges of pair states, and problems turned into aggregated Warning Events."""

    def __init__(
        self,
        events: EventRecorder,
        *,
        blueprint: Callable[[BlueprintRef], Blueprint | None],
        window: float = 10.0,
    ) -> None:
        self.events = events
        self._blueprint = blueprint
        self.digest = Digest(window=window)
        # namespace -> its (pair, state) items: what the gauges count. Pairs, states and items
        # are shared tuples, and a tuple is a third of a dict's size: 20 pairs cost 216 bytes.
        self.states: dict[str, tuple[tuple[_Pair, _State], ...]] = {}
        self.counts: dict[tuple[BlueprintRef, CopyState], int] = {}
        self.excluded: dict[tuple[BlueprintRef, str], int] = {}
        self._shared: dict[tuple[object, object], tuple[object, object]] = {}

    def reset(self) -> None:
        """Start a leadership term with clean gauges (a standby's would go stale)."""
        self.states.clear()
        self.counts.clear()
        self.excluded.clear()
        self.digest.clear()
        metrics.COPIES.clear()
        metrics.EXCLUDED.clear()

    def _share(self, item: tuple[object, object]) -> tuple[object, object]:
        """One instance per distinct tuple. Distinct ones are few (blueprints × states × rules);
        the table is emptied if it ever grows past a bound, which costs sharing, not correctness."""
        if len(self._shared) >= _MAX_SHARED:
            self._shared.clear()
        return self._shared.setdefault(item, item)

    def plan(self, plan: NamespacePlan, only: Collection[BlueprintRef] | None = None) -> None:
        """Track the plan's states; log and collect a problem when a pair turns bad.

        ``only``: the blueprints the plan covers (None: all); other blueprints' pairs in the
        namespace are kept as they were. Costs the namespace's rows, whatever the number of
        namespaces. A pair without a row (the namespace is gone, or a stale copy under an
        earlier name was deleted) is forgotten.
        """
        before = dict(self.states.pop(plan.namespace, ()))
        after: dict[_Pair, _State] = {}
        if only is not None and plan.rows:
            for other in [pair for pair in before if pair[0] not in only]:
                after[other] = before.pop(other)
        for row in plan.rows:
            pair: _Pair = self._share((row.blueprint, row.name))  # type: ignore[assignment]
            current: _State = self._share((row.state, row.rule))  # type: ignore[assignment]
            after[pair] = current
            previous = before.pop(pair, None)
            if previous == current:
                continue
            self._count(row.blueprint, previous, -1)
            self._count(row.blueprint, current, +1)
            if row.state in (CopyState.CONFLICT, CopyState.REFUSED) and (
                previous is None or previous[0] != row.state
            ):
                self._problem(row)
        for (ref, _), state in before.items():
            self._count(ref, state, -1)
        if after:
            self.states[plan.namespace] = tuple(self._share(item) for item in after.items())  # type: ignore[misc]

    def _count(self, ref: BlueprintRef, state: _State | None, delta: int) -> None:
        if state is None:
            return
        key = (ref, state[0])
        self.counts[key] = self.counts.get(key, 0) + delta
        metrics.COPIES.labels(blueprint=str(ref), kind=str(ref.kind), state=str(state[0])).set(
            self.counts[key]
        )
        if state[1]:
            rule = (ref, state[1])
            self.excluded[rule] = self.excluded.get(rule, 0) + delta
            metrics.EXCLUDED.labels(blueprint=str(ref), kind=str(ref.kind), rule=state[1]).set(
                self.excluded[rule]
            )

    def _problem(self, row: Row) -> None:
        conflict = row.state == CopyState.CONFLICT
        log.warning(
            "copy not written" if conflict else "blueprint refused",
            extra={
                "blueprint": str(row.blueprint),
                "kind": str(row.blueprint.kind),
                "namespace": row.namespace,
                "copy": row.name,
                "state": str(row.state),
                "detail": row.detail,
            },
        )
        self.digest.add(row.blueprint, "Conflict" if conflict else "Refused", row.namespace, row.detail)

    def failing(self, ref: BlueprintRef, namespace: str, detail: str) -> None:
        self.digest.add(ref, "ReplicationFailing", namespace, detail)

    def emit_due(self) -> None:
        """One Warning Event on the blueprint per reason whose window has passed."""
        for summary in self.digest.due():
            if summary.reason == "Conflict":
                note = f"{summary.namespaces()} newly in conflict: {summary.detail}"
            elif summary.reason == "Refused":
                note = f"not copied to {summary.namespaces()}: {summary.detail}"
            else:
                note = f"{summary.namespaces()}: {summary.detail}"
            ref = summary.blueprint
            blueprint = self._blueprint(ref)
            self.events.emit(
                ObjectRef("v1", str(ref.kind), ref.namespace, ref.name, blueprint.uid if blueprint else ""),
                type="Warning",
                reason=summary.reason,
                action="Replicate",
                note=note,
            )
