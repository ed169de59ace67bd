"""Pure planning: which namespaces a blueprint targets, what its copy must be, and what to write.

Everything here is a function of values (settings, the cached blueprints, one namespace and the
Secrets and ConfigMaps in it named like a copy); nothing here does I/O. The controller calls
:func:`plan_namespace` for one namespace at a time and hands the actions to the writer, which is
what makes the operator level-triggered: creation, updates, drift repair, resync and start-up all
go through this one function.

Rules that protect users, in one place:
- a Secret is *ours* only when it carries ``app.kubernetes.io/managed-by=secrets-operator`` and
  ``secrets-operator.io/source=<this blueprint>``; anything else with the same name is a conflict,
  never overwritten unless the conflict policy is ``adopt``, and never deleted, not even to be
  replaced (a type change or an immutable Secret): such a twin stays a conflict under ``adopt``;
- the blueprint itself, in its home namespace, is never a target;
- terminating namespaces are left alone;
- PRUNE deletes the copies of a missing blueprint only once it has been missing for the grace
  period (the caller says for how long; planning keeps no clock), so that a blueprint deleted
  and created again keeps its copies;
- nothing is written when the copy already matches (hash, type, immutability and our metadata);
- no value computed from the data is ever written into metadata: the copy's own observed data is
  hashed in memory and compared with the blueprint's (a digest in an annotation would be an offline
  guessing oracle for anyone who may read metadata but not data); a copy of ours that still
  carries the digest earlier versions wrote loses it, whatever the state of its pair;
- a value read from an object the operator does not own (another Secret's source annotation or
  type) enters a row's detail, and so a log line and an Event note, only through
  :func:`untrusted`: quoted, control and invisible characters escaped, and cut short, so that
  nobody who may create a Secret can write lines into the operator's output or push the other
  namespaces out of an aggregated Event.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from secrets_operator.model import (
    COPIED_ANNOTATIONS_ANNOTATION,
    COPIED_LABELS_ANNOTATION,
    EXCLUDE_LABEL,
    LAST_APPLIED_ANNOTATION,
    LEGACY_HASH_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SOURCE_ANNOTATION,
    Action,
    ActionKind,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    CopyState,
    Kind,
    NamespaceInfo,
    NamespacePlan,
    Row,
)
from secrets_operator.selectors import LabelSelector, matches_any

ConflictPolicy = Literal["skip", "adopt"]

#: Metadata keys never copied from a blueprint, whatever SECRETS_OPERATOR_COPY_METADATA says:
#: tracking keys make Helm or Argo CD claim (or prune) the copies, and ours are set by the operator.
NEVER_COPIED = (
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "meta.helm.sh/*",
    "helm.sh/*",
    "argocd.argoproj.io/*",
    LAST_APPLIED_ANNOTATION,
    "secrets-operator.io/*",
)


@dataclasses.dataclass(frozen=True)
class BlueprintSpec:
    """One configured blueprint: where it is, what its copies are called, and where they go.

    ``None`` in a targeting field means "the global setting" (:class:`Policy`); ``target_name``
    empty means the source's own name. ``previous_target_names`` are names its copies had before a
    rename: copies of this blueprint found under them are reported as stale (pruned with PRUNE).
    """

    ref: BlueprintRef
    target_name: str = ""
    selector: LabelSelector | None = None
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    previous_target_names: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """The name of every copy."""
        return self.target_name or self.ref.name

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a copy of this blueprint may have: the target first, then earlier ones."""
        return (self.target, *(name for name in self.previous_target_names if name != self.target))


