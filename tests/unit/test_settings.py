"""The operator is configured only through SECRETS_OPERATOR_* variables, validated once at start.

A typo in a Deployment's env must stop the operator with one line naming the variable (the command
line turns a ConfigError into exit status 2), never start it with a silently different
configuration. These tests pin the defaults, the list parsing, the blueprint references (the
comma-separated list and the JSON list with per-blueprint options that the chart renders), the
leader-election timing rule, and how the Lease namespace and holder identity are resolved.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from secrets_operator.blueprint_config import BLUEPRINT_KEYS
from secrets_operator.model import BlueprintRef, Kind
from secrets_operator.planning import BlueprintSpec
from secrets_operator.selectors import parse_label_selector
from secrets_operator.settings import ConfigError, Settings, load
from tools import reference

PREFIX = "SECRETS_OPERATOR_"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable the settings read, so the developer's or CI's environment cannot leak in."""
    for name in list(os.environ):
        if name.upper().startswith(PREFIX) or name in {"POD_NAME", "POD_NAMESPACE"}:
            monkeypatch.delenv(name)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment, with the one required variable set to a valid value."""
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", "auth/htpasswd")
    return monkeypatch


def load_error() -> str:
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert "\n" not in message, "the command line prints the error as one line"
    assert len(message.splitlines()) == 1, "no other line separator either"
    return message


# -- defaults and required values


def test_only_blueprints_is_needed_and_everything_else_has_its_documented_default(
    env: pytest.MonkeyPatch,
) -> None:
    loaded = load()
    assert loaded.refs == (BlueprintRef("auth", "htpasswd"),)
    assert str(loaded.namespace_selector) == ""
    assert loaded.namespace_selector.matches({"any": "labels"})
    assert loaded.include_namespaces == ("*",)
    assert loaded.exclude_namespaces == ("kube-system", "kube-public", "kube-node-lease")
    assert loaded.conflict_policy == "skip"
    assert loaded.prune is False
    assert loaded.copy_metadata == ()
    assert loaded.leader_election is True
    assert loaded.lease_name == "secrets-operator"
    assert loaded.lease_namespace == ""
    assert (loaded.lease_duration_seconds, loaded.renew_deadline_seconds, loaded.retry_period_seconds) == (
        15.0,
        10.0,
        2.0,
    )
    assert loaded.identity == ""
    assert loaded.http_port == 8080
    assert loaded.log_level == "INFO"
    assert loaded.log_format == "json"
    assert loaded.resync_seconds == 600.0
    assert loaded.max_concurrent_writes == 16
    assert loaded.api_qps == 0.0  # no client-side limit: Priority and Fairness decides
    assert loaded.api_burst == 100


def test_policy_carries_the_planning_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}NAMESPACE_SELECTOR", "env in (dev,prod),!legacy")
    env.setenv(f"{PREFIX}INCLUDE_NAMESPACES", "team-*")
    env.setenv(f"{PREFIX}EXCLUDE_NAMESPACES", "team-sandbox")
    env.setenv(f"{PREFIX}CONFLICT_POLICY", "adopt")
    env.setenv(f"{PREFIX}PRUNE", "true")
    env.setenv(f"{PREFIX}COPY_METADATA", "team")
    policy = load().policy
    assert policy.selector.matches({"env": "prod"})
    assert not policy.selector.matches({"env": "prod", "legacy": "yes"})
    assert (policy.include, policy.exclude, policy.copy_metadata) == (
        ("team-*",),
        ("team-sandbox",),
        ("team",),
    )
    assert (policy.conflict_policy, policy.prune) == ("adopt", True)


def test_missing_blueprints_is_reported_as_required() -> None:
    assert load_error() == f"{PREFIX}BLUEPRINTS: is required"


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_blueprints_without_any_reference_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", value)
    message = load_error()
    assert message.startswith(f"{PREFIX}BLUEPRINTS: ")
    assert "at least one blueprint is required" in message


# -- lists


def test_blueprint_list_ignores_spaces_and_empty_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", " auth/htpasswd , ,registry/pull-secret,")
    assert load().refs == (BlueprintRef("auth", "htpasswd"), BlueprintRef("registry", "pull-secret"))


@pytest.mark.parametrize("variable", ["INCLUDE_NAMESPACES", "EXCLUDE_NAMESPACES", "COPY_METADATA"])
def test_glob_lists_ignore_spaces_and_empty_parts(env: pytest.MonkeyPatch, variable: str) -> None:
    env.setenv(f"{PREFIX}{variable}", " team-* ,, shared ,")
    assert getattr(load(), variable.lower()) == ("team-*", "shared")


def test_empty_exclude_list_excludes_nothing(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}EXCLUDE_NAMESPACES", "")
    assert load().exclude_namespaces == ()


def test_repeated_blueprint_is_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", "auth/htpasswd,registry/pull-secret,auth/htpasswd")
    assert load().refs == (BlueprintRef("auth", "htpasswd"), BlueprintRef("registry", "pull-secret"))


def test_two_blueprints_with_the_same_name_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", "auth/htpasswd,team-a/htpasswd")
    message = load_error()
    assert message.startswith(f"{PREFIX}BLUEPRINTS: ")
    assert (
        "item 1 (Secret auth/htpasswd) and item 2 (Secret team-a/htpasswd) would both own Secrets named "
        "'htpasswd'" in message
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("htpasswd", "'htpasswd' is not of the form namespace/name"),
        ("auth/", "'auth/' is not of the form namespace/name"),
        ("/htpasswd", "'/htpasswd' is not of the form namespace/name"),
        ("auth/nested/htpasswd", "'auth/nested/htpasswd' is not of the form namespace/name"),
        ("auth/htpasswd,registry", "'registry' is not of the form namespace/name"),
        ("Auth/htpasswd", "namespace 'Auth' is not a valid namespace name"),
        ("auth.example/htpasswd", "namespace 'auth.example' is not a valid namespace name"),
        ("n" * 64 + "/htpasswd", "is not a valid namespace name"),
        ("auth/Htpasswd", "'Htpasswd' is not a valid Secret name"),
        ("auth/ht_passwd", "'ht_passwd' is not a valid Secret name"),
    ],
)
def test_malformed_blueprint_reference_is_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str, fragment: str
) -> None:
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", value)
    message = load_error()
    assert message.startswith(f"{PREFIX}BLUEPRINTS: ")
    assert fragment in message


def test_dotted_secret_name_is_a_valid_blueprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}BLUEPRINTS", "ingress/basic-auth.example.com")
    assert load().refs == (BlueprintRef("ingress", "basic-auth.example.com"),)


# -- per-blueprint options: the JSON form of BLUEPRINTS

BLUEPRINTS = f"{PREFIX}BLUEPRINTS"
ALLOWED = (
    "(allowed: source, kind, targetName, namespaceSelector, includeNamespaces, excludeNamespaces, "
    "previousTargetNames)"
)


def blueprints(monkeypatch: pytest.MonkeyPatch, value: object) -> tuple[BlueprintSpec, ...]:
    """Load with BLUEPRINTS set to ``value`` (JSON-encoded unless it is a string already)."""
    monkeypatch.setenv(BLUEPRINTS, value if isinstance(value, str) else json.dumps(value))
    return load().blueprints


def blueprints_error(monkeypatch: pytest.MonkeyPatch, value: object) -> str:
    monkeypatch.setenv(BLUEPRINTS, value if isinstance(value, str) else json.dumps(value))
    message = load_error()
    assert message.startswith(f"{BLUEPRINTS}: ")
    return message.removeprefix(f"{BLUEPRINTS}: ")


def test_the_comma_separated_form_gives_blueprints_with_every_option_left_to_the_global_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert blueprints(monkeypatch, "auth/htpasswd,registry/pull-secret") == (
        BlueprintSpec(BlueprintRef("auth", "htpasswd", Kind.SECRET)),
        BlueprintSpec(BlueprintRef("registry", "pull-secret", Kind.SECRET)),
    )
    (spec, _) = load().blueprints
    assert (spec.target_name, spec.selector, spec.include, spec.exclude, spec.previous_target_names) == (
        "",
        None,
        None,
        None,
        (),
    )
    assert spec.target == "htpasswd"


def test_a_json_list_of_strings_is_the_comma_separated_form(monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = blueprints(monkeypatch, "auth/htpasswd,registry/pull-secret")
    assert blueprints(monkeypatch, ["auth/htpasswd", "registry/pull-secret"]) == legacy


def test_every_key_of_a_blueprint_object_reaches_its_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    (spec,) = blueprints(
        monkeypatch,
        [
            {
                "source": "platform/ca-bundle",
                "kind": "ConfigMap",
                "targetName": "trusted-ca.example.com",
                "namespaceSelector": "env in (dev,prod),!legacy",
                "includeNamespaces": ["team-*", "shared"],
                "excludeNamespaces": ["team-sandbox"],
                "previousTargetNames": ["ca-bundle", "old-ca"],
            }
        ],
    )
    assert spec.ref == BlueprintRef("platform", "ca-bundle", Kind.CONFIG_MAP)
    assert spec.target_name == "trusted-ca.example.com"
    assert spec.selector == parse_label_selector("env in (dev,prod),!legacy")
    assert (spec.include, spec.exclude) == (("team-*", "shared"), ("team-sandbox",))
    assert spec.previous_target_names == ("ca-bundle", "old-ca")
    assert spec.names == ("trusted-ca.example.com", "ca-bundle", "old-ca")


def test_an_object_with_only_a_source_is_a_secret_blueprint_that_follows_the_global_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert blueprints(monkeypatch, [{"source": "auth/htpasswd"}]) == (
        BlueprintSpec(BlueprintRef("auth", "htpasswd", Kind.SECRET)),
    )


def test_explicitly_empty_selector_and_exclude_list_override_the_global_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Absent means "the global setting"; present but empty means "all" (selector) and "none" (exclude)."""
    monkeypatch.setenv(f"{PREFIX}NAMESPACE_SELECTOR", "team")
    (spec,) = blueprints(
        monkeypatch, [{"source": "auth/htpasswd", "namespaceSelector": "", "excludeNamespaces": []}]
    )
    assert spec.selector is not None
    assert spec.selector.matches({})
    assert spec.exclude == ()
    assert spec.include is None


