"""Aggregating problems into one Event per blueprint and reason, instead of one per namespace.

A Secret named like a blueprint in 5,000 namespaces is 5,000 conflicts; a webhook that refuses
every write fails 5,000 namespaces. One Event each would be 5,000 requests on the writes' rate
budget and 5,000 objects in etcd, and nobody reads them. The digest collects the namespaces that
turned bad during a short window and yields one summary per blueprint and reason, with a count and
a few example namespaces; the controller turns each into one Event on the blueprint.

Pure: it knows blueprint references and names, never Secret data, and nothing of the API.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from secrets_operator.model import BlueprintRef

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