@dataclasses.dataclass(frozen=True)
class Policy:
    """The settings planning depends on, and nothing else.

    The targeting fields (selector, include, exclude) are the defaults of every blueprint in
    ``blueprints`` that does not set its own.
    """

    selector: LabelSelector = dataclasses.field(default_factory=LabelSelector)
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")
    conflict_policy: ConflictPolicy = "skip"
    prune: bool = False
    #: How long a blueprint must have been missing before PRUNE deletes its copies.
    prune_grace_seconds: float = 60.0
    copy_metadata: tuple[str, ...] = ()
    blueprints: tuple[BlueprintSpec, ...] = ()

    @functools.cached_property
    def _specs(self) -> dict[BlueprintRef, BlueprintSpec]:
        return {spec.ref: spec for spec in self.blueprints}

    def spec(self, ref: BlueprintRef) -> BlueprintSpec:
        """The blueprint's configuration; one with every default when it is not configured."""
        return self._specs.get(ref) or BlueprintSpec(ref)

    @functools.cached_property
    def sources(self) -> frozenset[tuple[Kind, str, str]]:
        """(kind, namespace, name) of every blueprint: objects no copy may ever be."""
        return frozenset((spec.ref.kind, spec.ref.namespace, spec.ref.name) for spec in self.blueprints)

    @functools.cached_property
    def selectors(self) -> tuple[LabelSelector, ...]:
        """The global selector and every blueprint's own."""
        own = (spec.selector for spec in self.blueprints if spec.selector is not None)
        return (self.selector, *own)

    @functools.cached_property
    def namespace_label_keys(self) -> frozenset[str]:
        """The namespace labels planning can ever look at: every selector's keys and the opt-out."""
        keys = {requirement.key for selector in self.selectors for requirement in selector.requirements}
        return frozenset({*keys, EXCLUDE_LABEL})


#: Why a namespace is not a target, as ``check`` and the metrics name it.
ExclusionRule = Literal["terminating", "home", "source", "opt_out", "exclude", "include", "selector"]


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """Which rule keeps a namespace from being a blueprint's target, and the sentence that says so."""

    rule: ExclusionRule
    detail: str


#: How many characters of an untrusted value a detail shows, escapes included (a DNS label's 63).
UNTRUSTED_LIMIT = 63


def untrusted(value: str, limit: int = UNTRUSTED_LIMIT) -> str:
    """``value`` quoted as ``repr`` quotes it, at most ``limit`` characters between the quotes.

    ``repr`` escapes what is not printable (newlines, bidi overrides, other control characters),
    so the value cannot pose as the operator's own text. A longer value is cut and marked with
    its length: ``'abc'… (500 characters)``.
    """
    if len(repr(value)) <= limit + 2:
        return repr(value)
    shown = value[:limit]
    while len(repr(shown)) > limit + 2:  # escapes take several characters each
        shown = shown[:-1]
    return f"{shown!r}… ({len(value):,} characters)"


def content_hash(
    secret_type: str, data: Mapping[str, str] | None, binary_data: Mapping[str, str] | None = None
) -> str:
    """sha256 over the type and the data (values as the API returns them), key order ignored.

    A Secret's is over its type and data (base64); a ConfigMap's (type "") over data and
    binaryData. Compared in memory only, never written anywhere.
    """
    content: dict[str, Any] = {"type": secret_type, "data": dict(data or {})}
    if binary_data:
        content["binaryData"] = dict(binary_data)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def object_hash(kind: Kind, obj: Mapping[str, Any]) -> str:
    """:func:`content_hash` of a Secret or ConfigMap as the API returns it."""
    if kind is Kind.CONFIG_MAP:
        return content_hash("", obj.get("data") or {}, obj.get("binaryData") or {})
    return content_hash(obj.get("type") or "Opaque", obj.get("data") or {})


def refusal(blueprint: Blueprint) -> str | None:
    """Why a blueprint must not be copied at all, or None."""
    if blueprint.ref.kind is Kind.SECRET and blueprint.type == SERVICE_ACCOUNT_TOKEN_TYPE:
        return (
            "service-account-token Secrets are bound to one ServiceAccount in one namespace; "
            "a copy would be a credential the cluster neither issued nor revokes"
        )
    return None


