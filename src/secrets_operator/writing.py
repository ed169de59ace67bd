"""The leadership-guarded writer: one planned action becomes the requests that carry it out.

Every request goes through ``Kube.request`` with the write guard, which refuses to start a write
once this replica may no longer lead (kube/leases.py); every update and delete carries the
resourceVersion the plan was made from, so nothing changed meanwhile is overwritten or deleted.
What the API server stored is compared with what was written: a mutating webhook or admission
policy that rewrites copies is reported and backed off from, not fought in a loop.

Error messages leave here only through :meth:`Writer.describe_error`, which removes any fragment
of a blueprint's data (an admission webhook may quote the object it refused).

Deliberately not here: what to write (``planning``) and when (``controller``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from secrets_operator import redaction
from secrets_operator.kube.client import JSON, ApiError, Kube
from secrets_operator.model import Action, ActionKind, Blueprint, BlueprintRef, Kind
from secrets_operator.planning import object_hash


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


def _base64_values(blueprint: Blueprint) -> list[str]:
    """Every value of a blueprint in base64, the form ``redaction.forms`` expands into the shapes a
    message can quote it in: a Secret's data and a ConfigMap's binaryData are base64 already, a
    ConfigMap's data is plain text."""
    if blueprint.ref.kind is Kind.SECRET:
        return list(blueprint.data.values())
    plain = [base64.b64encode(value.encode()).decode() for value in blueprint.data.values()]
    return [*plain, *blueprint.binary_data.values()]


class Writer:
    """Sends planned actions; knows the blueprints only to keep their data out of messages."""

    def __init__(
        self, kube: Kube, *, blueprints: Callable[[], Mapping[BlueprintRef, Blueprint | None]]
    ) -> None:
        self.kube = kube
        self._blueprints = blueprints
        # Called right before each write: raises NotLeaderError when this replica may not write,
        # else returns the seconds the write may take (None: no bound). See kube/leases.py.
        self.guard: Callable[[], float | None] = lambda: None
        self._redaction: tuple[tuple[tuple[BlueprintRef, str], ...], redaction.Redactor] = (
            (),
            redaction.Redactor(()),
        )

    # -- messages

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
        object it refused; nothing of a blueprint's data may reach a log line that way.
        """
        return self._redactor().redact_message(text)

    def _redactor(self) -> redaction.Redactor:
        """One per set of blueprint versions: built at the first message that needs it."""
        blueprints = self._blueprints()
        versions = tuple(
            (ref, blueprint.hash) for ref, blueprint in blueprints.items() if blueprint is not None
        )
        if self._redaction[0] != versions:
            values = [
                value
                for blueprint in blueprints.values()
                if blueprint is not None
                for value in _base64_values(blueprint)
            ]
            self._redaction = (versions, redaction.Redactor(values))
        return self._redaction[1]

    # -- writes

    async def _send(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str = "application/json",
        timed: Callable[[float], None] | None = None,
    ) -> JSON:
        return await self.kube.request(
            method, path, body=body, content_type=content_type, guard=self.guard, timed=timed
        )

    async def apply(self, action: Action, *, timed: Callable[[float], None] | None = None) -> None:
        """One write, with preconditions; raises ApiError or NotLeaderError.

        Raises WrittenDifferentlyError when the API server stored something other than what was
        written (a mutating webhook at work): retrying with backoff beats fighting it in a loop.
        ``timed`` is given the seconds the API server took to answer a CREATE that succeeded.
        """
        kind = action.blueprint.kind
        objects = f"/api/v1/namespaces/{action.namespace}/{kind.plural}"
        stored: JSON | None = None
        if action.kind == ActionKind.CREATE:
            stored = await self._send("POST", objects, action.body, timed=timed)
        elif action.kind == ActionKind.UPDATE:
            stored = await self._send(
                "PATCH", f"{objects}/{action.name}", action.body, content_type="application/merge-patch+json"
            )
        elif action.kind in (ActionKind.DELETE, ActionKind.REPLACE):
            preconditions = {"resourceVersion": action.resource_version}
            options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
            await self._send("DELETE", f"{objects}/{action.name}", options)
            if action.kind == ActionKind.REPLACE:
                stored = await self._send("POST", objects, action.body)
        if stored is not None and action.hash and object_hash(kind, stored) != action.hash:
            raise WrittenDifferentlyError
