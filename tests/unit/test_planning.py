"""Planning decides every write the operator makes, so its rules are the operator's safety rules.

Each test builds a blueprint, a namespace and (maybe) the Secret already there, and checks the one
write the planner asks for: a create with the exact body, no write when the copy is in sync, a
conditional merge patch for drift, a replace where Kubernetes forbids an in-place change, and
never a write to a Secret the operator does not own, to a terminating namespace or to the
blueprint's home. It also checks that secret data never leaks through ``repr``.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from secrets_operator.model import (
    Action,
    ActionKind,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    CopyState,
    Kind,
    NamespaceInfo,
    Row,
)
from secrets_operator.planning import Policy, content_hash, exclusion, plan_namespace, plan_pair
from secrets_operator.selectors import parse_label_selector
from tests.support import data_digests

REF = BlueprintRef("auth", "htpasswd")
OTHER_REF = BlueprintRef("registry", "pull-secret")
TARGET = NamespaceInfo("team-a", {})
HOME = NamespaceInfo("auth", {})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


DATA = {"auth": b64("alice:$apr1$x"), "realm": b64("staff")}


def blueprint(
    *,
    ref: BlueprintRef = REF,
    of_type: str = "Opaque",
    data: Mapping[str, str] = DATA,
    immutable: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Blueprint:
    return Blueprint(
        ref=ref,
        type=of_type,
        data=dict(data),
        immutable=immutable,
        labels=labels or {},
        annotations=annotations or {},
        hash=content_hash(of_type, data),
        resource_version="7",
        uid="uid-blueprint",
    )


def our_copy(source: Blueprint, namespace: str = "team-a", **changes: Any) -> CopyInfo:
    """The Secret the operator would have written for ``source`` (default policy), with ``changes``."""
    copy = CopyInfo(
        namespace=namespace,
        name=source.ref.name,
        resource_version="42",
        type=source.type,
        immutable=source.immutable,
        labels={"app.kubernetes.io/managed-by": "secrets-operator"},
        annotations={"secrets-operator.io/source": str(source.ref)},
        data_hash=source.hash,
        data_keys=frozenset(source.data),
    )
    return dataclasses.replace(copy, **changes)


def foreign_secret(source: Blueprint, namespace: str = "team-a") -> CopyInfo:
    """A same-named Secret someone else created, with different data."""
    data = {"password": b64("theirs")}
    return our_copy(
        source,
        namespace,
        labels={"app": "legacy"},
        annotations={},
        data_hash=content_hash(source.type, data),
        data_keys=frozenset(data),
    )


def body_of(action: Action | None) -> Mapping[str, Any]:
    assert action is not None
    assert action.body is not None
    return action.body


# -- content_hash


def test_content_hash_is_the_same_for_the_same_secret_whatever_the_key_order() -> None:
    forward = content_hash("Opaque", {"a": b64("1"), "b": b64("2")})
    backward = content_hash("Opaque", {"b": b64("2"), "a": b64("1")})
    assert forward == backward == content_hash("Opaque", {"a": b64("1"), "b": b64("2")})
    assert len(forward) == 64
    assert set(forward) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    ("secret_type", "data"),
    [
        ("kubernetes.io/basic-auth", DATA),
        ("Opaque", {**DATA, "auth": b64("bob:$apr1$y")}),
        ("Opaque", {**DATA, "extra": b64("x")}),
        ("Opaque", {"auth": DATA["auth"]}),
        ("Opaque", {"AUTH": DATA["auth"], "realm": DATA["realm"]}),
    ],
)
def test_content_hash_changes_when_type_or_data_change(secret_type: str, data: Mapping[str, str]) -> None:
    assert content_hash(secret_type, data) != content_hash("Opaque", DATA)


def test_secret_without_data_hashes_like_one_with_empty_data() -> None:
    assert content_hash("Opaque", None) == content_hash("Opaque", {})


# -- exclusion


@pytest.mark.parametrize(
    ("policy", "namespace", "fragment"),
    [
        (Policy(), HOME, "home namespace"),
        (Policy(include=("auth",)), HOME, "home namespace"),
        (Policy(), NamespaceInfo("team-a", {"secrets-operator.io/exclude": "true"}), "opted out"),
        (Policy(), NamespaceInfo("kube-system", {}), "EXCLUDE_NAMESPACES"),
        (Policy(exclude=("team-*",)), NamespaceInfo("team-a", {}), "EXCLUDE_NAMESPACES"),
        (Policy(include=("team-*",), exclude=("team-a",)), TARGET, "EXCLUDE_NAMESPACES"),
        (Policy(include=("team-*",)), NamespaceInfo("payments", {}), "INCLUDE_NAMESPACES"),
        (Policy(include=("team-*",)), NamespaceInfo("x-team-a", {}), "INCLUDE_NAMESPACES"),
        (
            Policy(selector=parse_label_selector("env=prod")),
            NamespaceInfo("team-a", {"env": "dev"}),
            "NAMESPACE_SELECTOR",
        ),
    ],
)
def test_namespace_outside_the_policy_is_excluded_with_the_reason(
    policy: Policy, namespace: NamespaceInfo, fragment: str
) -> None:
    reason = exclusion(policy, REF, namespace)
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize(
    ("policy", "namespace"),
    [
        (Policy(), TARGET),
        (Policy(), NamespaceInfo("team-a", {"secrets-operator.io/exclude": "false"})),
        (Policy(include=("team-*",)), TARGET),
        (Policy(exclude=()), NamespaceInfo("kube-system", {})),
        (Policy(selector=parse_label_selector("env=prod")), NamespaceInfo("team-a", {"env": "prod"})),
    ],
)
def test_namespace_within_the_policy_is_a_target(policy: Policy, namespace: NamespaceInfo) -> None:
    assert exclusion(policy, REF, namespace) is None


# -- a missing copy is created


def test_missing_copy_is_created_with_the_full_secret() -> None:
    source = blueprint()
    row, action = plan_pair(Policy(), REF, source, TARGET, None)
    assert row.state is CopyState.MISSING
    assert action is not None
    assert action.kind is ActionKind.CREATE
    assert (action.namespace, action.name, action.blueprint) == ("team-a", "htpasswd", REF)
    assert action.hash == source.hash
    assert action.body == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "htpasswd",
            "namespace": "team-a",
            "labels": {"app.kubernetes.io/managed-by": "secrets-operator"},
            "annotations": {"secrets-operator.io/source": "auth/htpasswd"},
        },
        "type": "Opaque",
        "data": DATA,
    }


def test_copy_of_an_immutable_blueprint_is_created_immutable() -> None:
    _, action = plan_pair(Policy(), REF, blueprint(immutable=True), TARGET, None)
    assert body_of(action)["immutable"] is True


# -- an exact copy is left alone


def test_copy_in_sync_needs_no_write() -> None:
    source = blueprint()
    row, action = plan_pair(Policy(), REF, source, TARGET, our_copy(source))
    assert row.state is CopyState.IN_SYNC
    assert action is None


def test_labels_and_annotations_added_by_others_are_not_drift() -> None:
    source = blueprint()
    copy = our_copy(source)
    decorated = dataclasses.replace(
        copy,
        labels={**copy.labels, "team": "a"},
        annotations={**copy.annotations, "reloader.stakater.com/match": "true"},
    )
    row, action = plan_pair(Policy(), REF, source, TARGET, decorated)
    assert row.state is CopyState.IN_SYNC
    assert action is None


def test_namespace_whose_copies_are_all_in_sync_gets_zero_writes() -> None:
    first, second = blueprint(), blueprint(ref=OTHER_REF, of_type="kubernetes.io/dockerconfigjson")
    plan = plan_namespace(
        Policy(),
        namespace=TARGET,
        name="team-a",
        blueprints={REF: first, OTHER_REF: second},
        copies={(Kind.SECRET, "htpasswd"): our_copy(first), (Kind.SECRET, "pull-secret"): our_copy(second)},
    )
    assert plan.actions == ()
    assert [row.state for row in plan.rows] == [CopyState.IN_SYNC, CopyState.IN_SYNC]


# -- drift is repaired


def test_edited_copy_is_restored_by_a_conditional_merge_patch() -> None:
    source = blueprint()
    edited = {"auth": b64("mallory:$apr1$z"), "stale": b64("old")}
    copy = our_copy(source, data_hash=content_hash("Opaque", edited), data_keys=frozenset(edited))
    row, action = plan_pair(Policy(), REF, source, TARGET, copy)
    assert row.state is CopyState.DRIFTED
    assert "data" in row.detail
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    assert action.resource_version == "42"
    patch = body_of(action)
    assert patch["metadata"]["resourceVersion"] == "42"
    assert patch["data"] == {**DATA, "stale": None}


def test_copy_still_carrying_the_old_data_digest_annotation_loses_it_in_a_metadata_only_patch() -> None:
    source = blueprint()
    copy = our_copy(
        source,
        annotations={
            "secrets-operator.io/source": "auth/htpasswd",
            "secrets-operator.io/source-hash": source.hash,
        },
    )
    row, action = plan_pair(Policy(), REF, source, TARGET, copy)
    assert row.state is CopyState.DRIFTED
    assert row.detail == "differs in annotations"
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    patch = body_of(action)
    assert "data" not in patch
    assert patch["metadata"]["resourceVersion"] == "42"
    assert patch["metadata"]["annotations"] == {
        "secrets-operator.io/source": "auth/htpasswd",
        "secrets-operator.io/source-hash": None,  # merge-patch null removes the key
    }
    # Once removed, the copy is in sync: no further write.
    removed = our_copy(source, annotations={"secrets-operator.io/source": "auth/htpasswd"})
    assert plan_pair(Policy(), REF, source, TARGET, removed) == (
        Row(REF, "team-a", CopyState.IN_SYNC, name="htpasswd"),
        None,
    )


LEGACY_MARKS = {"secrets-operator.io/source": "auth/htpasswd", "secrets-operator.io/source-hash": "e" * 64}
SA_TOKEN = "kubernetes.io/service-account-token"


@pytest.mark.parametrize(
    ("state", "policy", "source", "namespace", "missing_for"),
    [
        # the namespace left the targets, PRUNE off: the copy stays and is never compared again
        (CopyState.STALE, Policy(include=("other-*",)), blueprint(), TARGET, None),
        # the blueprint is gone, PRUNE off: kept until it returns
        (CopyState.BLUEPRINT_MISSING, Policy(), None, TARGET, None),
        # the blueprint is gone, PRUNE on, within the grace
        (CopyState.BLUEPRINT_MISSING, Policy(prune=True), None, TARGET, 5.0),
        # the blueprint is gone, PRUNE on, a one-shot command that cannot know for how long
        (CopyState.BLUEPRINT_MISSING, Policy(prune=True), None, TARGET, None),
        # the blueprint is refused: its old copy is never compared again
        (CopyState.REFUSED, Policy(), blueprint(of_type=SA_TOKEN), TARGET, None),
    ],
    ids=["stale", "blueprint-missing", "within-grace", "one-shot", "refused"],
)
def test_the_old_data_digest_leaves_our_copy_whatever_the_state_of_the_pair(
    state: CopyState,
    policy: Policy,
    source: Blueprint | None,
    namespace: NamespaceInfo,
    missing_for: float | None,
) -> None:
    """A digest of the data is a guessing oracle: it goes even from copies planning never compares."""
    copy = our_copy(blueprint(), annotations=LEGACY_MARKS)
    row, action = plan_pair(policy, REF, source, namespace, copy, missing_for=missing_for)
    assert row.state is state
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    assert action.hash == ""  # the data is not written, so not checked
    assert body_of(action) == {
        "metadata": {"resourceVersion": "42", "annotations": {"secrets-operator.io/source-hash": None}}
    }
    removed = our_copy(blueprint(), annotations={"secrets-operator.io/source": "auth/htpasswd"})
    assert plan_pair(policy, REF, source, namespace, removed)[1] is None


def test_the_old_data_digest_is_left_alone_where_nothing_may_be_written() -> None:
    copy = our_copy(blueprint(), annotations=LEGACY_MARKS)
    terminating = NamespaceInfo("team-a", {}, terminating=True)
    assert plan_pair(Policy(), REF, None, terminating, copy)[1] is None
    assert plan_pair(Policy(), REF, blueprint(), terminating, copy)[1] is None
    foreign = our_copy(blueprint(), labels={}, annotations=LEGACY_MARKS)  # not ours: a conflict
    assert plan_pair(Policy(), REF, None, TARGET, foreign)[1] is None
    assert plan_pair(Policy(), REF, blueprint(), TARGET, foreign)[1] is None
    assert (
        plan_pair(Policy(), REF, blueprint(), HOME, our_copy(blueprint(), "auth", annotations=LEGACY_MARKS))[
            1
        ]
        is None
    )


@pytest.mark.parametrize("situation", ["create", "update", "replace", "adopt"])
def test_no_write_puts_a_digest_of_the_data_in_metadata(situation: str) -> None:
    source = blueprint(immutable=situation == "replace")
    stale = {"auth": b64("old")}
    existing = {
        "create": None,
        "update": our_copy(source, data_hash=content_hash("Opaque", stale), data_keys=frozenset(stale)),
        "replace": our_copy(source, data_hash=content_hash("Opaque", stale), data_keys=frozenset(stale)),
        "adopt": foreign_secret(source),
    }[situation]
    _, action = plan_pair(Policy(conflict_policy="adopt"), REF, source, TARGET, existing)
    metadata = str(body_of(action)["metadata"])
    for what, digest in data_digests(source.type, dict(source.data)).items():
        assert digest not in metadata, f"{situation}: {what} in {metadata}"


def test_copy_with_another_type_is_replaced() -> None:
    source = blueprint(of_type="kubernetes.io/basic-auth", data={"username": b64("a"), "password": b64("b")})
    copy = our_copy(source, type="Opaque", data_hash=content_hash("Opaque", source.data))
    row, action = plan_pair(Policy(), REF, source, TARGET, copy)
    assert row.state is CopyState.DRIFTED
    assert action is not None
    assert action.kind is ActionKind.REPLACE
    assert action.resource_version == "42"
    assert body_of(action)["type"] == "kubernetes.io/basic-auth"
    assert body_of(action)["data"] == source.data


def test_immutable_copy_with_changed_data_is_replaced() -> None:
    source = blueprint(immutable=True)
    stale = {"auth": b64("old")}
    copy = our_copy(source, data_hash=content_hash("Opaque", stale), data_keys=frozenset(stale))
    _, action = plan_pair(Policy(), REF, source, TARGET, copy)
    assert action is not None
    assert action.kind is ActionKind.REPLACE
    assert body_of(action)["data"] == DATA
    assert body_of(action)["immutable"] is True


def test_immutable_copy_of_a_now_mutable_blueprint_is_replaced() -> None:
    source = blueprint(immutable=False)
    _, action = plan_pair(Policy(), REF, source, TARGET, our_copy(source, immutable=True))
    assert action is not None
    assert action.kind is ActionKind.REPLACE
    assert "immutable" not in body_of(action)


def test_mutable_copy_of_a_now_immutable_blueprint_is_made_immutable_in_place() -> None:
    source = blueprint(immutable=True)
    _, action = plan_pair(Policy(), REF, source, TARGET, our_copy(source, immutable=False))
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    assert body_of(action)["immutable"] is True
    assert "data" not in body_of(action)


def test_immutable_copy_with_only_label_drift_is_patched_without_data() -> None:
    policy = Policy(copy_metadata=("team",))
    source = blueprint(immutable=True, labels={"team": "payments"})
    copy = our_copy(source, labels={"app.kubernetes.io/managed-by": "secrets-operator", "team": "billing"})
    row, action = plan_pair(policy, REF, source, TARGET, copy)
    assert row.state is CopyState.DRIFTED
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    patch = body_of(action)
    assert "data" not in patch
    assert patch["metadata"]["labels"]["team"] == "payments"
    assert patch["metadata"]["resourceVersion"] == "42"


# -- Secrets the operator does not own


def test_unmanaged_secret_with_the_same_name_is_reported_and_left_alone() -> None:
    source = blueprint()
    row, action = plan_pair(Policy(conflict_policy="skip"), REF, source, TARGET, foreign_secret(source))
    assert row.state is CopyState.CONFLICT
    assert "not created by secrets-operator" in row.detail
    assert action is None


def test_unmanaged_secret_is_taken_over_when_the_policy_is_adopt() -> None:
    source = blueprint()
    row, action = plan_pair(Policy(conflict_policy="adopt"), REF, source, TARGET, foreign_secret(source))
    assert row.state is CopyState.CONFLICT
    assert "adopting" in row.detail
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    assert action.resource_version == "42"
    patch = body_of(action)
    assert patch["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "secrets-operator"
    assert patch["metadata"]["annotations"]["secrets-operator.io/source"] == "auth/htpasswd"
    assert patch["data"] == {**DATA, "password": None}


def test_adopting_a_secret_with_identical_data_still_marks_it_as_ours() -> None:
    source = blueprint()
    same_data = our_copy(source, labels={}, annotations={})
    _, action = plan_pair(Policy(conflict_policy="adopt"), REF, source, TARGET, same_data)
    assert action is not None
    assert action.kind is ActionKind.UPDATE
    assert body_of(action)["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "secrets-operator"}


@pytest.mark.parametrize(
    ("twin", "because"),
    [
        ("another type", "its type is 'kubernetes.io/basic-auth', not 'Opaque'"),
        ("immutable, other data", "immutable"),
        ("immutable, mutable blueprint", "immutable"),
    ],
)
def test_unmanaged_secret_that_could_only_be_replaced_is_never_adopted(twin: str, because: str) -> None:
    """Replacing is a delete: under adopt, such a twin stays a reported conflict and is not touched."""
    source = blueprint()
    theirs = {
        "another type": dataclasses.replace(foreign_secret(source), type="kubernetes.io/basic-auth"),
        "immutable, other data": dataclasses.replace(foreign_secret(source), immutable=True),
        "immutable, mutable blueprint": our_copy(source, labels={}, annotations={}, immutable=True),
    }[twin]
    row, action = plan_pair(Policy(conflict_policy="adopt", prune=True), REF, source, TARGET, theirs)
    assert action is None
    assert row.state is CopyState.CONFLICT
    assert "not created by secrets-operator; not adopted" in row.detail
    assert because in row.detail
    assert "never deletes a Secret it does not own" in row.detail


def test_immutable_unmanaged_secret_with_the_blueprint_data_is_adopted_by_marking_it() -> None:
    source = blueprint(immutable=True)
    twin = our_copy(source, labels={}, annotations={}, immutable=True)
    row, action = plan_pair(Policy(conflict_policy="adopt"), REF, source, TARGET, twin)
    assert "adopting it" in row.detail
    assert action is not None
    assert action.kind is ActionKind.UPDATE  # metadata only: an immutable Secret's labels may change
    assert "data" not in body_of(action)


def test_our_own_copy_of_another_type_is_still_replaced() -> None:
    source = blueprint()
    _, action = plan_pair(Policy(), REF, source, TARGET, our_copy(source, type="kubernetes.io/basic-auth"))
    assert action is not None
    assert action.kind is ActionKind.REPLACE
    assert "cannot be changed in place" in action.reason


@pytest.mark.parametrize("prune", [False, True])
def test_copy_managed_for_another_source_is_a_conflict_never_touched(prune: bool) -> None:
    source = blueprint()
    theirs = our_copy(
        source,
        annotations={
            "secrets-operator.io/source": "other/htpasswd",
            "secrets-operator.io/source-hash": "0" * 64,
        },
    )
    row, action = plan_pair(Policy(prune=prune), REF, source, TARGET, theirs)
    assert row.state is CopyState.CONFLICT
    assert "another source 'other/htpasswd'" in row.detail
    assert action is None


# -- namespaces that are not targets


@pytest.mark.parametrize("with_blueprint", [True, False])
def test_terminating_namespace_is_never_written_even_with_prune(with_blueprint: bool) -> None:
    source = blueprint()
    terminating = NamespaceInfo("team-a", {}, terminating=True)
    row, action = plan_pair(
        Policy(prune=True), REF, source if with_blueprint else None, terminating, our_copy(source)
    )
    assert row.state is CopyState.EXCLUDED
    assert "terminating" in row.detail
    assert action is None


def test_terminating_namespace_without_a_copy_gets_no_create() -> None:
    terminating = NamespaceInfo("team-a", {}, terminating=True)
    row, action = plan_pair(Policy(), REF, blueprint(), terminating, None)
    assert row.state is CopyState.EXCLUDED
    assert action is None


def test_our_copy_in_an_excluded_namespace_is_deleted_when_prune_is_on() -> None:
    source = blueprint()
    opted_out = NamespaceInfo("team-a", {"secrets-operator.io/exclude": "true"})
    row, action = plan_pair(Policy(prune=True), REF, source, opted_out, our_copy(source))
    assert row.state is CopyState.ORPHANED
    assert action is not None
    assert action.kind is ActionKind.DELETE
    assert (action.namespace, action.name) == ("team-a", "htpasswd")
    assert action.resource_version == "42"


@pytest.mark.parametrize("with_blueprint", [True, False])
def test_our_copy_in_an_excluded_namespace_is_kept_and_reported_stale_when_prune_is_off(
    with_blueprint: bool,
) -> None:
    source = blueprint()
    opted_out = NamespaceInfo("team-a", {"secrets-operator.io/exclude": "true"})
    row, action = plan_pair(
        Policy(prune=False), REF, source if with_blueprint else None, opted_out, our_copy(source)
    )
    assert row.state is CopyState.STALE
    assert "opted out" in row.detail
    assert "no longer follows the blueprint" in row.detail
    assert action is None


@pytest.mark.parametrize("copy_exists", ["none", "foreign"])
def test_excluded_namespace_without_our_copy_is_just_excluded(copy_exists: str) -> None:
    source = blueprint()
    existing = foreign_secret(source) if copy_exists == "foreign" else None
    row, action = plan_pair(Policy(), REF, source, NamespaceInfo("kube-system", {}), existing)
    assert row.state is CopyState.EXCLUDED
    assert action is None


def test_foreign_secret_in_an_excluded_namespace_is_never_deleted() -> None:
    source = blueprint()
    row, action = plan_pair(
        Policy(prune=True, exclude=("team-*",)), REF, source, TARGET, foreign_secret(source)
    )
    assert row.state is CopyState.EXCLUDED
    assert action is None


@pytest.mark.parametrize("with_blueprint", [True, False])
@pytest.mark.parametrize("copy_exists", [True, False])
def test_blueprint_home_namespace_is_never_written_even_with_prune(
    with_blueprint: bool, copy_exists: bool
) -> None:
    source = blueprint()
    looks_like_ours = our_copy(source, namespace="auth") if copy_exists else None
    row, action = plan_pair(
        Policy(prune=True, include=("*",), exclude=()),
        REF,
        source if with_blueprint else None,
        HOME,
        looks_like_ours,
    )
    assert row.state is CopyState.EXCLUDED
    assert action is None


# -- the blueprint is missing or must not be copied


@pytest.mark.parametrize("missing_for", [60.0, 61.5, 3600.0])
def test_copies_of_a_blueprint_missing_for_the_whole_grace_are_deleted_when_prune_is_on(
    missing_for: float,
) -> None:
    copy = our_copy(blueprint())
    row, action = plan_pair(
        Policy(prune=True, prune_grace_seconds=60), REF, None, TARGET, copy, missing_for=missing_for
    )
    assert row.state is CopyState.ORPHANED
    assert "PRUNE_GRACE_SECONDS=60" in row.detail
    assert action is not None
    assert action.kind is ActionKind.DELETE
    assert action.resource_version == "42"


@pytest.mark.parametrize(
    ("missing_for", "shown"), [(0.0, "60 s"), (0.4, "60 s"), (45.2, "15 s"), (59.99, "1 s")]
)
def test_copy_of_a_blueprint_missing_for_less_than_the_grace_is_kept_and_says_when_it_goes(
    missing_for: float, shown: str
) -> None:
    """A blueprint deleted and created again (replace --force, an immutable rotation) keeps its copies."""
    copy = our_copy(blueprint())
    row, action = plan_pair(
        Policy(prune=True, prune_grace_seconds=60), REF, None, TARGET, copy, missing_for=missing_for
    )
    assert action is None
    assert row.state is CopyState.BLUEPRINT_MISSING
    assert row.detail == f"blueprint does not exist; the copy is pruned in {shown} unless it returns"
    assert row.prune_in == pytest.approx(60 - missing_for)


def test_copy_of_a_blueprint_missing_for_an_unknown_time_is_never_pruned() -> None:
    """One-shot commands (check, sync --once) cannot know how long it has been missing."""
    row, action = plan_pair(Policy(prune=True), REF, None, TARGET, our_copy(blueprint()), missing_for=None)
    assert action is None
    assert row.state is CopyState.BLUEPRINT_MISSING
    assert "prunes the copy 60 s after it sees the blueprint missing, unless it returns" in row.detail
    assert row.prune_in is None


def test_a_zero_grace_prunes_at_once() -> None:
    _, action = plan_pair(
        Policy(prune=True, prune_grace_seconds=0), REF, None, TARGET, our_copy(blueprint()), missing_for=0.0
    )
    assert action is not None
    assert action.kind is ActionKind.DELETE


def test_namespace_is_planned_again_when_the_first_prune_grace_ends() -> None:
    first, second = blueprint(), blueprint(ref=OTHER_REF)
    copies = {(Kind.SECRET, "htpasswd"): our_copy(first), (Kind.SECRET, "pull-secret"): our_copy(second)}
    policy = Policy(prune=True, prune_grace_seconds=60)
    plan = plan_namespace(
        policy,
        namespace=TARGET,
        name="team-a",
        blueprints={REF: None, OTHER_REF: None},
        copies=copies,
        missing_for={REF: 10.0, OTHER_REF: 40.0},
    )
    assert plan.actions == ()
    assert plan.recheck_after == pytest.approx(20.0)
    returned = plan_namespace(
        policy, namespace=TARGET, name="team-a", blueprints={REF: first, OTHER_REF: second}, copies=copies
    )
    assert returned.recheck_after is None
    assert returned.actions == ()
    unknown = plan_namespace(
        policy, namespace=TARGET, name="team-a", blueprints={REF: None, OTHER_REF: None}, copies=copies
    )
    assert (unknown.recheck_after, unknown.actions) == (None, ())


def test_no_prune_grace_applies_to_a_namespace_that_stopped_being_a_target() -> None:
    opted_out = NamespaceInfo("team-a", {"secrets-operator.io/exclude": "true"})
    _, action = plan_pair(Policy(prune=True), REF, None, opted_out, our_copy(blueprint()), missing_for=0.0)
    assert action is not None
    assert action.kind is ActionKind.DELETE


@pytest.mark.parametrize(
    ("prune", "copy"),
    [
        (False, our_copy(blueprint())),
        (False, None),
        (True, None),
        (True, foreign_secret(blueprint())),
    ],
)
def test_missing_blueprint_is_reported_and_nothing_deleted_without_prune_and_ownership(
    prune: bool, copy: CopyInfo | None
) -> None:
    row, action = plan_pair(Policy(prune=prune), REF, None, TARGET, copy)
    assert row.state is CopyState.BLUEPRINT_MISSING
    assert action is None


@pytest.mark.parametrize("copy_exists", [False, True])
def test_service_account_token_blueprint_is_refused(copy_exists: bool) -> None:
    token = blueprint(of_type="kubernetes.io/service-account-token", data={"token": b64("eyJ")})
    existing = foreign_secret(token) if copy_exists else None
    row, action = plan_pair(Policy(conflict_policy="adopt", prune=True), REF, token, TARGET, existing)
    assert row.state is CopyState.REFUSED
    assert "service-account-token" in row.detail
    assert action is None


# -- COPY_METADATA


NEVER_COPIED_LABELS = {
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/instance": "auth-release",
    "secrets-operator.io/exclude": "true",
}
NEVER_COPIED_ANNOTATIONS = {
    "meta.helm.sh/release-name": "auth-release",
    "meta.helm.sh/release-namespace": "auth",
    "helm.sh/resource-policy": "keep",
    "argocd.argoproj.io/tracking-id": "auth:/Secret:auth/htpasswd",
    "argocd.argoproj.io/sync-options": "Prune=false",
    "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"auth":"c2VjcmV0"}}',
    "secrets-operator.io/source": "elsewhere/htpasswd",
    "secrets-operator.io/source-hash": "f" * 64,
}


def test_copy_metadata_copies_everything_matching_except_tracking_keys() -> None:
    source = blueprint(
        labels={"team": "payments", **NEVER_COPIED_LABELS},
        annotations={"example.com/owner": "ops", **NEVER_COPIED_ANNOTATIONS},
    )
    _, action = plan_pair(Policy(copy_metadata=("*",)), REF, source, TARGET, None)
    metadata = body_of(action)["metadata"]
    assert metadata["labels"] == {"team": "payments", "app.kubernetes.io/managed-by": "secrets-operator"}
    assert metadata["annotations"] == {
        "example.com/owner": "ops",
        "secrets-operator.io/source": "auth/htpasswd",
        # What was copied is recorded, so that it can be removed when the blueprint drops it.
        "secrets-operator.io/copied-labels": "team",
        "secrets-operator.io/copied-annotations": "example.com/owner",
    }


def test_label_dropped_from_the_blueprint_is_removed_from_the_copy() -> None:
    policy = Policy(copy_metadata=("team", "example.com/*"))
    before = blueprint(labels={"team": "payments"}, annotations={"example.com/owner": "ops"})
    written = body_of(plan_pair(policy, REF, before, TARGET, None)[1])["metadata"]
    copy = our_copy(before, labels=dict(written["labels"]), annotations=dict(written["annotations"]))
    assert plan_pair(policy, REF, before, TARGET, copy)[1] is None  # in sync as written

    after = blueprint(labels={}, annotations={"example.com/owner": "ops"})
    row, action = plan_pair(policy, REF, after, TARGET, copy)
    assert row.state == CopyState.DRIFTED
    patch = body_of(action)["metadata"]
    assert patch["labels"]["team"] is None  # merge-patch null removes the key
    assert patch["annotations"]["secrets-operator.io/copied-labels"] is None
    assert patch["annotations"]["example.com/owner"] == "ops"


def test_labels_set_on_a_copy_by_others_are_never_removed() -> None:
    policy = Policy(copy_metadata=("team",))
    source = blueprint(labels={})
    copy = our_copy(
        source, labels={"app.kubernetes.io/managed-by": "secrets-operator", "team": "someone-elses"}
    )
    assert plan_pair(policy, REF, source, TARGET, copy)[1] is None


def test_copy_metadata_globs_select_which_keys_are_copied() -> None:
    source = blueprint(
        labels={"team": "payments", "tier": "web"},
        annotations={"example.com/owner": "ops", "example.org/note": "x"},
    )
    _, action = plan_pair(Policy(copy_metadata=("team", "example.com/*")), REF, source, TARGET, None)
    metadata = body_of(action)["metadata"]
    assert metadata["labels"] == {"team": "payments", "app.kubernetes.io/managed-by": "secrets-operator"}
    assert metadata["annotations"]["example.com/owner"] == "ops"
    assert "example.org/note" not in metadata["annotations"]


def test_blueprint_metadata_is_not_copied_by_default() -> None:
    source = blueprint(labels={"team": "payments"}, annotations={"example.com/owner": "ops"})
    _, action = plan_pair(Policy(), REF, source, TARGET, None)
    metadata = body_of(action)["metadata"]
    assert metadata["labels"] == {"app.kubernetes.io/managed-by": "secrets-operator"}
    assert set(metadata["annotations"]) == {"secrets-operator.io/source"}


# -- plan_namespace


def test_namespace_plan_covers_every_blueprint_in_order_with_only_needed_writes() -> None:
    first, second = blueprint(), blueprint(ref=OTHER_REF)
    plan = plan_namespace(
        Policy(),
        namespace=TARGET,
        name="team-a",
        blueprints={OTHER_REF: second, REF: first},
        copies={(Kind.SECRET, "htpasswd"): our_copy(first)},
    )
    assert [(row.blueprint, row.state) for row in plan.rows] == [
        (REF, CopyState.IN_SYNC),
        (OTHER_REF, CopyState.MISSING),
    ]
    assert [(action.kind, action.name) for action in plan.actions] == [(ActionKind.CREATE, "pull-secret")]


def test_namespace_gone_from_the_cache_gets_no_writes() -> None:
    source = blueprint()
    plan = plan_namespace(
        Policy(prune=True),
        namespace=None,
        name="team-a",
        blueprints={REF: source},
        copies={(Kind.SECRET, "htpasswd"): our_copy(source)},
    )
    assert plan.namespace == "team-a"
    assert plan.rows == ()
    assert plan.actions == ()


# -- secret data never reaches repr


CANARY = "CANARY-3f1e"


def _assert_no_canary(text: str) -> None:
    assert CANARY not in text
    assert b64(CANARY) not in text


def test_blueprint_repr_never_shows_data() -> None:
    source = blueprint(
        data={"password": b64(CANARY)},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": b64(CANARY)},
    )
    _assert_no_canary(repr(source))
    assert "auth" in repr(source)


@pytest.mark.parametrize("drift", ["missing", "data", "type"])
def test_action_repr_never_shows_data(drift: str) -> None:
    source = blueprint(data={"password": b64(CANARY)})
    copies = {
        "missing": {},
        "data": {
            (Kind.SECRET, "htpasswd"): our_copy(
                source, data_hash=content_hash("Opaque", {}), data_keys=frozenset()
            )
        },
        "type": {(Kind.SECRET, "htpasswd"): our_copy(source, type="kubernetes.io/basic-auth")},
    }[drift]
    plan = plan_namespace(Policy(), namespace=TARGET, name="team-a", blueprints={REF: source}, copies=copies)
    (action,) = plan.actions
    assert b64(CANARY) in str(action.body)
    _assert_no_canary(repr(action))
    _assert_no_canary(action.describe())
    _assert_no_canary(repr(plan))


@pytest.mark.parametrize("drift", ["missing", "data", "type"])
def test_no_repr_shows_a_digest_of_the_data(drift: str) -> None:
    """Hashes stay in memory: a stray log line or exception message must not carry one either."""
    source = blueprint(data={"password": b64(CANARY)})
    digests = data_digests(source.type, dict(source.data)).values()
    legacy = {"secrets-operator.io/source": "auth/htpasswd", "secrets-operator.io/source-hash": source.hash}
    copy = our_copy(source, annotations=legacy)
    copies = {
        "missing": {},
        "data": {
            (Kind.SECRET, "htpasswd"): our_copy(
                source, data_hash=content_hash("Opaque", {}), data_keys=frozenset()
            )
        },
        "type": {(Kind.SECRET, "htpasswd"): our_copy(source, type="kubernetes.io/basic-auth")},
    }[drift]
    plan = plan_namespace(Policy(), namespace=TARGET, name="team-a", blueprints={REF: source}, copies=copies)
    for text in (repr(source), repr(copy), repr(plan), *(repr(action) for action in plan.actions)):
        assert not [digest for digest in digests if digest in text], text
