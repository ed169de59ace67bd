"""SECRETS_OPERATOR_NAMESPACE_SELECTOR and the namespace globs decide where Secrets are copied.

A selector that parses differently from ``kubectl -l`` would copy credentials into namespaces the
user did not pick (or silently skip the ones they did), and a selector that fails must tell the
user what is wrong in a message they can act on. These tests pin the kubectl syntax, the matching
semantics, the label key/value rules and the whole-name glob matching used for
INCLUDE_NAMESPACES / EXCLUDE_NAMESPACES / COPY_METADATA.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import pytest

from secrets_operator.selectors import (
    matches_any,
    parse_label_selector,
    validate_label_key,
    validate_label_value,
)

# -- parsing and matching: each selector, labels it must select, labels it must not select


@pytest.mark.parametrize(
    ("selector", "selected", "rejected"),
    [
        ("env=prod", [{"env": "prod"}, {"env": "prod", "x": "y"}], [{"env": "dev"}, {}]),
        ("env==prod", [{"env": "prod"}], [{"env": "dev"}, {}]),
        ("env!=prod", [{"env": "dev"}, {}], [{"env": "prod"}]),
        ("tier in (web,api)", [{"tier": "web"}, {"tier": "api"}], [{"tier": "db"}, {}]),
        ("tier notin (db)", [{"tier": "web"}, {}], [{"tier": "db"}]),
        ("tier notin (db,cache)", [{"tier": "web"}], [{"tier": "db"}, {"tier": "cache"}]),
        ("legacy", [{"legacy": ""}, {"legacy": "true"}], [{}, {"legacy-x": "true"}]),
        ("!legacy", [{}, {"other": "x"}], [{"legacy": ""}, {"legacy": "false"}]),
        ("replicas>3", [{"replicas": "4"}, {"replicas": "100"}], [{"replicas": "3"}, {}]),
        ("replicas<3", [{"replicas": "2"}, {"replicas": "-1"}], [{"replicas": "3"}, {}]),
        ("example.com/team=payments", [{"example.com/team": "payments"}], [{"team": "payments"}]),
        ("env=", [{"env": ""}], [{"env": "prod"}, {}]),
        ("env=,tier=web", [{"env": "", "tier": "web"}], [{"env": "", "tier": "db"}, {"tier": "web"}]),
        ("tier in (web,)", [{"tier": "web"}, {"tier": ""}], [{"tier": "api"}, {}]),
        (
            "env=prod,!legacy,tier in (web,api)",
            [{"env": "prod", "tier": "api"}],
            [{"env": "prod", "tier": "api", "legacy": "y"}, {"env": "prod", "tier": "db"}, {"tier": "web"}],
        ),
        (
            "  env = prod ,\ttier  in  ( web , api ) ,  ! legacy  ",
            [{"env": "prod", "tier": "web"}],
            [{"env": "prod", "tier": "db"}, {"env": "prod", "tier": "web", "legacy": ""}],
        ),
    ],
)
def test_selector_selects_exactly_the_namespaces_kubectl_would(
    selector: str, selected: Sequence[Mapping[str, str]], rejected: Sequence[Mapping[str, str]]
) -> None:
    parsed = parse_label_selector(selector)
    for labels in selected:
        assert parsed.matches(labels), f"{selector!r} should select {labels}"
    for labels in rejected:
        assert not parsed.matches(labels), f"{selector!r} should not select {labels}"


@pytest.mark.parametrize("selector", ["", "   ", "\t"])
def test_empty_selector_selects_every_namespace(selector: str) -> None:
    parsed = parse_label_selector(selector)
    assert parsed.matches({})
    assert parsed.matches({"env": "prod", "secrets-operator.io/exclude": "true"})
    assert parsed.requirements == ()


@pytest.mark.parametrize("labels", [{"replicas": "many"}, {"replicas": ""}, {"replicas": "3.5"}])
def test_numeric_comparison_never_selects_a_non_integer_label(labels: Mapping[str, str]) -> None:
    assert not parse_label_selector("replicas>1").matches(labels)
    assert not parse_label_selector("replicas<10").matches(labels)


def test_selector_prints_as_the_user_wrote_it_without_surrounding_blanks() -> None:
    assert str(parse_label_selector("  env=prod,tier in (web,api) ")) == "env=prod,tier in (web,api)"


@pytest.mark.parametrize("selector", ["env=prod\n", "env=prod,\n!legacy", "env\r\n=\nprod"])
def test_line_breaks_separate_tokens_like_kubectl(selector: str) -> None:
    """A selector from a YAML block scalar ends in a newline; it must not become part of a value."""
    assert parse_label_selector(selector).matches({"env": "prod"})


# -- invalid selectors: a ValueError whose message says what is wrong


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("env=prod,", "trailing ','"),
        (",env=prod", "expected a label key, found ','"),
        ("env=prod,,tier=web", "expected a label key, found ','"),
        ("env=prod tier=web", "expected ',' between requirements, found 'tier'"),
        ("env=prod=dev", "expected ',' between requirements, found '='"),
        ("env in web", "expected '(' after 'in'"),
        ("env notin", "expected '(' at the end"),
        ("env in (web", "expected ',' or ')' at the end"),
        ("env in (web api)", "expected ',' or ')', found 'api'"),
        ("env in (web,(api))", "expected a label value, found '('"),
        ("replicas>three", "'>' needs an integer, found 'three'"),
        ("replicas<1.5", "'<' needs an integer, found '1.5'"),
        ("replicas>", "expected an integer at the end"),
        ("!", "expected a label key after '!' at the end"),
        ("!=prod", "expected a label key, found '!='"),
        ("env!prod", "unexpected '!' after key 'env'"),
        ("env(prod)", "unexpected '(' after key 'env'"),
        ("-env=prod", "invalid label key '-env'"),
        ("Example.com/env=prod", "prefix must be a DNS subdomain"),
        ("env=-prod", "invalid label value '-prod'"),
        ("tier in (web,bad value)", "expected ',' or ')', found 'value'"),
        ("tier notin (web,-bad)", "invalid label value '-bad'"),
    ],
)
def test_invalid_selector_is_rejected_with_a_message_saying_what_is_wrong(
    selector: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_label_selector(selector)


@pytest.mark.parametrize("selector", ["env=prod,", "env in (web", "tier=web env=prod"])
def test_syntax_error_quotes_the_whole_selector(selector: str) -> None:
    with pytest.raises(ValueError, match="label selector") as caught:
        parse_label_selector(selector)
    assert repr(selector) in str(caught.value)


# -- label keys and values


@pytest.mark.parametrize(
    "key",
    [
        "env",
        "a",
        "team.name_x-1",
        "k" * 63,
        "example.com/team",
        "sub.example.com/Team_Name",
        "secrets-operator.io/exclude",
        ("p" * 253) + "/name",
    ],
)
def test_valid_label_key_is_accepted(key: str) -> None:
    validate_label_key(key)
    assert parse_label_selector(f"{key}=x").matches({key: "x"})


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "name must be 1-63 characters"),
        ("k" * 64, "name must be 1-63 characters"),
        ("-env", "alphanumeric at both ends"),
        ("env-", "alphanumeric at both ends"),
        ("env var", "name must be"),
        ("env:prod", "name must be"),
        ("example.com/", "name must be 1-63 characters"),
        ("/env", "prefix must be a DNS subdomain"),
        ("Example.com/env", "prefix must be a DNS subdomain"),
        ("my_company.com/env", "prefix must be a DNS subdomain"),
        ("a/b/c", "prefix must be a DNS subdomain"),
        (("p" * 254) + "/name", "prefix must be a DNS subdomain"),
        ("example.com/" + "k" * 64, "name must be 1-63 characters"),
    ],
)
def test_invalid_label_key_is_rejected_naming_the_key(key: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid label key") as caught:
        validate_label_key(key)
    assert fragment in str(caught.value)
    assert repr(key) in str(caught.value)


@pytest.mark.parametrize("value", ["", "prod", "v1.2_3-rc", "A", "v" * 63])
def test_valid_label_value_is_accepted(value: str) -> None:
    validate_label_value(value)
    assert parse_label_selector(f"env in ({value})").matches({"env": value})


@pytest.mark.parametrize("value", ["v" * 64, "-prod", "prod.", "two words", "a/b", "x:y"])
def test_invalid_label_value_is_rejected_naming_the_value(value: str) -> None:
    with pytest.raises(ValueError, match="invalid label value") as caught:
        validate_label_value(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("validate", "text"),
    [
        (validate_label_key, "env\n"),
        (validate_label_value, "prod\n"),
        (validate_label_key, "example.com\n/x"),
    ],
)
def test_trailing_newline_makes_a_label_key_or_value_invalid(
    validate: Callable[[str], None], text: str
) -> None:
    with pytest.raises(ValueError, match="invalid label"):
        validate(text)


# -- whole-name globs


@pytest.mark.parametrize(
    ("name", "globs", "expected"),
    [
        ("team-a", ["team-*"], True),
        ("x-team-a", ["team-*"], False),
        ("team-a-staging", ["team-a"], False),
        ("team-a", ["team-a"], True),
        ("Team-a", ["team-*"], False),
        ("team-1", ["team-?"], True),
        ("team-12", ["team-?"], False),
        ("openshift-infra", ["kube-*", "openshift-*"], True),
        ("default", ["kube-*", "openshift-*"], False),
        ("anything", ["*"], True),
        ("anything", [], False),
        ("meta.helm.sh/release-name", ["meta.helm.sh/*"], True),
    ],
)
def test_glob_matches_only_the_whole_name(name: str, globs: Sequence[str], expected: bool) -> None:
    assert matches_any(name, globs) is expected
