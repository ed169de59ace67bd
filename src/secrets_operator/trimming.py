"""What of a watched object the caches keep: exactly what planning can compare, nothing more.

Informers hand every object they receive to one of these functions and cache only the result.
A namespace keeps its name, the labels some selector can look at and whether it is going away;
a copy keeps its marks and a hash of its data (never the data); a blueprint keeps its data, the
one thing a copy is made of. Most namespaces and copies then share interned strings, key sets and
one empty mapping, so memory grows by little more than a small object per namespace and per copy.

Deliberately not here: which objects to watch (``caches``) and what to do with them (``planning``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from secrets_operator.model import (
    LAST_APPLIED_ANNOTATION,
    Blueprint,
    BlueprintRef,
    CopyInfo,
    Kind,
    NamespaceInfo,
)
from secrets_operator.planning import Policy, object_hash, relevant_copy_metadata, relevant_namespace_labels

JSON = dict[str, Any]

_intern = sys.intern
_NOTHING: Mapping[str, str] = {}  # shared by every object without relevant metadata; never mutated
# Shared too: CPython makes a new 216-byte set for every ``frozenset()``, one per Secret copy.
_NO_KEYS: frozenset[str] = frozenset()
_MAX_SHARED = 4096


def _strings(mapping: Mapping[str, Any] | None, *, drop: Iterable[str] = ()) -> dict[str, str]:
    if not mapping:
        return {}
    dropped = set(drop)
    return {_intern(k): _intern(str(v)) for k, v in mapping.items() if k not in dropped}


class Trimmer:
    """Reduces raw API objects to what planning can ever compare, for one (static) policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._key_sets: dict[frozenset[str], frozenset[str]] = {}
        self._mappings: dict[frozenset[tuple[str, str]], Mapping[str, str]] = {}

    def _shared(self, mapping: dict[str, str]) -> Mapping[str, str]:
        """One instance per distinct content: the copies of a blueprint carry the same marks.

        Shared mappings are only ever read. Distinct contents are few (a handful per blueprint);
        the table is emptied if it ever grows past a bound, which costs sharing, not correctness.
        """
        if not mapping:
            return _NOTHING
        if len(self._mappings) >= _MAX_SHARED:
            self._mappings.clear()
            self._key_sets.clear()
        return self._mappings.setdefault(frozenset(mapping.items()), mapping)

    def _keys(self, mapping: Mapping[str, Any]) -> frozenset[str]:
        keys = frozenset(_intern(key) for key in mapping)
        return self._key_sets.setdefault(keys, keys)

    def namespace(self, obj: JSON) -> NamespaceInfo:
        metadata = obj["metadata"]
        terminating = obj.get("status", {}).get("phase") == "Terminating" or bool(
            metadata.get("deletionTimestamp")
        )
        labels = relevant_namespace_labels(metadata.get("labels") or {}, self.policy)
        return NamespaceInfo(
            name=_intern(metadata["name"]),
            labels=self._shared(_strings(labels)),
            terminating=terminating,
        )

    def copy(self, kind: Kind, obj: JSON) -> CopyInfo:
        """Everything planning compares about a Secret or ConfigMap, and none of its data."""
        metadata = obj["metadata"]
        labels, annotations = relevant_copy_metadata(
            metadata.get("labels") or {}, metadata.get("annotations") or {}, self.policy
        )
        secret = kind is Kind.SECRET
        return CopyInfo(
            namespace=_intern(metadata["namespace"]),
            name=_intern(metadata["name"]),
            resource_version=metadata.get("resourceVersion", ""),
            type=_intern(obj.get("type") or "Opaque") if secret else "",
            immutable=bool(obj.get("immutable")),
            labels=self._shared(_strings(labels)),
            annotations=self._shared(_strings(annotations)),
            data_hash=_intern(object_hash(kind, obj)),
            data_keys=self._keys(obj.get("data") or {}),
            binary_keys=_NO_KEYS if secret else self._keys(obj.get("binaryData") or {}),
        )


def trim_blueprint(ref: BlueprintRef, obj: JSON) -> Blueprint:
    """A blueprint as planning needs it: its data, type, immutability and metadata to copy."""
    metadata = obj["metadata"]
    secret = ref.kind is Kind.SECRET
    return Blueprint(
        ref=ref,
        type=(obj.get("type") or "Opaque") if secret else "",
        data=dict(obj.get("data") or {}),
        binary_data={} if secret else dict(obj.get("binaryData") or {}),
        immutable=bool(obj.get("immutable")),
        labels=_strings(metadata.get("labels")),
        annotations=_strings(metadata.get("annotations"), drop=[LAST_APPLIED_ANNOTATION]),
        hash=_intern(object_hash(ref.kind, obj)),
        resource_version=metadata.get("resourceVersion", ""),
        uid=metadata.get("uid", ""),
    )
