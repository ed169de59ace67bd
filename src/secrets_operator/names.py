"""Kubernetes' rules for object and namespace names, written down once.

The settings check the Lease's name and namespace, the blueprints' references and copy names;
the label-selector parser checks a label key's prefix. All of them are DNS labels or DNS
subdomains as the API server defines them, so the two patterns live here and nowhere else.
A check raises :class:`ValueError` with a message fit to show the user as is: the name is
quoted on one line and cut short, since it comes from an environment variable that may be huge.
"""

from __future__ import annotations

import re

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

#: How much of a value an error message shows: the variable it comes from may be huge.
SHOWN = 120


def cut(text: str, limit: int = SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(text: str) -> str:
    """``repr`` (one line: newlines and other separators are escaped), cut short."""
    return cut(repr(text))


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is a lowercase RFC 1123 label of at most 63 characters (a namespace's name)."""
    return len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None


def is_dns_subdomain(name: str) -> bool:
    """Whether ``name`` is a lowercase RFC 1123 subdomain of at most 253 characters."""
    return len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None


def check_namespace_name(name: str, what: str) -> None:
    if not is_dns_label(name):
        raise ValueError(f"{what} {quote(name)} is not a valid namespace name (lowercase DNS label)")


def check_object_name(name: str, kind: str) -> None:
    """ValueError unless ``name`` may name an object of ``kind``, which the message names."""
    if not is_dns_subdomain(name):
        raise ValueError(f"{quote(name)} is not a valid {kind} name (lowercase DNS subdomain)")
