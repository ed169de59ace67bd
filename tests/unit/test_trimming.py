"""What the caches keep per copy: the copies of one blueprint share every part they have in
common (marks, key sets, hash, type), so memory grows by one small object per copy. A part made
anew per copy (an empty ``frozenset()`` is a new 216-byte object each time) costs megabytes at
tens of thousands of copies."""

from __future__ import annotations

import base64

import pytest

from secrets_operator.model import Kind
from secrets_operator.planning import Policy
from secrets_operator.trimming import Trimmer


def raw(kind: Kind, namespace: str, version: int) -> dict[str, object]:
    value = base64.b64encode(b"user:hash").decode()
    return {
        "metadata": {
            "name": "auth",
            "namespace": namespace,
            "resourceVersion": str(version),
            "uid": f"uid-{version}",
            "labels": {"app.kubernetes.io/managed-by": "secrets-operator"},
            "annotations": {"secrets-operator.io/blueprint": "home/auth"},
        },
        **({"type": "Opaque", "data": {"auth": value}} if kind is Kind.SECRET else {"data": {"auth": "x"}}),
    }


@pytest.mark.parametrize("kind", list(Kind))
def test_copies_of_one_blueprint_share_everything_but_their_namespace_and_version(kind: Kind) -> None:
    trimmer = Trimmer(Policy())
    first, second = (trimmer.copy(kind, raw(kind, f"team-{index}", index)) for index in (1, 2))
    for field in ("labels", "annotations", "data_keys", "binary_keys", "data_hash", "type"):
        assert getattr(first, field) is getattr(second, field), field
    assert (first.namespace, first.resource_version) != (second.namespace, second.resource_version)
