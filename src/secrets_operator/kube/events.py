"""Kubernetes Events (events.k8s.io/v1) about objects, de-duplicated so they never flood.

A condition that persists (a conflict, a refused Secret type) is seen again on every resync;
recording it each time would fill etcd with identical Events. The recorder remembers what it
said recently and says it again only after ``repeat_after`` seconds.

Callers pass the ``note`` text; it must never contain Secret data (the controller builds notes
from names and reasons only). Recording is best effort: a failure is logged, never raised.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from typing import Literal

from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.kube.leases import format_microtime, utcnow

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


class EventRecorder:
    """Creates Events as ``reporting_controller``/``reporting_instance``."""

    def __init__(
        self,
        kube: Kube,
        *,
        reporting_controller: str,
        reporting_instance: str,
        repeat_after: float = 1800.0,
        memory: int = 10_000,
    ) -> None:
        self.kube = kube
        self.reporting_controller, self.reporting_instance = reporting_controller, reporting_instance
        self.repeat_after, self.memory = repeat_after, memory
        self._said: OrderedDict[tuple[ObjectRef, str, str], float] = OrderedDict()

    async def record(
        self, regarding: ObjectRef, *, type: EventType, reason: str, action: str, note: str
    ) -> None:
        key = (regarding, reason, note)
        now = time.monotonic()
        last = self._said.get(key)
        if last is not None and now - last < self.repeat_after:
            return
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
            "action": action,
            "reason": reason,
            "regarding": involved,
            "note": note[:1024],
            "type": type,
        }
        try:
            await self.kube.request(
                "POST", f"/apis/events.k8s.io/v1/namespaces/{regarding.namespace}/events", body=body
            )
        except ApiError as exc:
            log.warning("could not record an Event", extra={"reason": reason, "error": str(exc)})
            return
        self._said[key] = now
        self._said.move_to_end(key)
        while len(self._said) > self.memory:
            self._said.popitem(last=False)
