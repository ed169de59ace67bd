"""Frozen value types shared by planning, the controller and the command line.

These are the domain's nouns: what a blueprint, a namespace and a copy look like once trimmed
from the API's JSON, and what the planner asks the writer to do. They import nothing from
``kube/``, aiohttp or kubernetes_asyncio, so the planning logic that uses them is testable
without a cluster.

Secret data lives only in :class:`Blueprint` (the copies' data is reduced to a hash when it is
observed), and every field that holds data, or a hash of it, is excluded from ``repr`` so that a
stray log line or exception message can never print it (a hash of a weak secret can be guessed
offline).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, NewType

NamespaceName = NewType("NamespaceName", str)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "secrets-operator"
SOURCE_ANNOTATION = "secrets-operator.io/source"
#: Carried by copies written by earlier versions: a sha256 of the Secret's type and data, readable by anyone
#: who may read the copy's metadata but not its data, an offline guessing oracle for weak secrets.
#: No longer written; removed from every copy that still has it (see planning.stale_metadata).
LEGACY_HASH_ANNOTATION = "secrets-operator.io/source-hash"
#: Which blueprint labels/annotations a copy received (comma-separated keys), so that keys later
#: removed from the blueprint, or no longer matched by COPY_METADATA, are removed from the copies.
COPIED_LABELS_ANNOTATION = "secrets-operator.io/copied-labels"
COPIED_ANNOTATIONS_ANNOTATION = "secrets-operator.io/copied-annotations"
EXCLUDE_LABEL = "secrets-operator.io/exclude"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"


class Kind(enum.StrEnum):
    """The kinds of object a blueprint can be; its copies are of the same kind."""

    SECRET = "Secret"
    CONFIG_MAP = "ConfigMap"

    @property
    def plural(self) -> str:
        """The resource name in API paths and RBAC rules."""
        return "secrets" if self is Kind.SECRET else "configmaps"


@dataclasses.dataclass(frozen=True, order=True, slots=True)
class BlueprintRef:
    """Which object is a blueprint: its ``namespace/name`` and its kind.

    ``str()`` is ``namespace/name``, the value of the source annotation on every copy (the copy's
    own kind says which kind of blueprint it names); :meth:`describe` adds the kind for people.
    """

    namespace: str
    name: str
    kind: Kind = Kind.SECRET

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """The little the operator keeps of a namespace: its name, labels and whether it is going away."""

    name: str
    labels: Mapping[str, str]
    terminating: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Blueprint:
    """A blueprint as observed; ``data`` holds values exactly as the API returns them.

    A Secret's data is base64 and ``type`` its type; a ConfigMap's ``type`` is "" and its
    ``binary_data`` its binaryData (base64).
    """

    ref: BlueprintRef
    type: str
    data: Mapping[str, str] = dataclasses.field(repr=False)
    immutable: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = dataclasses.field(repr=False)
    hash: str = dataclasses.field(repr=False)
    resource_version: str = ""
    uid: str = ""
    binary_data: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class CopyInfo:
    """A Secret or ConfigMap with a copy's name in some namespace, reduced to what planning compares.

    Its data is never kept: only ``data_hash`` (the same hash the blueprint has when the copy is
    exact) and ``data_keys`` (the key names, so that keys the blueprint no longer has can be removed).
    The ``kubectl.kubernetes.io/last-applied-configuration`` annotation is dropped on observation,
    because for a Secret it contains the data.
    """

    namespace: str
    name: str
    resource_version: str
    type: str
    immutable: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = dataclasses.field(repr=False)  # may hold an old copy's digest
    data_hash: str = dataclasses.field(repr=False)
    data_keys: frozenset[str]
    binary_keys: frozenset[str] = frozenset()  # a ConfigMap's binaryData keys


class CopyState(enum.StrEnum):
    """The state of one blueprint × namespace pair, as `check` reports it and metrics count it."""

    IN_SYNC = "in_sync"
    MISSING = "missing"
    DRIFTED = "drifted"
    CONFLICT = "conflict"
    EXCLUDED = "excluded"
    #: The operator's copy in a namespace that is no longer a target, kept because PRUNE is off:
    #: it no longer follows the blueprint, so it is not fine (unlike ``excluded``).
    STALE = "stale"
    BLUEPRINT_MISSING = "blueprint_missing"
    REFUSED = "refused"
    ORPHANED = "orphaned"


class ActionKind(enum.StrEnum):
    """What the writer does. ``replace`` is a delete then a create, reported as one action."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True)
class Action:
    """One write the planner wants, with the preconditions that keep it from clobbering anything.

    ``resource_version`` is that of the object the plan was made from: the writer sends it as a
    precondition so that a Secret changed or replaced meanwhile is not overwritten or deleted
    (the API answers 409, and the namespace is reconciled again from fresh state). A Secret
    deleted and created again has a new resourceVersion, so no uid is needed for that.
    ``body`` is the full Secret for create/replace and a JSON merge patch for update.
    """

    kind: ActionKind
    namespace: str
    name: str
    blueprint: BlueprintRef
    reason: str
    body: Mapping[str, Any] | None = dataclasses.field(default=None, repr=False)
    resource_version: str | None = None
    hash: str = dataclasses.field(default="", repr=False)

    def describe(self) -> str:
        kind = self.blueprint.kind
        return f"{self.kind} {kind} {self.namespace}/{self.name} from {self.blueprint}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the report: a blueprint, a namespace, the state, and why.

    ``name`` is the copy's name (the blueprint's target name, or an earlier one for a stale
    copy left by a rename); ``rule`` names what excluded the namespace (``excluded``/``stale``).
    ``prune_in`` is set while the operator's copy of a missing blueprint waits out the prune
    grace: the seconds left before it is deleted, unless the blueprint returns.
    """

    blueprint: BlueprintRef
    namespace: str
    state: CopyState
    detail: str = ""
    prune_in: float | None = None
    name: str = ""
    rule: str = ""


@dataclasses.dataclass(frozen=True)
class NamespacePlan:
    """Everything planning concluded about one namespace.

    ``recheck_after``: plan this namespace again after so many seconds, even if nothing changes
    (a prune grace ends then); None when only a change can alter the plan.
    """

    namespace: str
    rows: tuple[Row, ...]
    actions: tuple[Action, ...]
    recheck_after: float | None = None