def excluded_by(policy: Policy, ref: BlueprintRef, namespace: NamespaceInfo) -> Exclusion | None:
    """Which rule keeps ``namespace`` from being a target of blueprint ``ref``, or None.

    A blueprint's own option wins over the global setting; the detail says which one applied.
    """
    spec = policy.spec(ref)
    if namespace.terminating:
        return Exclusion("terminating", "namespace is terminating")
    if namespace.name == ref.namespace:
        return Exclusion("home", "home namespace of the blueprint")
    if (ref.kind, namespace.name, spec.target) in policy.sources:
        return Exclusion(
            "source", f"the copy would be the blueprint {ref.kind} {namespace.name}/{spec.target} itself"
        )
    if namespace.labels.get(EXCLUDE_LABEL) == "true":
        return Exclusion("opt_out", f"opted out with label {EXCLUDE_LABEL}=true")
    if spec.exclude is not None:
        if matches_any(namespace.name, spec.exclude):
            return Exclusion("exclude", "matched by the blueprint's excludeNamespaces")
    elif matches_any(namespace.name, policy.exclude):
        return Exclusion("exclude", "matched by EXCLUDE_NAMESPACES")
    if spec.include is not None:
        if not matches_any(namespace.name, spec.include):
            return Exclusion("include", "not matched by the blueprint's includeNamespaces")
    elif not matches_any(namespace.name, policy.include):
        return Exclusion("include", "not matched by INCLUDE_NAMESPACES")
    if spec.selector is not None:
        if not spec.selector.matches(namespace.labels):
            return Exclusion("selector", "not matched by the blueprint's namespaceSelector")
    elif not policy.selector.matches(namespace.labels):
        return Exclusion("selector", "not matched by NAMESPACE_SELECTOR")
    return None


def exclusion(policy: Policy, ref: BlueprintRef, namespace: NamespaceInfo) -> str | None:
    """Why ``namespace`` is not a target of blueprint ``ref``, or None when it is one."""
    found = excluded_by(policy, ref, namespace)
    return found.detail if found else None


def is_ours(copy: CopyInfo, ref: BlueprintRef) -> bool:
    return copy.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and copy.annotations.get(
        SOURCE_ANNOTATION
    ) == str(ref)


def _copyable(key: str, policy: Policy) -> bool:
    """Whether COPY_METADATA copies a label or annotation with this key."""
    return matches_any(key, policy.copy_metadata) and not matches_any(key, NEVER_COPIED)


def _copied(metadata: Mapping[str, str], policy: Policy) -> dict[str, str]:
    return {key: value for key, value in metadata.items() if _copyable(key, policy)}


def relevant_namespace_labels(labels: Mapping[str, str], policy: Policy) -> dict[str, str]:
    """The namespace labels planning can ever look at: the selector's keys and the opt-out label.

    Caches keep only these, so memory does not grow with labels nobody selects on.
    """
    keys = policy.namespace_label_keys
    return {key: value for key, value in labels.items() if key in keys}


