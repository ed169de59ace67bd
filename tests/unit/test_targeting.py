"""Per-blueprint targeting, renamed copies and ConfigMap blueprints, as planning decides them.

Each blueprint may carry its own selector and globs (absent ones fall back to the global
setting), a target name for its copies and the names they had before a rename, and be a
ConfigMap. These tests pin the rules: which setting wins and how ``check`` names it, that a copy
is never written over a blueprint's own source, that a renamed copy is created, repaired and
pruned like a same-named one while the old copies turn stale, and that a ConfigMap copy follows
data, binaryData and immutability with the same ownership rules as a Secret.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from secrets_operator.model import (
    ActionKind,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    CopyState,
    Kind,
    NamespaceInfo,
)
from secrets_operator.planning import (
    BlueprintSpec,
    Policy,
    content_hash,
    excluded_by,
    plan_namespace,
    plan_pair,
)
from secrets_operator.reporting import Reporter
from secrets_operator.selectors import parse_label_selector
from secrets_operator.trimming import Trimmer, trim_blueprint

SECRET = BlueprintRef("auth", "htpasswd")
CONFIG = BlueprintRef("platform", "ca-bundle", Kind.CONFIG_MAP)
TEAM = NamespaceInfo("team-a", {"env": "prod"})
OTHER = NamespaceInfo("payments", {"env": "dev"})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_blueprint(ref: BlueprintRef = SECRET) -> Blueprint:
    data = {"auth": b64("alice:x")}
    return Blueprint(ref, "Opaque", data, False, {}, {}, content_hash("Opaque", data), "7", "uid")


def config_blueprint(
    *, data: dict[str, str] | None = None, binary: dict[str, str] | None = None, immutable: bool = False
) -> Blueprint:
    data = {"ca.crt": "-----BEGIN CERTIFICATE-----"} if data is None else data
    binary = {"trust.p12": b64("\x00\x01")} if binary is None else binary
    return Blueprint(
        CONFIG, "", data, immutable, {}, {}, content_hash("", data, binary), "9", "uid-cm", binary_data=binary
    )


def copy_of(source: Blueprint, namespace: str = "team-a", *, name: str = "", **changes: Any) -> CopyInfo:
    copy = CopyInfo(
        namespace=namespace,
        name=name or source.ref.name,
        resource_version="42",
        type=source.type,
        immutable=source.immutable,
        labels={"app.kubernetes.io/managed-by": "secrets-operator"},
        annotations={"secrets-operator.io/source": str(source.ref)},
        data_hash=source.hash,
        data_keys=frozenset(source.data),
        binary_keys=frozenset(source.binary_data),
    )
    return dataclasses.replace(copy, **changes)


# -- which setting targets a namespace


@pytest.mark.parametrize(
    ("spec", "namespace", "rule", "fragment"),
    [
        (BlueprintSpec(SECRET, include=("team-*",)), OTHER, "include", "the blueprint's includeNamespaces"),
        (BlueprintSpec(SECRET, exclude=("team-*",)), TEAM, "exclude", "the blueprint's excludeNamespaces"),
        (
            BlueprintSpec(SECRET, selector=parse_label_selector("env=prod")),
            OTHER,
            "selector",
            "the blueprint's namespaceSelector",
        ),
        (BlueprintSpec(SECRET), NamespaceInfo("kube-system", {}), "exclude", "EXCLUDE_NAMESPACES"),
        (BlueprintSpec(SECRET), NamespaceInfo("auth", {}), "home", "home namespace"),
        (
            BlueprintSpec(SECRET),
            NamespaceInfo("team-a", {"secrets-operator.io/exclude": "true"}),
            "opt_out",
            "opted out",
        ),
    ],
)
def test_each_exclusion_names_its_rule_and_whose_setting_it_was(
    spec: BlueprintSpec, namespace: NamespaceInfo, rule: str, fragment: str
) -> None:
    found = excluded_by(Policy(blueprints=(spec,)), SECRET, namespace)
    assert found is not None
    assert (found.rule, fragment in found.detail) == (rule, True)


def test_a_blueprints_own_option_wins_over_the_global_setting_and_absent_ones_fall_back() -> None:
    policy = Policy(
        include=("payments",),
        exclude=("team-*",),
        selector=parse_label_selector("env=dev"),
        blueprints=(
            BlueprintSpec(SECRET, include=("team-*",), exclude=(), selector=parse_label_selector("env=prod")),
            BlueprintSpec(CONFIG),
        ),
    )
    assert excluded_by(policy, SECRET, TEAM) is None  # its own globs and selector let team-a in
    assert excluded_by(policy, SECRET, OTHER) is not None
    assert excluded_by(policy, CONFIG, OTHER) is None  # the global ones let payments in
    excluded = excluded_by(policy, CONFIG, TEAM)
    assert excluded is not None
    assert excluded.detail == "matched by EXCLUDE_NAMESPACES"


def test_an_empty_own_selector_selects_every_namespace_whatever_the_global_one() -> None:
    policy = Policy(
        selector=parse_label_selector("env=dev"),
        blueprints=(BlueprintSpec(SECRET, selector=parse_label_selector("")),),
    )
    assert excluded_by(policy, SECRET, TEAM) is None


def test_the_namespace_labels_kept_are_those_of_every_selector() -> None:
    policy = Policy(
        selector=parse_label_selector("tier"),
        blueprints=(BlueprintSpec(SECRET, selector=parse_label_selector("env=prod")),),
    )
    trimmed = Trimmer(policy).namespace(
        {"metadata": {"name": "x", "labels": {"env": "prod", "tier": "1", "a": "b"}}}
    )
    assert dict(trimmed.labels) == {"env": "prod", "tier": "1"}


def test_per_blueprint_targeting_in_one_namespace_plan() -> None:
    registry = BlueprintRef("registry", "pull-secret")
    policy = Policy(blueprints=(BlueprintSpec(SECRET, include=("team-*",)), BlueprintSpec(registry)))
    blueprints = {SECRET: secret_blueprint(), registry: secret_blueprint(registry)}
    plan = plan_namespace(policy, namespace=OTHER, name="payments", blueprints=blueprints, copies={})
    assert [(row.blueprint, row.state, row.rule) for row in plan.rows] == [
        (SECRET, CopyState.EXCLUDED, "include"),
        (registry, CopyState.MISSING, ""),
    ]
    assert [action.blueprint for action in plan.actions] == [registry]


# -- renamed copies


def test_a_renamed_copy_is_created_under_the_target_name() -> None:
    policy = Policy(blueprints=(BlueprintSpec(SECRET, target_name="basic-auth"),))
    row, action = plan_pair(policy, SECRET, secret_blueprint(), TEAM, None)
    assert (row.state, row.name) == (CopyState.MISSING, "basic-auth")
    assert action is not None
    assert action.body is not None
    assert (action.kind, action.name, action.body["metadata"]["name"]) == (
        ActionKind.CREATE,
        "basic-auth",
        "basic-auth",
    )
    assert action.body["metadata"]["annotations"]["secrets-operator.io/source"] == "auth/htpasswd"


def test_a_renamed_copy_is_repaired_and_in_sync_like_a_same_named_one() -> None:
    policy = Policy(blueprints=(BlueprintSpec(SECRET, target_name="basic-auth"),))
    source = secret_blueprint()
    in_sync = copy_of(source, name="basic-auth")
    assert plan_pair(policy, SECRET, source, TEAM, in_sync)[1] is None
    drifted = dataclasses.replace(in_sync, data_hash=content_hash("Opaque", {}), data_keys=frozenset())
    row, action = plan_pair(policy, SECRET, source, TEAM, drifted)
    assert row.state is CopyState.DRIFTED
    assert action is not None
    assert (action.kind, action.name) == (ActionKind.UPDATE, "basic-auth")


def test_an_unmanaged_object_under_the_target_name_is_a_conflict_never_written() -> None:
    policy = Policy(blueprints=(BlueprintSpec(SECRET, target_name="basic-auth"),))
    theirs = copy_of(secret_blueprint(), name="basic-auth", labels={}, annotations={})
    row, action = plan_pair(policy, SECRET, secret_blueprint(), TEAM, theirs)
    assert (row.state, action) == (CopyState.CONFLICT, None)


@pytest.mark.parametrize("prune", [False, True])
def test_copies_under_an_earlier_target_name_are_stale_and_pruned_only_with_prune(prune: bool) -> None:
    spec = BlueprintSpec(SECRET, target_name="basic-auth", previous_target_names=("htpasswd",))
    policy = Policy(prune=prune, blueprints=(spec,))
    source = secret_blueprint()
    copies = {
        (Kind.SECRET, "basic-auth"): copy_of(source, name="basic-auth"),
        (Kind.SECRET, "htpasswd"): copy_of(source, name="htpasswd"),
    }
    plan = plan_namespace(policy, namespace=TEAM, name="team-a", blueprints={SECRET: source}, copies=copies)
    assert [(row.name, row.state, row.rule) for row in plan.rows] == [
        ("basic-auth", CopyState.IN_SYNC, ""),
        ("htpasswd", CopyState.ORPHANED if prune else CopyState.STALE, "renamed"),
    ]
    if prune:
        (delete,) = plan.actions
        assert (delete.kind, delete.name, delete.resource_version) == (ActionKind.DELETE, "htpasswd", "42")
    else:
        assert plan.actions == ()


def test_an_object_under_an_earlier_name_that_is_not_this_blueprints_copy_is_left_alone() -> None:
    spec = BlueprintSpec(SECRET, target_name="basic-auth", previous_target_names=("htpasswd",))
    source = secret_blueprint()
    foreign = copy_of(source, name="htpasswd", annotations={"secrets-operator.io/source": "other/htpasswd"})
    copies = {
        (Kind.SECRET, "basic-auth"): copy_of(source, name="basic-auth"),
        (Kind.SECRET, "htpasswd"): foreign,
    }
    plan = plan_namespace(
        Policy(prune=True, blueprints=(spec,)),
        namespace=TEAM,
        name="team-a",
        blueprints={SECRET: source},
        copies=copies,
    )
    assert [row.name for row in plan.rows] == ["basic-auth"]
    assert plan.actions == ()


def test_a_copy_is_never_planned_over_another_blueprints_source() -> None:
    # auth/htpasswd's copies are named "tls", and in team-a the Secret "tls" is a blueprint itself
    first = BlueprintRef("team-a", "tls")
    policy = Policy(blueprints=(BlueprintSpec(SECRET, target_name="tls"), BlueprintSpec(first)))
    row, action = plan_pair(policy, SECRET, secret_blueprint(), TEAM, None)
    assert (row.state, row.rule, action) == (CopyState.EXCLUDED, "source", None)
    # the same name as a ConfigMap is another object: a Secret blueprint's copy is unaffected
    other_kind = Policy(
        blueprints=(
            BlueprintSpec(SECRET, target_name="tls"),
            BlueprintSpec(BlueprintRef("team-a", "tls", Kind.CONFIG_MAP)),
        )
    )
    assert plan_pair(other_kind, SECRET, secret_blueprint(), TEAM, None)[0].state is CopyState.MISSING


# -- ConfigMap blueprints


def test_a_configmap_copy_is_created_with_data_binary_data_and_marks() -> None:
    source = config_blueprint()
    row, action = plan_pair(Policy(), CONFIG, source, TEAM, None)
    assert row.state is CopyState.MISSING
    assert action is not None
    assert action.body is not None
    body = action.body
    assert (body["kind"], body["metadata"]["name"], body["metadata"]["namespace"]) == (
        "ConfigMap",
        "ca-bundle",
        "team-a",
    )
    assert body["data"] == source.data
    assert body["binaryData"] == source.binary_data
    assert "type" not in body
    assert "immutable" not in body
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "secrets-operator"}
    assert body["metadata"]["annotations"] == {"secrets-operator.io/source": "platform/ca-bundle"}


def test_a_configmap_copy_in_sync_costs_nothing() -> None:
    source = config_blueprint()
    row, action = plan_pair(Policy(), CONFIG, source, TEAM, copy_of(source))
    assert (row.state, action) == (CopyState.IN_SYNC, None)


def test_a_drifted_configmap_copy_is_patched_removing_keys_of_both_maps() -> None:
    source = config_blueprint()
    drifted = copy_of(
        source,
        data_hash=content_hash("", {"old": "x"}, {"old.bin": b64("y")}),
        data_keys=frozenset({"old"}),
        binary_keys=frozenset({"old.bin"}),
    )
    row, action = plan_pair(Policy(), CONFIG, source, TEAM, drifted)
    assert row.state is CopyState.DRIFTED
    assert action is not None
    assert action.body is not None
    assert action.kind is ActionKind.UPDATE
    assert action.body["data"] == {"old": None, **source.data}
    assert action.body["binaryData"] == {"old.bin": None, **source.binary_data}


def test_a_change_of_binary_data_alone_is_drift() -> None:
    source = config_blueprint()
    other = config_blueprint(binary={"trust.p12": b64("changed")})
    row, _ = plan_pair(Policy(), CONFIG, other, TEAM, copy_of(source))
    assert (row.state, row.detail) == (CopyState.DRIFTED, "differs in data")


def test_an_immutable_configmap_copy_is_replaced_and_an_unmanaged_one_never() -> None:
    source = config_blueprint(data={"k": "new"})
    old = config_blueprint(data={"k": "old"}, immutable=True)
    row, action = plan_pair(Policy(), CONFIG, source, TEAM, copy_of(old))
    assert action is not None
    assert action.kind is ActionKind.REPLACE
    assert "the existing ConfigMap is immutable" in action.reason
    theirs = copy_of(old, labels={}, annotations={})
    row, action = plan_pair(Policy(conflict_policy="adopt"), CONFIG, source, TEAM, theirs)
    assert (row.state, action) == (CopyState.CONFLICT, None)
    assert "never deletes a ConfigMap it does not own" in row.detail


def test_a_configmap_blueprint_is_never_refused_for_a_type() -> None:
    source = dataclasses.replace(config_blueprint(), type="kubernetes.io/service-account-token")
    assert plan_pair(Policy(), CONFIG, source, TEAM, None)[0].state is CopyState.MISSING


def test_configmaps_are_trimmed_to_hashes_and_key_names() -> None:
    obj = {
        "metadata": {"name": "ca-bundle", "namespace": "team-a", "resourceVersion": "5"},
        "data": {"ca.crt": "PEM"},
        "binaryData": {"trust.p12": b64("\x00")},
    }
    copy = Trimmer(Policy()).copy(Kind.CONFIG_MAP, obj)
    assert (copy.type, copy.data_keys, copy.binary_keys) == (
        "",
        frozenset({"ca.crt"}),
        frozenset({"trust.p12"}),
    )
    assert copy.data_hash == content_hash("", obj["data"], obj["binaryData"])
    blueprint = trim_blueprint(CONFIG, {**obj, "metadata": {**obj["metadata"], "namespace": "platform"}})
    assert blueprint.hash == copy.data_hash
    assert (dict(blueprint.data), dict(blueprint.binary_data)) == (obj["data"], obj["binaryData"])


# -- reporting


class _NoEvents:
    def emit(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("no event expected")


def test_the_gauges_count_states_and_exclusion_rules_and_forget_vanished_pairs() -> None:
    from secrets_operator import metrics

    spec = BlueprintSpec(
        SECRET, target_name="basic-auth", previous_target_names=("htpasswd",), include=("team-*",)
    )
    policy = Policy(blueprints=(spec,))
    source = secret_blueprint()
    reporter = Reporter(_NoEvents(), blueprint=lambda ref: source)  # type: ignore[arg-type]
    reporter.reset()
    stale = {(Kind.SECRET, "htpasswd"): copy_of(source, name="htpasswd")}

    def gauge(name: str, **labels: str) -> float:
        return (
            metrics.REGISTRY.get_sample_value(
                name, {"blueprint": "auth/htpasswd", "kind": "Secret", **labels}
            )
            or 0.0
        )

    reporter.plan(
        plan_namespace(policy, namespace=TEAM, name="team-a", blueprints={SECRET: source}, copies=stale)
    )
    reporter.plan(
        plan_namespace(policy, namespace=OTHER, name="payments", blueprints={SECRET: source}, copies={})
    )
    assert gauge("secrets_operator_copies", state="missing") == 1
    assert gauge("secrets_operator_copies", state="stale") == 1
    assert gauge("secrets_operator_copies", state="excluded") == 1
    assert gauge("secrets_operator_excluded_namespaces", rule="include") == 1
    assert gauge("secrets_operator_excluded_namespaces", rule="renamed") == 1
    # the stale copy is deleted: its pair has no row any more and leaves the gauges
    reporter.plan(
        plan_namespace(policy, namespace=TEAM, name="team-a", blueprints={SECRET: source}, copies={})
    )
    assert gauge("secrets_operator_copies", state="stale") == 0
    assert gauge("secrets_operator_excluded_namespaces", rule="renamed") == 0
    # the namespace is gone
    reporter.plan(
        plan_namespace(policy, namespace=None, name="payments", blueprints={SECRET: source}, copies={})
    )
    assert gauge("secrets_operator_copies", state="excluded") == 0
    assert gauge("secrets_operator_excluded_namespaces", rule="include") == 0


# -- a blueprint's source object is never a copy, whatever marks it carries


def _marked_source(kind: Kind = Kind.SECRET) -> CopyInfo:
    """The blueprint team-a/basic-auth, which carries auth/htpasswd's ownership marks (it was once
    that blueprint's copy, before someone made it a blueprint of its own)."""
    source = secret_blueprint() if kind is Kind.SECRET else config_blueprint()
    return copy_of(source, name="basic-auth", annotations={"secrets-operator.io/source": str(source.ref)})