def test_strings_and_objects_mix_and_keep_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = blueprints(
        monkeypatch,
        [
            "registry/pull-secret",
            {"source": "auth/htpasswd", "includeNamespaces": ["team-*"], "namespaceSelector": "tier=web"},
            {"source": "platform/ca-bundle", "kind": "ConfigMap"},
        ],
    )
    assert [spec.ref for spec in loaded] == [
        BlueprintRef("registry", "pull-secret"),
        BlueprintRef("auth", "htpasswd"),
        BlueprintRef("platform", "ca-bundle", Kind.CONFIG_MAP),
    ]
    assert load().refs == tuple(spec.ref for spec in loaded)


def test_the_policy_carries_the_specs_beside_the_global_targeting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}INCLUDE_NAMESPACES", "team-*")
    specs = blueprints(
        monkeypatch, ["registry/pull-secret", {"source": "auth/htpasswd", "includeNamespaces": ["*"]}]
    )
    policy = load().policy
    assert policy.blueprints == specs
    assert policy.include == ("team-*",)
    assert specs[1].include == ("*",)


@pytest.mark.parametrize(
    "value",
    [
        '  [ "auth/htpasswd" ]  ',
        '\n[\n  {\n    "source": "auth/htpasswd"\n  }\n]\n',  # as a YAML block scalar would pass it
        '\t["auth/htpasswd"]',
    ],
)
def test_a_value_whose_first_non_blank_character_is_a_bracket_is_json(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    assert blueprints(monkeypatch, value) == (BlueprintSpec(BlueprintRef("auth", "htpasswd")),)


@pytest.mark.parametrize("value", ["[]", " [ ] ", "[\n]"])
def test_an_empty_json_list_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert blueprints_error(monkeypatch, value).startswith("at least one blueprint is required")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            [{"source": "auth/x", "kynd": "Secret"}],
            'item 1 {"source": "auth/x", "kynd": "Secret"}: unknown key \'kynd\' ' + ALLOWED,
            id="unknown-key",
        ),
        pytest.param(
            ["auth/htpasswd", {"source": "auth/x", "kynd": "Secret"}],
            'item 2 {"source": "auth/x", "kynd": "Secret"}: unknown key \'kynd\' ' + ALLOWED,
            id="unknown-key-in-item-2",
        ),
        pytest.param(
            [{"source": "auth/x", "target_name": "y", "selector": "a"}],
            'item 1 {"source": "auth/x", "target_name": "y", "selector": "a"}: unknown keys '
            "'target_name', 'selector' " + ALLOWED,
            id="unknown-keys",
        ),
        pytest.param(
            [{"kind": "Secret"}],
            'item 1 {"kind": "Secret"}: source is required (the blueprint\'s "namespace/name")',
            id="no-source",
        ),
        pytest.param(
            [{"source": ["auth/x"]}],
            'item 1 {"source": ["auth/x"]}: source must be a string, got a list ["auth/x"]',
            id="source-not-a-string",
        ),
        pytest.param(
            [{"source": "htpasswd"}],
            'item 1 {"source": "htpasswd"}: source: \'htpasswd\' is not of the form namespace/name',
            id="source-without-namespace",
        ),
        pytest.param(
            [{"source": "Auth/x"}],
            'item 1 {"source": "Auth/x"}: source: namespace \'Auth\' is not a valid namespace name '
            "(lowercase DNS label)",
            id="source-bad-namespace",
        ),
        pytest.param(
            [{"source": "ops/CA", "kind": "ConfigMap"}],
            'item 1 {"source": "ops/CA", "kind": "ConfigMap"}: source: \'CA\' is not a valid ConfigMap '
            "name (lowercase DNS subdomain)",
            id="source-bad-configmap-name",
        ),
        pytest.param(
            [{"source": "auth/x", "kind": "configmap"}],
            'item 1 {"source": "auth/x", "kind": "configmap"}: kind must be "Secret" or "ConfigMap", '
            'got "configmap"',
            id="kind-lowercase",
        ),
        pytest.param(
            [{"source": "auth/x", "kind": "Pod"}],
            'item 1 {"source": "auth/x", "kind": "Pod"}: kind must be "Secret" or "ConfigMap", got "Pod"',
            id="kind-unknown",
        ),
        pytest.param(
            [{"source": "auth/x", "kind": True}],
            'item 1 {"source": "auth/x", "kind": true}: kind must be "Secret" or "ConfigMap", got true',
            id="kind-not-a-string",
        ),
        pytest.param(
            [{"source": "auth/x", "targetName": "X"}],
            'item 1 {"source": "auth/x", "targetName": "X"}: targetName: \'X\' is not a valid Secret '
            "name (lowercase DNS subdomain)",
            id="target-name-uppercase",
        ),
        pytest.param(
            [{"source": "auth/x", "targetName": ""}],
            'item 1 {"source": "auth/x", "targetName": ""}: targetName: \'\' is not a valid Secret '
            "name (lowercase DNS subdomain)",
            id="target-name-empty",
        ),
        pytest.param(
            [{"source": "auth/x", "targetName": None}],
            'item 1 {"source": "auth/x", "targetName": null}: targetName must be a string, got null',
            id="target-name-null",
        ),
        pytest.param(
            [{"source": "auth/x", "targetName": 7}],
            'item 1 {"source": "auth/x", "targetName": 7}: targetName must be a string, got a number 7',
            id="target-name-number",
        ),
        pytest.param(
            [{"source": "auth/x", "namespaceSelector": "env in prod"}],
            'item 1 {"source": "auth/x", "namespaceSelector": "env in prod"}: namespaceSelector: '
            "label selector 'env in prod': expected '(' after 'in'",
            id="selector-malformed",
        ),
        pytest.param(
            [{"source": "auth/x", "namespaceSelector": {"env": "prod"}}],
            'item 1 {"source": "auth/x", "namespaceSelector": {"env": "prod"}}: namespaceSelector must be '
            'a string, got an object {"env": "prod"}',
            id="selector-as-object",
        ),
        pytest.param(
            [{"source": "auth/x", "includeNamespaces": []}],
            'item 1 {"source": "auth/x", "includeNamespaces": []}: includeNamespaces is empty, so no '
            'namespace would ever be a target of this blueprint; use ["*"] for all, or leave the key out '
            "for the global setting",
            id="include-empty",
        ),
        pytest.param(
            [{"source": "auth/x", "includeNamespaces": "team-*"}],
            'item 1 {"source": "auth/x", "includeNamespaces": "team-*"}: includeNamespaces must be a list '
            'of globs, got a string "team-*"',
            id="include-as-string",
        ),
        pytest.param(
            [{"source": "auth/x", "excludeNamespaces": ["kube-*", 3]}],
            'item 1 {"source": "auth/x", "excludeNamespaces": ["kube-*", 3]}: excludeNamespaces element 2 '
            "must be a string, got a number 3",
            id="exclude-element-number",
        ),
        pytest.param(
            [{"source": "auth/x", "excludeNamespaces": ["kube-*", ""]}],
            'item 1 {"source": "auth/x", "excludeNamespaces": ["kube-*", ""]}: excludeNamespaces glob \'\' '
            "is empty or has spaces around it, so it matches no namespace",
            id="exclude-empty-glob",
        ),
        pytest.param(
            [{"source": "auth/x", "includeNamespaces": ["team-* "]}],
            'item 1 {"source": "auth/x", "includeNamespaces": ["team-* "]}: includeNamespaces glob '
            "'team-* ' is empty or has spaces around it, so it matches no namespace",
            id="include-glob-with-space",
        ),
        pytest.param(
            [{"source": "auth/x", "previousTargetNames": "old"}],
            'item 1 {"source": "auth/x", "previousTargetNames": "old"}: previousTargetNames must be a list '
            'of names, got a string "old"',
            id="previous-as-string",
        ),
        pytest.param(
            [{"source": "auth/x", "previousTargetNames": ["old", "Old_Name"]}],
            'item 1 {"source": "auth/x", "previousTargetNames": ["old", "Old_Name"]}: previousTargetNames: '
            "'Old_Name' is not a valid Secret name (lowercase DNS subdomain)",
            id="previous-invalid-name",
        ),
        pytest.param(
            ["auth/x", 42],
            'item 2 42: must be a "namespace/name" string or an object, got a number',
            id="number",
        ),
        pytest.param(
            [None], 'item 1 null: must be a "namespace/name" string or an object, got null', id="null"
        ),
        pytest.param(
            [["auth/x"]],
            'item 1 ["auth/x"]: must be a "namespace/name" string or an object, got a list',
            id="nested-list",
        ),
        pytest.param(
            ["auth/x", "registry"],
            "item 2: 'registry' is not of the form namespace/name",
            id="malformed-string-item",
        ),
    ],
)
def test_a_bad_item_is_one_line_naming_its_number_the_item_and_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, value: object, expected: str
) -> None:
    assert blueprints_error(monkeypatch, value) == expected