def relevant_copy_metadata(
    labels: Mapping[str, str], annotations: Mapping[str, str], policy: Policy
) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations of a Secret that planning can ever compare.

    Ownership marks, keys COPY_METADATA can copy, and keys the operator recorded as copied
    earlier (which it may have to remove). Everything else on a copy belongs to someone else.
    """
    recorded_labels = set(annotations.get(COPIED_LABELS_ANNOTATION, "").split(","))
    recorded_annotations = set(annotations.get(COPIED_ANNOTATIONS_ANNOTATION, "").split(","))
    kept_labels = {
        key: value
        for key, value in labels.items()
        if key == MANAGED_BY_LABEL or key in recorded_labels or _copyable(key, policy)
    }
    kept_annotations = {
        key: value
        for key, value in annotations.items()
        if key.startswith("secrets-operator.io/") or key in recorded_annotations or _copyable(key, policy)
    }
    return kept_labels, kept_annotations


@dataclasses.dataclass(frozen=True)
class Marks:
    """The labels and annotations every copy of a blueprint must carry (computed once per pair)."""

    labels: dict[str, str]
    annotations: dict[str, str]


def desired_marks(blueprint: Blueprint, policy: Policy) -> Marks:
    """Copied metadata, the ownership marks, and the record of what was copied (for removal)."""
    labels = _copied(blueprint.labels, policy)
    annotations = _copied(blueprint.annotations, policy)
    wanted = {**annotations, SOURCE_ANNOTATION: str(blueprint.ref)}
    if labels:
        wanted[COPIED_LABELS_ANNOTATION] = ",".join(sorted(labels))
    if annotations:
        wanted[COPIED_ANNOTATIONS_ANNOTATION] = ",".join(sorted(annotations))
    return Marks({**labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE}, wanted)


def _recorded(copy: CopyInfo, annotation: str) -> set[str]:
    return {key for key in copy.annotations.get(annotation, "").split(",") if key}


def stale_metadata(copy: CopyInfo, marks: Marks) -> tuple[set[str], set[str]]:
    """Labels and annotations the operator wrote earlier that the copy must no longer have.

    That includes the digest of the data earlier versions wrote (``LEGACY_HASH_ANNOTATION``): a
    copy that still carries it gets one metadata-only patch that removes it.
    """
    labels = _recorded(copy, COPIED_LABELS_ANNOTATION) - marks.labels.keys()
    annotations = _recorded(copy, COPIED_ANNOTATIONS_ANNOTATION) - marks.annotations.keys()
    for bookkeeping in (COPIED_LABELS_ANNOTATION, COPIED_ANNOTATIONS_ANNOTATION, LEGACY_HASH_ANNOTATION):
        if bookkeeping in copy.annotations and bookkeeping not in marks.annotations:
            annotations.add(bookkeeping)
    return {key for key in labels if key in copy.labels}, {
        key for key in annotations if key in copy.annotations
    }


def desired_object(blueprint: Blueprint, namespace: str, marks: Marks, *, name: str = "") -> dict[str, Any]:
    """The full Secret or ConfigMap a copy named ``name`` (default: the source's) in ``namespace`` must be."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": str(blueprint.ref.kind),
        "metadata": {
            "name": name or blueprint.ref.name,
            "namespace": namespace,
            "labels": dict(marks.labels),
            "annotations": dict(marks.annotations),
        },
    }
    if blueprint.ref.kind is Kind.SECRET:
        body["type"] = blueprint.type
        body["data"] = dict(blueprint.data)
    else:
        if blueprint.data:
            body["data"] = dict(blueprint.data)
        if blueprint.binary_data:
            body["binaryData"] = dict(blueprint.binary_data)
    if blueprint.immutable:
        body["immutable"] = True
    return body


def _differences(copy: CopyInfo, blueprint: Blueprint, marks: Marks) -> list[str]:
    """What differs between a copy and what it must be (names of fields, never values)."""
    found = []
    if copy.type != blueprint.type:
        found.append("type")
    if copy.data_hash != blueprint.hash:
        found.append("data")
    if copy.immutable != blueprint.immutable:
        found.append("immutable")
    stale_labels, stale_annotations = stale_metadata(copy, marks)
    if stale_labels or any(copy.labels.get(key) != value for key, value in marks.labels.items()):
        found.append("labels")
    if stale_annotations or any(
        copy.annotations.get(key) != value for key, value in marks.annotations.items()
    ):
        found.append("annotations")
    return found


def _merge_patch(copy: CopyInfo, blueprint: Blueprint, marks: Marks, *, data_changes: bool) -> dict[str, Any]:
    """A JSON merge patch that makes ``copy`` exact, leaving others' labels and annotations alone.

    ``metadata.resourceVersion`` makes it conditional: if the copy changed since it was observed,
    the API server refuses the patch with 409 instead of applying it over the change.
    """
    stale_labels, stale_annotations = stale_metadata(copy, marks)
    labels: dict[str, str | None] = dict.fromkeys(stale_labels)
    labels.update(marks.labels)
    annotations: dict[str, str | None] = dict.fromkeys(stale_annotations)
    annotations.update(marks.annotations)
    patch: dict[str, Any] = {
        "metadata": {"resourceVersion": copy.resource_version, "labels": labels, "annotations": annotations},
    }
    if data_changes:
        data: dict[str, str | None] = dict.fromkeys(copy.data_keys - blueprint.data.keys())
        data.update(blueprint.data)
        patch["data"] = data
        if blueprint.ref.kind is Kind.CONFIG_MAP and (copy.binary_keys or blueprint.binary_data):
            binary: dict[str, str | None] = dict.fromkeys(copy.binary_keys - blueprint.binary_data.keys())
            binary.update(blueprint.binary_data)
            patch["binaryData"] = binary
    if copy.immutable != blueprint.immutable:
        patch["immutable"] = True if blueprint.immutable else None
    return patch


