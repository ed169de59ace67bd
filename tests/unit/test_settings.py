"""The operator is configured only through SECRETS_OPERATOR_* variables, validated once at start.

A typo in a Deployment's env must stop the operator with one line naming the variable (the command
line turns a ConfigError into exit status 2), never start it with a silently different
configuration. These tests pin the defaults, the list parsing, the blueprint references, the
leader-election timing rule, and how the Lease namespace and holder identity are resolved.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from secrets_operator.model import BlueprintRef
from secrets_operator.settings import ConfigError, Settings, load

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
    assert loaded.api_qps == 50.0
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
        ("API_QPS", "0"),
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