def test_the_comma_separated_form_numbers_its_items_too(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        blueprints_error(monkeypatch, "auth/htpasswd, registry ,ops/ca")
        == "item 2: 'registry' is not of the form namespace/name"
    )


@pytest.mark.parametrize(
    "value",
    [
        '[{"source": "auth/x",}]',
        '[{"source": "auth/x"}',
        '["auth/x" "registry/y"]',
        '[\n  {"source": "auth/x"},\n  {"source": "registry/y" "kind": "Secret"}\n]',
        "[{'source': 'auth/x'}]",
        '["auth/x"] trailing',
        "[",
    ],
)
def test_invalid_json_is_reported_with_the_decoders_position(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(json.JSONDecodeError) as decoded:
        json.loads(value)
    where = decoded.value
    message = blueprints_error(monkeypatch, value)
    assert message.startswith(
        f"invalid JSON: {where.msg} at line {where.lineno} column {where.colno} (char {where.pos}), near "
    )


def test_a_json_object_outside_a_list_is_rejected_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the hint it would be split at its commas and fail as "not of the form namespace/name"."""
    assert (
        blueprints_error(monkeypatch, ' {"source": "auth/x", "kind": "ConfigMap"}')
        == "the JSON form is a list: put the objects in [ ]"
    )


def test_json_nested_beyond_the_decoders_limit_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    assert blueprints_error(monkeypatch, "[" * 100_000) == "invalid JSON: nested too deeply"


def test_a_huge_item_is_cut_short_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = {"source": "auth/x", "excludeNamespaces": [f"team-{i}" for i in range(10_000)], "kynd": 1}
    message = blueprints_error(monkeypatch, ["auth/y", huge])
    assert message.startswith('item 2 {"source": "auth/x", "excludeNamespaces": ["team-0", ')
    assert "...: unknown key 'kynd'" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    "value",
    [
        ["auth/" + "x" * 10_000],
        "auth/" + "x" * 10_000,
        [{"source": "n" * 10_000 + "/x"}],
        [{"source": "auth/x", "targetName": "t" * 10_000}],
        [{"source": "auth/x", "namespaceSelector": "env in (" + "a," * 5_000}],
        [{"source": "auth/x", "includeNamespaces": [" " + "a" * 10_000]}],
        [{"source": "auth/x", "k" * 10_000: 1}],
        '["auth/x", ' + "x" * 10_000 + "]",
    ],
)
def test_no_error_echoes_a_huge_value(monkeypatch: pytest.MonkeyPatch, value: object) -> None:
    assert len(blueprints_error(monkeypatch, value)) < 600


@pytest.mark.parametrize(
    "value",
    [
        ["auth/x\u2028y"],
        [{"source": "auth/x", "targetName": "a\nb"}],
        [{"source": "auth/x", "kind": "Secret\r\n"}],
        [{"source": "auth/x", "ki\u2029nd": "Secret"}],
        '[\n{"source": "auth/x",\n}\n]',
    ],
)
def test_line_separators_in_the_value_never_break_the_message(
    monkeypatch: pytest.MonkeyPatch, value: object
) -> None:
    blueprints_error(monkeypatch, value)  # asserts one line


# -- the same blueprint twice, and two blueprints with the same copies


def test_the_same_blueprint_twice_with_the_same_options_is_listed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = blueprints(
        monkeypatch,
        [
            "auth/htpasswd",
            {"source": "auth/htpasswd"},
            {"source": "auth/htpasswd", "kind": "Secret", "previousTargetNames": ["htpasswd"]},
            {"source": "registry/pull", "previousTargetNames": ["old", "old"]},
            {"source": "registry/pull", "previousTargetNames": ["old"]},
        ],
    )
    assert loaded == (
        BlueprintSpec(BlueprintRef("auth", "htpasswd")),
        BlueprintSpec(BlueprintRef("registry", "pull"), previous_target_names=("old",)),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            ["auth/htpasswd", {"source": "auth/htpasswd", "targetName": "basic-auth"}],
            "item 1 and item 2 configure the same blueprint (Secret auth/htpasswd) with different options; "
            "configure each blueprint once",
            id="string-and-object",
        ),
        pytest.param(
            [
                "registry/pull",
                {"source": "auth/htpasswd", "includeNamespaces": ["team-*"]},
                {"source": "auth/htpasswd", "includeNamespaces": ["*"]},
            ],
            "item 2 and item 3 configure the same blueprint (Secret auth/htpasswd) with different options; "
            "configure each blueprint once",
            id="two-objects",
        ),
        pytest.param(
            [
                {"source": "ops/ca", "kind": "ConfigMap"},
                {"source": "ops/ca", "kind": "ConfigMap", "namespaceSelector": ""},
            ],
            "item 1 and item 2 configure the same blueprint (ConfigMap ops/ca) with different options; "
            "configure each blueprint once",
            id="selector-absent-and-empty-differ",
        ),
    ],
)
def test_the_same_blueprint_with_different_options_is_rejected_naming_both_items(
    monkeypatch: pytest.MonkeyPatch, value: object, expected: str
) -> None:
    assert blueprints_error(monkeypatch, value) == expected


def test_a_secret_and_a_config_map_of_the_same_name_are_two_blueprints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Copies of different kinds are different objects, so they may share names and even sources."""
    loaded = blueprints(
        monkeypatch,
        [
            "ops/ca",
            {"source": "ops/ca", "kind": "ConfigMap"},
            {
                "source": "team/ca",
                "kind": "ConfigMap",
                "targetName": "bundle",
                "previousTargetNames": ["ca-old"],
            },
            {"source": "auth/bundle", "previousTargetNames": ["ca-old"]},
        ],
    )
    assert [spec.ref.describe() for spec in loaded] == [
        "Secret ops/ca",
        "ConfigMap ops/ca",
        "ConfigMap team/ca",
        "Secret auth/bundle",
    ]


OWN = "two blueprints must not share a copy name, or they would fight over the same copies"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "auth/htpasswd,team-a/htpasswd",
            f"item 1 (Secret auth/htpasswd) and item 2 (Secret team-a/htpasswd) would both own Secrets named "
            f"'htpasswd': {OWN}",
            id="same-source-name",
        ),
        pytest.param(
            [{"source": "auth/htpasswd", "targetName": "basic-auth"}, "web/basic-auth"],
            f"item 1 (Secret auth/htpasswd) and item 2 (Secret web/basic-auth) would both own Secrets named "
            f"'basic-auth': {OWN}",
            id="target-name-is-another-source-name",
        ),
        pytest.param(
            [
                {"source": "ops/ca", "kind": "ConfigMap", "targetName": "ca"},
                {"source": "ops/bundle", "kind": "ConfigMap", "targetName": "ca"},
            ],
            f"item 1 (ConfigMap ops/ca) and item 2 (ConfigMap ops/bundle) would both own ConfigMaps named "
            f"'ca': {OWN}",
            id="same-target-name",
        ),
        pytest.param(
            [
                {"source": "auth/htpasswd", "targetName": "basic-auth", "previousTargetNames": ["htpasswd"]},
                "registry/pull",
                "web/htpasswd",
            ],
            "item 1 (Secret auth/htpasswd, through previousTargetNames) and item 3 (Secret web/htpasswd) "
            f"would both own Secrets named 'htpasswd': {OWN}",
            id="previous-name-is-another-target",
        ),
        pytest.param(
            [
                "web/basic-auth",
                {"source": "auth/htpasswd", "targetName": "auth", "previousTargetNames": ["basic-auth"]},
            ],
            f"item 1 (Secret web/basic-auth) and item 2 (Secret auth/htpasswd, through previousTargetNames) "
            f"would both own Secrets named 'basic-auth': {OWN}",
            id="target-is-another-previous-name",
        ),
        pytest.param(
            [
                {"source": "a/one", "previousTargetNames": ["old"]},
                {"source": "b/two", "previousTargetNames": ["old"]},
            ],
            f"item 1 (Secret a/one, through previousTargetNames) and item 2 (Secret b/two, through "
            f"previousTargetNames) would both own Secrets named 'old': {OWN}",
            id="same-previous-name",
        ),
    ],
)
def test_two_blueprints_that_would_own_the_same_copies_are_rejected(
    monkeypatch: pytest.MonkeyPatch, value: object, expected: str
) -> None:
    assert blueprints_error(monkeypatch, value) == expected