def _needs_replace(copy: CopyInfo, blueprint: Blueprint, differences: list[str]) -> str | None:
    """Why an in-place update is impossible (so the copy must be deleted and created), or None."""
    if "type" in differences:
        return (
            f"its type is {untrusted(copy.type)}, not {untrusted(blueprint.type)}, "
            "and the type of a Secret cannot be changed in place"
        )
    if copy.immutable and ("data" in differences or "immutable" in differences):
        return f"the existing {blueprint.ref.kind} is immutable"
    return None


def _write_for(
    copy: CopyInfo,
    blueprint: Blueprint,
    namespace: str,
    marks: Marks,
    differences: list[str],
    *,
    why: str,
) -> Action:
    replace_reason = _needs_replace(copy, blueprint, differences)
    if replace_reason is not None:
        return Action(
            kind=ActionKind.REPLACE,
            namespace=namespace,
            name=copy.name,
            blueprint=blueprint.ref,
            reason=f"{why}; {replace_reason}",
            body=desired_object(blueprint, namespace, marks, name=copy.name),
            resource_version=copy.resource_version,
            hash=blueprint.hash,
        )
    return Action(
        kind=ActionKind.UPDATE,
        namespace=namespace,
        name=copy.name,
        blueprint=blueprint.ref,
        reason=why,
        body=_merge_patch(copy, blueprint, marks, data_changes="data" in differences),
        resource_version=copy.resource_version,
        hash=blueprint.hash,
    )


def _delete(copy: CopyInfo, ref: BlueprintRef, why: str) -> Action:
    return Action(
        kind=ActionKind.DELETE,
        namespace=copy.namespace,
        name=copy.name,
        blueprint=ref,
        reason=why,
        resource_version=copy.resource_version,
    )


def _missing_blueprint(
    policy: Policy, ref: BlueprintRef, namespace: str, copy: CopyInfo, missing_for: float | None
) -> tuple[Row, Action | None]:
    """The operator's copy of a blueprint that does not exist, with PRUNE on.

    A blueprint deleted and created again (``kubectl replace --force``, Argo CD ``Replace=true``,
    rotating an immutable blueprint) is briefly missing: its copies are deleted only once it has
    been missing for the grace period. ``missing_for`` is how long the caller has seen it missing;
    None when it cannot know (a one-shot command), and then nothing is deleted.
    """
    grace = policy.prune_grace_seconds
    if missing_for is None:
        detail = (
            f"blueprint does not exist; the running operator prunes the copy {grace:g} s after it "
            "sees the blueprint missing, unless it returns"
        )
        return Row(ref, namespace, CopyState.BLUEPRINT_MISSING, detail, name=copy.name), None
    if missing_for < grace:
        left = grace - missing_for
        detail = f"blueprint does not exist; the copy is pruned in {math.ceil(left)} s unless it returns"
        return Row(ref, namespace, CopyState.BLUEPRINT_MISSING, detail, prune_in=left, name=copy.name), None
    why = f"blueprint missing for {missing_for:.0f} s (PRUNE_GRACE_SECONDS={grace:g})"
    return Row(ref, namespace, CopyState.ORPHANED, why, name=copy.name), _delete(copy, ref, f"pruned: {why}")


