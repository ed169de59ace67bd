"""BLUEPRINTS read straight from its text, without the environment or the settings around it.

Most of the checker's behaviour is pinned through the variable in test_settings.py, where the
message must also name the variable; these are the cases that need only the parser: a JSON object
with a key given twice (which json.loads would let the last one win), the ConfigMap name the
cluster publishes into every namespace, and a copy name that merely repeats the default.
"""

from __future__ import annotations

import pytest

from secrets_operator.blueprint_config import parse_blueprints
from secrets_operator.model import BlueprintRef
from secrets_operator.planning import BlueprintSpec


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ('[{"source": "a/x", "source": "b/y"}]', "key 'source' appears twice in one object"),
        (
            '[{"source": "a/x", "kind": "ConfigMap", "targetName": "kube-root-ca.crt"}]',
            "published into every",
        ),
        ('[{"source": "a/kube-root-ca.crt", "kind": "ConfigMap"}]', "published into every"),
        (
            '[{"source": "a/x", "kind": "ConfigMap", "previousTargetNames": ["kube-root-ca.crt"]}]',
            "published",
        ),
    ],
)
def test_repeated_keys_and_the_clusters_own_configmap_name_are_refused(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_blueprints(value)


def test_a_target_name_equal_to_the_sources_name_is_the_default_not_another_option() -> None:
    parsed = parse_blueprints('[{"source": "auth/htpasswd", "targetName": "htpasswd"}, "auth/htpasswd"]')
    assert parsed == (BlueprintSpec(BlueprintRef("auth", "htpasswd")),)
    # a Secret may be named like the ConfigMap Kubernetes publishes
    assert parse_blueprints("a/kube-root-ca.crt")[0].target == "kube-root-ca.crt"