@pytest.mark.parametrize("kind", [Kind.SECRET, Kind.CONFIG_MAP])
@pytest.mark.parametrize("how", ["target", "previous"])
def test_another_blueprints_source_carrying_our_marks_is_never_written_or_pruned(
    kind: Kind, how: str
) -> None:
    ref = SECRET if kind is Kind.SECRET else CONFIG
    other = BlueprintRef("team-a", "basic-auth", kind)
    spec = (
        BlueprintSpec(ref, target_name="basic-auth")
        if how == "target"
        else BlueprintSpec(ref, target_name="new-name", previous_target_names=("basic-auth",))
    )
    policy = Policy(prune=True, blueprints=(spec, BlueprintSpec(other)))
    source = secret_blueprint() if kind is Kind.SECRET else config_blueprint()
    marked = dataclasses.replace(
        _marked_source(kind),
        data_hash="different",
        annotations={"secrets-operator.io/source": str(ref), "secrets-operator.io/source-hash": "x"},
    )
    copies = {(kind, "basic-auth"): marked}
    plan = plan_namespace(policy, namespace=TEAM, name="team-a", blueprints={ref: source}, copies=copies)
    touched = [action for action in plan.actions if action.name == "basic-auth"]
    assert touched == [], [action.describe() for action in touched]
    # and with the blueprint gone too
    gone = plan_namespace(
        policy,
        namespace=TEAM,
        name="team-a",
        blueprints={ref: None},
        copies=copies,
        missing_for={ref: 3600.0},
    )
    assert [action for action in gone.actions if action.name == "basic-auth"] == []


