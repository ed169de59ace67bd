"""The ``SECRETS_OPERATOR_BLUEPRINTS`` variable, read into blueprint specs and checked as a whole.

The variable is either the comma-separated ``namespace/name`` list or a JSON list whose items are
such strings or objects with per-blueprint options (kind, copy name, targeting, earlier copy
names); both become :class:`~secrets_operator.planning.BlueprintSpec`. The JSON form is checked
by hand, key by key, so that a mistake is one line naming the item's number, the item (cut
short) and what is wrong, and two blueprints that would write the same object are refused here,
before anything starts. It is PURE: text in, specs or a :class:`ValueError` out; the settings
add the variable's name to the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from secrets_operator.model import BlueprintRef, Kind
from secrets_operator.names import check_namespace_name, check_object_name, cut, quote
from secrets_operator.planning import BlueprintSpec
from secrets_operator.selectors import parse_label_selector


def split_list(value: Any) -> Any:
    """A comma-separated value as its parts, spaces and empty parts dropped; other values as they are.

    The comma-separated form of BLUEPRINTS, and every list of globs in the settings, read alike.
    """
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def parse_blueprint(text: str, kind: Kind = Kind.SECRET) -> BlueprintRef:
    """``namespace/name`` as the reference to a blueprint of ``kind``; ValueError if malformed."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"{quote(text)} is not of the form namespace/name")
    check_namespace_name(namespace, "namespace")
    check_object_name(name, kind)
    return BlueprintRef(namespace, name, kind)


#: The keys of a blueprint object in the JSON form, in the order the documentation lists them.
BLUEPRINT_KEYS = (
    "source",
    "kind",
    "targetName",
    "namespaceSelector",
    "includeNamespaces",
    "excludeNamespaces",
    "previousTargetNames",
)


def _show(value: Any) -> str:
    """A blueprint item as error messages show it: JSON, ASCII-escaped (so one line), cut short."""
    try:
        return cut(json.dumps(value, default=str))
    except ValueError:  # a circular structure, from code
        return cut(repr(value))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _got(value: Any) -> str:
    """``a list ["a"]``, ``a number 7``, ``null``: what a value of the wrong type was."""
    if value is None or isinstance(value, bool):
        return _show(value)
    return f"{_json_type(value)} {_show(value)}"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: a repeated key would silently win."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {quote(key)} appears twice in one object")
        found[key] = value
    return found


#: ConfigMaps the cluster itself publishes into every namespace: never a copy's name.
RESERVED_CONFIG_MAP_NAMES = ("kube-root-ca.crt",)


def _check_copy_name(name: str, kind: Kind) -> None:
    check_object_name(name, kind)
    if kind is Kind.CONFIG_MAP and name in RESERVED_CONFIG_MAP_NAMES:
        raise ValueError(
            f"{quote(name)} is published into every namespace by Kubernetes itself; "
            "a copy must never take that name"
        )


def _blueprint_items(value: str) -> list[Any]:
    """The items of the variable: a JSON list when it starts with ``[``, else comma-separated."""
    if value.lstrip().startswith("{"):
        raise ValueError("the JSON form is a list: put the objects in [ ]")
    if not value.lstrip().startswith("["):
        return list(split_list(value))
    try:
        items = json.loads(value, object_pairs_hook=_unique_keys)  # positions: those of the variable
    except json.JSONDecodeError as exc:
        near = value[max(0, exc.pos - 20) : exc.pos + 20]
        raise ValueError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos}), "
            f"near {quote(near)}"
        ) from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    if not isinstance(items, list):  # cannot happen after "[", but json.loads is typed Any
        raise ValueError(f"must be a JSON list, got {_json_type(items)}")
    return items