def _without_legacy_digest(copy: CopyInfo, ref: BlueprintRef) -> Action:
    """A metadata-only patch that removes the data digest earlier versions wrote (nothing else)."""
    return Action(
        kind=ActionKind.UPDATE,
        namespace=copy.namespace,
        name=copy.name,
        blueprint=ref,
        reason=f"removing {LEGACY_HASH_ANNOTATION}, a digest of the data earlier versions wrote",
        body={
            "metadata": {
                "resourceVersion": copy.resource_version,
                "annotations": {LEGACY_HASH_ANNOTATION: None},
            }
        },
        resource_version=copy.resource_version,
    )


def plan_pair(
    policy: Policy,
    ref: BlueprintRef,
    blueprint: Blueprint | None,
    namespace: NamespaceInfo,
    copy: CopyInfo | None,
    *,
    missing_for: float | None = None,
) -> tuple[Row, Action | None]:
    """The state of one blueprint × namespace pair, and the one write that fixes it (if any).

    ``missing_for``: when ``blueprint`` is None, the seconds it has been seen missing (None:
    unknown), which decides whether PRUNE may delete the copy yet.

    A copy of ours that still carries the data digest earlier versions wrote loses it whatever
    the pair's state: copies planning never compares (stale, refused, of a missing blueprint)
    would otherwise keep that guessing oracle forever.
    """
    row, action = _plan_pair(policy, ref, blueprint, namespace, copy, missing_for=missing_for)
    if (
        action is None
        and copy is not None
        and LEGACY_HASH_ANNOTATION in copy.annotations
        and not namespace.terminating
        and namespace.name != ref.namespace
        and (ref.kind, namespace.name, copy.name) not in policy.sources
        and is_ours(copy, ref)
    ):
        action = _without_legacy_digest(copy, ref)
    return row, action


def plan_renamed(
    policy: Policy, ref: BlueprintRef, namespace: NamespaceInfo, copy: CopyInfo
) -> tuple[Row, Action | None] | None:
    """The operator's copy under one of the blueprint's earlier target names (``previousTargetNames``).

    It no longer follows the blueprint: reported as stale, deleted only with PRUNE. Whatever is
    under that name and not the operator's copy of this blueprint is none of its business (None).
    """
    if (
        namespace.terminating
        or namespace.name == ref.namespace
        or (ref.kind, namespace.name, copy.name) in policy.sources
        or not is_ours(copy, ref)
    ):
        return None
    target = policy.spec(ref).target
    detail = f"named {copy.name!r}, an earlier target name of the blueprint (now {target!r})"
    if policy.prune:
        return Row(ref, namespace.name, CopyState.ORPHANED, detail, name=copy.name, rule="renamed"), _delete(
            copy, ref, f"pruned: {detail}"
        )
    stale = f"{detail}; it stays (PRUNE is off) and no longer follows the blueprint"
    return Row(ref, namespace.name, CopyState.STALE, stale, name=copy.name, rule="renamed"), None