def test_a_secret_and_a_configmap_blueprint_sharing_a_copy_name_each_see_only_their_own_kind() -> None:
    secret_ref = BlueprintRef("auth", "shared")
    config_ref = BlueprintRef("auth", "shared", Kind.CONFIG_MAP)
    policy = Policy(blueprints=(BlueprintSpec(secret_ref), BlueprintSpec(config_ref)))
    secret = secret_blueprint(secret_ref)
    data = {"k": "v"}
    config = Blueprint(config_ref, "", data, False, {}, {}, content_hash("", data, {}), "1", "u")
    copies = {(Kind.SECRET, "shared"): copy_of(secret, name="shared")}
    plan = plan_namespace(
        policy,
        namespace=TEAM,
        name="team-a",
        blueprints={secret_ref: secret, config_ref: config},
        copies=copies,
    )
    states = {row.blueprint.kind: row.state for row in plan.rows}
    assert states == {Kind.SECRET: CopyState.IN_SYNC, Kind.CONFIG_MAP: CopyState.MISSING}
    (create,) = plan.actions
    assert create.blueprint == config_ref
    assert create.body is not None
    assert create.body["kind"] == "ConfigMap"


@pytest.mark.parametrize(
    "namespace",
    [NamespaceInfo("team-a", {}, terminating=True), NamespaceInfo("auth", {})],
    ids=["terminating", "home"],
)
def test_a_copy_under_an_earlier_name_is_left_alone_in_a_terminating_or_home_namespace(
    namespace: NamespaceInfo,
) -> None:
    spec = BlueprintSpec(SECRET, target_name="basic-auth", previous_target_names=("old",))
    source = secret_blueprint()
    copies = {(Kind.SECRET, "old"): copy_of(source, namespace.name, name="old")}
    plan = plan_namespace(
        Policy(prune=True, blueprints=(spec,)),
        namespace=namespace,
        name=namespace.name,
        blueprints={SECRET: source},
        copies=copies,
    )
    assert [row.name for row in plan.rows] == ["basic-auth"]
    assert plan.actions == ()


