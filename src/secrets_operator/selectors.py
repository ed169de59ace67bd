"""Kubernetes label selectors and name globs, parsed once at start-up and matched in memory.

``SECRETS_OPERATOR_NAMESPACE_SELECTOR`` takes the same syntax as ``kubectl -l``
(``env=prod,tier in (web,api),!legacy``). The operator matches it against its namespace cache
rather than sending it to the API server, so that a namespace relabelled out of the selector is
still known (and its copy can be pruned) instead of silently vanishing from a filtered watch.

Parsing errors raise :class:`ValueError` with a message fit to show the user as is.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Literal

from secrets_operator.names import is_dns_subdomain

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_NAME_RE = re.compile(rf"^{_NAME}$")
_SPECIALS = set(",()=!<>") | set(" \t\r\n")


def validate_label_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        raise ValueError(f"invalid label key {key!r}: prefix must be a DNS subdomain")
    if not name or len(name) > 63 or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid label key {key!r}: name must be 1-63 characters, alphanumeric at both ends, "
            "with '-', '_' or '.' in between"
        )


def validate_label_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME_RE.fullmatch(value)):
        raise ValueError(
            f"invalid label value {value!r}: must be empty or 1-63 characters, alphanumeric at both "
            "ends, with '-', '_' or '.' in between"
        )


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One clause of a selector, such as ``tier in (web,api)``."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present
            case "gt" | "lt":
                if value is None:
                    return False
                try:
                    number = int(value)
                except ValueError:
                    return False
                (bound,) = self.values
                return number > int(bound) if self.operator == "gt" else number < int(bound)


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """All requirements must hold; an empty selector matches every set of labels."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return self.text


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif char in ",()=!<>":
            tokens.append(char)
            i += 1
        else:
            start = i
            while i < len(text) and text[i] not in _SPECIALS:
                i += 1
            tokens.append(text[start:i])
    return tokens


def parse_label_selector(text: str) -> LabelSelector:
    """Parse kubectl's label-selector syntax; raise ValueError naming what is wrong."""
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(what: str) -> str:
        nonlocal pos
        token = peek()
        if token is None:
            raise ValueError(f"label selector {text!r}: expected {what} at the end")
        pos += 1
        return token

    def word(what: str) -> str:
        token = take(what)
        if token in {",", "(", ")", "=", "==", "!=", "!", "<", ">"}:
            raise ValueError(f"label selector {text!r}: expected {what}, found {token!r}")
        return token

    while peek() is not None:
        if peek() == "!":
            take("!")
            key = word("a label key after '!'")
            validate_label_key(key)
            requirements.append(Requirement(key, "!exists"))
        else:
            key = word("a label key")
            validate_label_key(key)
            token = peek()
            if token is None or token == ",":
                requirements.append(Requirement(key, "exists"))
            elif token in {"=", "==", "!="}:
                take(token)
                following = peek()
                value = "" if following is None or following == "," else word("a label value")
                validate_label_value(value)
                requirements.append(Requirement(key, "!=" if token == "!=" else "=", frozenset({value})))
            elif token in {"in", "notin"}:
                take(token)
                if take("'('") != "(":
                    raise ValueError(f"label selector {text!r}: expected '(' after {token!r}")
                values: set[str] = set()
                while True:
                    value = "" if peek() in {",", ")"} else word("a label value")
                    validate_label_value(value)
                    values.add(value)
                    separator = take("',' or ')'")
                    if separator == ")":
                        break
                    if separator != ",":
                        raise ValueError(f"label selector {text!r}: expected ',' or ')', found {separator!r}")
                requirements.append(Requirement(key, "in" if token == "in" else "notin", frozenset(values)))
            elif token in {"<", ">"}:
                take(token)
                bound = word("an integer")
                if not re.fullmatch(r"-?\d+", bound):
                    raise ValueError(f"label selector {text!r}: {token!r} needs an integer, found {bound!r}")
                requirements.append(Requirement(key, "gt" if token == ">" else "lt", frozenset({bound})))
            else:
                raise ValueError(f"label selector {text!r}: unexpected {token!r} after key {key!r}")
        following = peek()
        if following is not None:
            if following != ",":
                raise ValueError(
                    f"label selector {text!r}: expected ',' between requirements, found {following!r}"
                )
            take(",")
            if peek() is None:
                raise ValueError(f"label selector {text!r}: trailing ','")
    return LabelSelector(tuple(requirements), text.strip())


def matches_any(name: str, globs: Iterable[str]) -> bool:
    """Whether ``name`` as a whole matches one of the shell-style globs (case-sensitive)."""
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)