def _plan_pair(
    policy: Policy,
    ref: BlueprintRef,
    blueprint: Blueprint | None,
    namespace: NamespaceInfo,
    copy: CopyInfo | None,
    *,
    missing_for: float | None,
) -> tuple[Row, Action | None]:
    target = policy.spec(ref).target

    def row(state: CopyState, detail: str = "", rule: str = "") -> Row:
        return Row(ref, namespace.name, state, detail, name=target, rule=rule)

    if namespace.terminating:
        return row(CopyState.EXCLUDED, "namespace is terminating", "terminating"), None
    ours = copy is not None and is_ours(copy, ref)
    excluded = excluded_by(policy, ref, namespace)
    if excluded is not None:
        if copy is not None and ours and excluded.rule not in ("home", "source"):
            if policy.prune:
                return row(CopyState.ORPHANED, excluded.detail, excluded.rule), _delete(
                    copy, ref, f"pruned: namespace {excluded.detail}"
                )
            return row(
                CopyState.STALE,
                f"{excluded.detail}; the copy made earlier stays (PRUNE is off) and no longer follows "
                "the blueprint",
                excluded.rule,
            ), None
        return row(CopyState.EXCLUDED, excluded.detail, excluded.rule), None
    if blueprint is None:
        if copy is not None and ours and policy.prune:
            return _missing_blueprint(policy, ref, namespace.name, copy, missing_for)
        return row(CopyState.BLUEPRINT_MISSING, "blueprint does not exist"), None
    refused = refusal(blueprint)
    if refused is not None:
        return row(CopyState.REFUSED, refused), None
    marks = desired_marks(blueprint, policy)
    if copy is None:
        return row(CopyState.MISSING), Action(
            kind=ActionKind.CREATE,
            namespace=namespace.name,
            name=target,
            blueprint=ref,
            reason="copy missing",
            body=desired_object(blueprint, namespace.name, marks, name=target),
            hash=blueprint.hash,
        )
    differences = _differences(copy, blueprint, marks)
    if not ours:
        detail = f"a {ref.kind} with this name exists and was not created by secrets-operator"
        if copy.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE:
            source = copy.annotations.get(SOURCE_ANNOTATION, "")
            detail = (
                f"a {ref.kind} with this name is managed by secrets-operator for another source "
                f"{untrusted(source)}"
            )
        if policy.conflict_policy == "adopt":
            unadoptable = _needs_replace(copy, blueprint, differences)
            if unadoptable is not None:
                # Replacing is a delete, and a Secret the operator does not own is never deleted.
                return row(
                    CopyState.CONFLICT,
                    f"{detail}; not adopted: {unadoptable}, and secrets-operator never deletes "
                    f"a {ref.kind} it does not own (delete it, and the copy is created)",
                ), None
            # Every field is rewritten, whatever the comparison says: the markers are missing anyway.
            return row(CopyState.CONFLICT, detail + "; adopting it"), _write_for(
                copy, blueprint, namespace.name, marks, differences, why=f"adopting an unmanaged {ref.kind}"
            )
        return row(CopyState.CONFLICT, detail), None
    if not differences:
        return row(CopyState.IN_SYNC), None
    drifted = ", ".join(differences)
    return row(CopyState.DRIFTED, f"differs in {drifted}"), _write_for(
        copy, blueprint, namespace.name, marks, differences, why=f"copy differs in {drifted}"
    )


def plan_namespace(
    policy: Policy,
    *,
    namespace: NamespaceInfo | None,
    name: str,
    blueprints: Mapping[BlueprintRef, Blueprint | None],
    copies: Mapping[tuple[Kind, str], CopyInfo],
    missing_for: Mapping[BlueprintRef, float] | None = None,
) -> NamespacePlan:
    """Rows and writes for every configured blueprint in one namespace.

    ``copies`` holds the objects in the namespace named like a copy, by kind and name.
    ``namespace`` is None when the namespace is not (or no longer) in the cache: then nothing is
    written, since its objects are being deleted with it. ``missing_for`` holds, for blueprints
    that do not exist, how many seconds they have been seen missing (absent: unknown).
    """
    if namespace is None:
        return NamespacePlan(name, (), ())
    rows: list[Row] = []
    actions: list[Action] = []
    for ref, blueprint in sorted(blueprints.items(), key=lambda item: item[0]):
        spec = policy.spec(ref)
        row, action = plan_pair(
            policy,
            ref,
            blueprint,
            namespace,
            copies.get((ref.kind, spec.target)),
            missing_for=(missing_for or {}).get(ref),
        )
        rows.append(row)
        if action is not None:
            actions.append(action)
        for earlier in spec.names[1:]:
            copy = copies.get((ref.kind, earlier))
            found = plan_renamed(policy, ref, namespace, copy) if copy is not None else None
            if found is not None:
                rows.append(found[0])
                if found[1] is not None:
                    actions.append(found[1])
    waits = [row.prune_in for row in rows if row.prune_in is not None]
    return NamespacePlan(name, tuple(rows), tuple(actions), min(waits) if waits else None)