def test_a_plan_for_some_blueprints_leaves_the_other_blueprints_pairs_counted() -> None:
    from secrets_operator import metrics

    registry = BlueprintRef("registry", "pull-secret")
    policy = Policy(blueprints=(BlueprintSpec(SECRET), BlueprintSpec(registry)))
    both = {SECRET: secret_blueprint(), registry: secret_blueprint(registry)}
    reporter = Reporter(_NoEvents(), blueprint=both.get)  # type: ignore[arg-type]
    reporter.reset()
    reporter.plan(plan_namespace(policy, namespace=TEAM, name="team-a", blueprints=both, copies={}))
    only = {registry}
    partial = plan_namespace(
        policy, namespace=TEAM, name="team-a", blueprints={registry: both[registry]}, copies={}
    )
    reporter.plan(partial, only)

    def missing(ref: BlueprintRef) -> float:
        labels = {"blueprint": str(ref), "kind": "Secret", "state": "missing"}
        return metrics.REGISTRY.get_sample_value("secrets_operator_copies", labels) or 0.0

    assert (missing(SECRET), missing(registry)) == (1.0, 1.0)
    reporter.plan(plan_namespace(policy, namespace=None, name="team-a", blueprints=both, copies={}), only)
    assert (missing(SECRET), missing(registry)) == (0.0, 0.0)  # the namespace is gone: every pair


def test_the_reporter_keeps_one_tuple_of_shared_items_per_namespace() -> None:
    """What the gauges count costs a small tuple per namespace, whatever the number of namespaces:
    the (pair, state) items of namespaces in the same state are the same objects."""
    registry = BlueprintRef("registry", "pull-secret")
    policy = Policy(blueprints=(BlueprintSpec(SECRET), BlueprintSpec(registry)))
    both = {SECRET: secret_blueprint(), registry: secret_blueprint(registry)}
    reporter = Reporter(_NoEvents(), blueprint=both.get)  # type: ignore[arg-type]
    reporter.reset()
    for name in ("team-a", "team-b"):
        namespace = NamespaceInfo(name, {"env": "prod"})
        reporter.plan(plan_namespace(policy, namespace=namespace, name=name, blueprints=both, copies={}))
    first, second = reporter.states["team-a"], reporter.states["team-b"]
    assert type(first) is tuple
    assert len(first) == 2
    assert all(a is b for a, b in zip(first, second, strict=True))