def test_a_blueprints_own_target_among_its_previous_names_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    (renamed, plain) = blueprints(
        monkeypatch,
        [
            {
                "source": "auth/htpasswd",
                "targetName": "basic-auth",
                "previousTargetNames": ["basic-auth", "htpasswd"],
            },
            {"source": "registry/pull", "previousTargetNames": ["pull"]},
        ],
    )
    assert renamed.previous_target_names == ("htpasswd",)
    assert renamed.names == ("basic-auth", "htpasswd")
    assert plain.previous_target_names == ()


def test_the_documented_examples_load_as_described(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/configuration.md shows one configuration twice: as the variable and as Helm values."""
    shell, helm = re.findall(r"```(?:sh|yaml)\n(.*?)```", reference.BLUEPRINTS_RULES, re.DOTALL)
    variable = shell.removeprefix(f"{BLUEPRINTS}='").rstrip().removesuffix("'")
    from_shell = blueprints(monkeypatch, variable)
    assert blueprints(monkeypatch, yaml.safe_load(helm)["operator"]["blueprints"]) == from_shell
    registry, htpasswd, ca_bundle, tls = from_shell
    assert registry == BlueprintSpec(BlueprintRef("registry", "pull-secret"))
    assert (htpasswd.include, htpasswd.exclude) == (("team-*",), None)
    assert htpasswd.selector == parse_label_selector("ingress=basic-auth")
    assert ca_bundle.ref == BlueprintRef("platform", "ca-bundle", Kind.CONFIG_MAP)
    assert tls.names == ("client-cert", "tls-client")


# -- blueprints from code


def test_blueprint_refs_and_specs_from_code_are_accepted() -> None:
    ref = BlueprintRef("auth", "htpasswd")
    spec = BlueprintSpec(BlueprintRef("ops", "ca", Kind.CONFIG_MAP), target_name="bundle")
    assert Settings(blueprints=(ref, ref)).blueprints == (BlueprintSpec(ref),)  # type: ignore[arg-type]
    assert Settings(blueprints=(spec,)).blueprints == (spec,)


def test_blueprints_from_code_are_checked_like_the_environment() -> None:
    with pytest.raises(ValidationError, match="would both own Secrets named 'htpasswd'"):
        Settings(blueprints=(BlueprintRef("auth", "htpasswd"), BlueprintRef("web", "htpasswd")))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least one blueprint is required"):
        Settings(blueprints=())


def test_the_blueprints_description_documents_the_json_form() -> None:
    """It is what --help and docs/configuration.md show."""
    description = str(Settings.model_fields["blueprints"].description)
    assert "JSON list" in description
    for key in BLUEPRINT_KEYS:
        assert f"`{key}`" in description


# -- the command line


@pytest.mark.parametrize(
    "value",
    [
        '[{"source": "auth/x", "kynd": "Secret"}]',
        '[{"source": "auth/x",}]',
        '[{"source": "auth/x", "targetName": "y"}, "web/y"]',
        "[" + json.dumps({"source": "auth/x", "excludeNamespaces": ["a\nb"] * 5_000, "x": 1}),
    ],
)
def test_run_with_a_bad_blueprint_exits_2_with_one_line(tmp_path: Path, value: str) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(PREFIX)
        and name not in {"POD_NAME", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
    }
    environment["KUBECONFIG"] = str(tmp_path / "no-such-kubeconfig")
    environment[BLUEPRINTS] = value
    result = subprocess.run(
        [sys.executable, "-m", "secrets_operator", "run"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"secrets-operator: configuration error: {BLUEPRINTS}: ")
    assert len(line) < 600
    assert result.stdout == ""


# -- bad values


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_PORT", "http"),
        ("HTTP_PORT", "80.5"),
        ("HTTP_PORT", "65536"),
        ("HTTP_PORT", "-1"),
        ("MAX_CONCURRENT_WRITES", "many"),
        ("MAX_CONCURRENT_WRITES", "0"),
        ("MAX_CONCURRENT_WRITES", "1001"),
        ("API_BURST", "lots"),
        ("API_BURST", "0"),
        ("API_QPS", "fast"),
        ("API_QPS", "-1"),
        ("RESYNC_SECONDS", "10m"),
        ("RESYNC_SECONDS", "0"),
        ("LEASE_DURATION_SECONDS", "15s"),
        ("LEASE_DURATION_SECONDS", "-15"),
        ("RENEW_DEADLINE_SECONDS", "ten"),
        ("RENEW_DEADLINE_SECONDS", "0"),
        ("RETRY_PERIOD_SECONDS", "2s"),
        ("PRUNE", "maybe"),
        ("LEADER_ELECTION", "enabled"),
        ("CONFLICT_POLICY", "overwrite"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_FORMAT", "xml"),
        ("LEASE_NAME", "Secrets_Operator"),
        ("LEASE_NAMESPACE", "Operators"),
        ("NAMESPACE_SELECTOR", "env in prod"),
    ],
)
def test_bad_value_is_rejected_naming_the_variable_and_the_value(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(f"{PREFIX}{variable}", value)
    message = load_error()
    assert message.startswith(f"{PREFIX}{variable}: ")
    assert value.lower() in message.lower()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEASE_DURATION_SECONDS", "inf"),
        ("RESYNC_SECONDS", "inf"),
        ("RETRY_PERIOD_SECONDS", "nan"),
        ("API_QPS", "infinity"),
    ],
)
def test_non_finite_duration_or_rate_is_rejected(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    """The Lease stores its duration as an int32, and a sleep of inf or nan seconds never wakes up."""
    env.setenv(f"{PREFIX}{variable}", value)
    assert load_error().startswith(f"{PREFIX}{variable}: ")


def test_lease_namespace_with_trailing_newline_is_rejected(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}LEASE_NAMESPACE", "ops\n")
    assert load_error().startswith(f"{PREFIX}LEASE_NAMESPACE: ")


def test_a_bad_lease_name_is_called_a_lease_name(env: pytest.MonkeyPatch) -> None:
    """The message names what was checked: the Lease's name, not a Secret's."""
    env.setenv(f"{PREFIX}LEASE_NAME", "Bad_Name")
    assert load_error() == (
        f"{PREFIX}LEASE_NAME: 'Bad_Name' is not a valid Lease name (lowercase DNS subdomain)"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("off", False)],
)
def test_boolean_variables_accept_the_usual_spellings(
    env: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    env.setenv(f"{PREFIX}PRUNE", value)
    env.setenv(f"{PREFIX}LEADER_ELECTION", value)
    loaded = load()
    assert (loaded.prune, loaded.leader_election) == (expected, expected)


@pytest.mark.parametrize(
    ("value", "expected"), [("debug", "DEBUG"), ("Warning", "WARNING"), (" error ", "ERROR")]
)
def test_log_level_is_case_insensitive(env: pytest.MonkeyPatch, value: str, expected: str) -> None:
    env.setenv(f"{PREFIX}LOG_LEVEL", value)
    assert load().log_level == expected


def test_enum_choices_are_case_insensitive(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}CONFLICT_POLICY", "Adopt")
    env.setenv(f"{PREFIX}LOG_FORMAT", "TEXT")
    loaded = load()
    assert (loaded.conflict_policy, loaded.log_format) == ("adopt", "text")


def test_port_zero_is_allowed_to_pick_a_free_port(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}HTTP_PORT", "0")
    assert load().http_port == 0


# -- leader-election timings


@pytest.mark.parametrize(
    ("duration", "deadline", "retry", "named"),
    [
        ("10", "10", "2", ("LEASE_DURATION_SECONDS", "RENEW_DEADLINE_SECONDS")),
        ("5", "10", "2", ("LEASE_DURATION_SECONDS", "RENEW_DEADLINE_SECONDS")),
        ("15", "12", "10", ("RENEW_DEADLINE_SECONDS", "RETRY_PERIOD_SECONDS")),
        ("15", "10", "9", ("RENEW_DEADLINE_SECONDS", "RETRY_PERIOD_SECONDS")),
    ],
)
def test_lease_timings_out_of_order_are_rejected_naming_both_variables(
    env: pytest.MonkeyPatch, duration: str, deadline: str, retry: str, named: tuple[str, str]
) -> None:
    env.setenv(f"{PREFIX}LEASE_DURATION_SECONDS", duration)
    env.setenv(f"{PREFIX}RENEW_DEADLINE_SECONDS", deadline)
    env.setenv(f"{PREFIX}RETRY_PERIOD_SECONDS", retry)
    message = load_error()
    first, second = named
    assert message.startswith(f"{PREFIX}{first} must be greater than")
    assert f"{PREFIX}{second}" in message


def test_lease_timings_just_inside_the_rule_are_accepted(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}LEASE_DURATION_SECONDS", "12.5")
    env.setenv(f"{PREFIX}RENEW_DEADLINE_SECONDS", "12.1")
    env.setenv(f"{PREFIX}RETRY_PERIOD_SECONDS", "10")
    loaded = load()
    assert (loaded.lease_duration_seconds, loaded.renew_deadline_seconds, loaded.retry_period_seconds) == (
        12.5,
        12.1,
        10.0,
    )


# -- Lease namespace and identity


@pytest.fixture
def namespace_file(tmp_path: Path) -> Path:
    path = tmp_path / "namespace"
    path.write_text("from-file\n")
    return path


def test_explicit_lease_namespace_wins(env: pytest.MonkeyPatch, namespace_file: Path) -> None:
    env.setenv(f"{PREFIX}LEASE_NAMESPACE", "explicit")
    env.setenv("POD_NAMESPACE", "from-env")
    assert load().resolved_lease_namespace(namespace_file=namespace_file) == "explicit"


def test_pod_namespace_is_used_before_the_namespace_file(
    env: pytest.MonkeyPatch, namespace_file: Path
) -> None:
    env.setenv("POD_NAMESPACE", " from-env ")
    assert load().resolved_lease_namespace(namespace_file=namespace_file) == "from-env"


@pytest.mark.parametrize("pod_namespace", [None, "", "  "])
def test_namespace_file_is_used_without_pod_namespace(
    env: pytest.MonkeyPatch, namespace_file: Path, pod_namespace: str | None
) -> None:
    if pod_namespace is not None:
        env.setenv("POD_NAMESPACE", pod_namespace)
    assert load().resolved_lease_namespace(namespace_file=namespace_file) == "from-file"


@pytest.mark.parametrize("file_content", [None, "", "\n"])
def test_lease_namespace_falls_back_to_default(
    env: pytest.MonkeyPatch, tmp_path: Path, file_content: str | None
) -> None:
    path = tmp_path / "namespace"
    if file_content is not None:
        path.write_text(file_content)
    assert load().resolved_lease_namespace(namespace_file=path) == "default"


def test_explicit_identity_wins(env: pytest.MonkeyPatch) -> None:
    env.setenv(f"{PREFIX}IDENTITY", "replica-a")
    env.setenv("POD_NAME", "secrets-operator-7d9f-abcde")
    assert load().resolved_identity() == "replica-a"


def test_pod_name_and_a_per_process_suffix_are_the_identity_by_default(env: pytest.MonkeyPatch) -> None:
    env.setenv("POD_NAME", "secrets-operator-7d9f-abcde")
    identity = load().resolved_identity()
    assert re.fullmatch(r"secrets-operator-7d9f-abcde_[0-9a-f]{8}", identity)
    assert load().resolved_identity() == identity  # stable within the process


def test_a_restarted_process_in_the_same_pod_is_another_candidate(env: pytest.MonkeyPatch) -> None:
    env.setenv("POD_NAME", "secrets-operator-7d9f-abcde")
    code = "from secrets_operator.settings import load; print(load().resolved_identity())"
    identities = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(identities) == 2, identities


@pytest.mark.parametrize("pod_name", [None, " "])
def test_identity_falls_back_to_hostname_and_pid(env: pytest.MonkeyPatch, pod_name: str | None) -> None:
    if pod_name is not None:
        env.setenv("POD_NAME", pod_name)
    env.setattr(socket, "gethostname", lambda: "node-1")
    assert re.fullmatch(rf"node-1-{os.getpid()}_[0-9a-f]{{8}}", load().resolved_identity())


def test_settings_cannot_be_changed_after_loading(env: pytest.MonkeyPatch) -> None:
    loaded: Settings = load()
    with pytest.raises(ValueError, match="frozen"):
        loaded.prune = True
    assert loaded.prune is False