def _string(item: Mapping[str, Any], key: str) -> str:
    value = item[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {_got(value)}")
    return value


def _strings(item: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = item[key]
    if not isinstance(value, list | tuple):
        raise ValueError(f"{key} must be a list of {what}, got {_got(value)}")
    for number, element in enumerate(value, 1):
        if not isinstance(element, str):
            raise ValueError(f"{key} element {number} must be a string, got {_got(element)}")
    return tuple(value)


def _globs(item: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in item:
        return None
    globs = _strings(item, key, "globs")
    for glob in globs:
        if not glob or glob != glob.strip():
            raise ValueError(
                f"{key} glob {quote(glob)} is empty or has spaces around it, so it matches no namespace"
            )
    return globs


def _blueprint_object(item: Mapping[str, Any]) -> BlueprintSpec:
    """The JSON form's object: every key checked for its type and value, unknown keys refused."""
    unknown = [key for key in item if key not in BLUEPRINT_KEYS]
    if unknown:
        keys = cut(", ".join(repr(key) for key in unknown))
        raise ValueError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {keys} (allowed: {', '.join(BLUEPRINT_KEYS)})"
        )
    if "source" not in item:
        raise ValueError('source is required (the blueprint\'s "namespace/name")')
    kind = Kind.SECRET
    if "kind" in item:
        value = item["kind"]
        if not isinstance(value, str) or value not in {k.value for k in Kind}:
            raise ValueError(f'kind must be "Secret" or "ConfigMap", got {_show(value)}')
        kind = Kind(value)
    source = _string(item, "source")
    try:
        ref = parse_blueprint(source, kind)
    except ValueError as exc:
        raise ValueError(f"source: {exc}") from None
    target = ""
    if "targetName" in item:
        target = _string(item, "targetName")
        try:
            _check_copy_name(target, kind)
        except ValueError as exc:
            raise ValueError(f"targetName: {exc}") from None
    selector = None
    if "namespaceSelector" in item:
        text = _string(item, "namespaceSelector")
        try:
            selector = parse_label_selector(text)
        except ValueError as exc:  # its message quotes the whole selector
            raise ValueError(f"namespaceSelector: {str(exc).replace(repr(text), quote(text))}") from None
    include = _globs(item, "includeNamespaces")
    if include == ():
        raise ValueError(
            "includeNamespaces is empty, so no namespace would ever be a target of this blueprint; "
            'use ["*"] for all, or leave the key out for the global setting'
        )
    exclude = _globs(item, "excludeNamespaces")
    previous: tuple[str, ...] = ()
    if "previousTargetNames" in item:
        previous = _strings(item, "previousTargetNames", "names")
        for name in previous:
            try:
                _check_copy_name(name, kind)
            except ValueError as exc:
                raise ValueError(f"previousTargetNames: {exc}") from None
    current = target or ref.name
    if not target:
        try:
            _check_copy_name(current, kind)
        except ValueError as exc:
            raise ValueError(f"source: {exc}; set targetName") from None
    return BlueprintSpec(
        ref,
        target_name="" if target == ref.name else target,  # the source's own name is the default
        selector=selector,
        include=include,
        exclude=exclude,
        # the current name is no earlier name; repeats say nothing more
        previous_target_names=tuple(dict.fromkeys(name for name in previous if name != current)),
    )


def _blueprint_spec(item: Any) -> BlueprintSpec:
    if isinstance(item, BlueprintSpec):  # from code
        return item
    if isinstance(item, BlueprintRef):  # from code
        return BlueprintSpec(item)
    if isinstance(item, str):
        return BlueprintSpec(parse_blueprint(item))
    if isinstance(item, Mapping):
        return _blueprint_object(item)
    raise ValueError(f'must be a "namespace/name" string or an object, got {_json_type(item)}')


def _claim(number: int, spec: BlueprintSpec, name: str) -> str:
    """``item 2 (Secret auth/htpasswd)``, saying so when ``name`` is one of its earlier copy names."""
    earlier = ", through previousTargetNames" if name != spec.target else ""
    return f"item {number} ({spec.ref.describe()}{earlier})"


def parse_blueprints(value: str | list[Any] | tuple[Any, ...]) -> tuple[BlueprintSpec, ...]:
    """Every configured blueprint, once, in order; ValueError (one line, naming the item) if not.

    Refused: malformed items; one blueprint (kind and source) configured twice with different
    options (identical repeats are dropped); and two blueprints whose copies would be the same
    object, i.e. of the same kind with a name in common among their target and earlier names.
    """
    items = _blueprint_items(value) if isinstance(value, str) else list(value)
    if not items:
        raise ValueError("at least one blueprint is required, as namespace/name or a JSON list")
    numbered: list[tuple[int, BlueprintSpec]] = []
    first: dict[BlueprintRef, tuple[int, BlueprintSpec]] = {}
    for number, item in enumerate(items, 1):
        try:
            spec = _blueprint_spec(item)
        except ValueError as exc:
            shown = "" if isinstance(item, str) else f" {_show(item)}"  # a string's message quotes it
            raise ValueError(f"item {number}{shown}: {exc}") from None
        seen = first.setdefault(spec.ref, (number, spec))
        if seen[0] == number:
            numbered.append((number, spec))
        elif seen[1] != spec:
            raise ValueError(
                f"item {seen[0]} and item {number} configure the same blueprint ({spec.ref.describe()}) "
                "with different options; configure each blueprint once"
            )
    owners: dict[tuple[Kind, str], tuple[int, BlueprintSpec]] = {}
    for number, spec in numbered:
        for name in spec.names:
            other_number, other = owners.setdefault((spec.ref.kind, name), (number, spec))
            if other_number != number:
                raise ValueError(
                    f"{_claim(other_number, other, name)} and {_claim(number, spec, name)} would both own "
                    f"{spec.ref.kind}s named {quote(name)}: two blueprints must not share a copy name, "
                    "or they would fight over the same copies"
                )
    return tuple(spec for _, spec in numbered)
