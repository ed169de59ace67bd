"""Per-blueprint targeting, renamed copies and ConfigMap blueprints against the real API server.

The operator runs as a subprocess with the JSON form of ``SECRETS_OPERATOR_BLUEPRINTS``; every
check reads the cluster from outside (and ``check``'s JSON, and ``/metrics``), the way a user would.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import anyio
from kubernetes_asyncio import client

from tests.integration.conftest import MANAGED_BY, SOURCE, Scenario, StartProxy, b64
from tools.waiting import read_or_none, wait_for

HTPASSWD = {"auth": "alice:$apr1$abc$xyz"}
REGISTRY = {".dockerconfigjson": '{"auths": {}}'}


def blueprints(*items: Any) -> str:
    return json.dumps(list(items))


async def check_rows(scenario: Scenario, **env: str) -> list[dict[str, Any]]:
    """`check --output json` run with the scenario's settings (and ``env`` overrides)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SECRETS_OPERATOR_")}
    environ.update(scenario.env(**env))
    environ["KUBECONFIG"] = str(scenario.cluster.kubeconfig)
    done = await anyio.run_process(
        [sys.executable, "-m", "secrets_operator", "check", "--output", "json"], env=environ, check=False
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


# -- ConfigMaps


class ConfigMaps:
    def __init__(self, scenario: Scenario, name: str) -> None:
        self.scenario, self.name = scenario, name
        self.core = scenario.core

    async def create_blueprint(
        self,
        data: Mapping[str, str],
        binary: Mapping[str, str] | None = None,
        *,
        immutable: bool | None = None,
    ) -> client.V1ConfigMap:
        if self.scenario.home not in self.scenario.namespaces:
            await self.scenario.namespace("home")
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=self.name),
            data=dict(data),
            binary_data={key: b64(value) for key, value in (binary or {}).items()} or None,
            immutable=immutable,
        )
        return await self.core.create_namespaced_config_map(self.scenario.home, body)

    async def get(self, namespace: str, name: str | None = None) -> client.V1ConfigMap | None:
        return await read_or_none(self.core.read_namespaced_config_map(name or self.name, namespace))

    async def wait_copy(
        self,
        namespace: str,
        data: Mapping[str, str],
        binary: Mapping[str, str] | None = None,
        *,
        timeout: float = 20,
    ) -> client.V1ConfigMap:
        wanted_binary = {key: b64(value) for key, value in (binary or {}).items()}

        async def exact() -> client.V1ConfigMap | None:
            found = await self.get(namespace)
            if (
                found is None
                or (found.data or {}) != dict(data)
                or (found.binary_data or {}) != wanted_binary
            ):
                return None
            if (found.metadata.labels or {}).get(MANAGED_BY) != "secrets-operator":
                return None
            return found

        return await wait_for(exact, timeout=timeout, what=f"an exact ConfigMap copy in {namespace}")

    async def wait_gone(self, namespace: str, *, timeout: float = 20) -> None:
        async def gone() -> bool:
            return await self.get(namespace) is None

        await wait_for(gone, timeout=timeout, what=f"no ConfigMap copy in {namespace}")


async def test_configmap_blueprint_is_created_updated_repaired_and_never_clobbers_a_twin(
    scenario: Scenario,
) -> None:
    maps = ConfigMaps(scenario, f"{scenario.prefix}-ca")
    await maps.create_blueprint({"ca.crt": "PEM-1", "extra": "x"}, {"trust.p12": "\x00\x01"})
    early = await scenario.namespace("early")
    twin = await scenario.namespace("twin")
    await scenario.core.create_namespaced_config_map(
        twin, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=maps.name), data={"theirs": "1"})
    )
    operator = scenario.operator(
        blueprints=blueprints({"source": f"{scenario.home}/{maps.name}", "kind": "ConfigMap"})
    )
    await operator.wait_ready()
    copy = await maps.wait_copy(early, {"ca.crt": "PEM-1", "extra": "x"}, {"trust.p12": "\x00\x01"})
    assert copy.metadata.annotations == {SOURCE: f"{scenario.home}/{maps.name}"}
    late = await scenario.namespace("late")
    await maps.wait_copy(late, {"ca.crt": "PEM-1", "extra": "x"}, {"trust.p12": "\x00\x01"})

    async def both_in_sync() -> bool:
        metrics = await operator.metrics()
        return metrics.value("secrets_operator_copies", kind="ConfigMap", state="in_sync") == 2

    await wait_for(both_in_sync, timeout=20, what="both ConfigMap copies in sync")
    # each copy was right from its first write: created whole, never patched afterwards
    metrics = await operator.metrics()
    assert (
        metrics.value("secrets_operator_writes_total", kind="ConfigMap", action="create", result="success")
        == 2
    )
    assert metrics.value("secrets_operator_writes_total", kind="ConfigMap", action="update") == 0

    # the blueprint changes: a data key removed, binaryData replaced
    await scenario.core.patch_namespaced_config_map(
        maps.name,
        scenario.home,
        [
            {"op": "replace", "path": "/data", "value": {"ca.crt": "PEM-2"}},
            {"op": "replace", "path": "/binaryData", "value": {"other.bin": b64("\x02")}},
        ],
    )
    for namespace in (early, late):
        await maps.wait_copy(namespace, {"ca.crt": "PEM-2"}, {"other.bin": "\x02"})

    # drift is repaired in place, a deleted copy comes back
    uid = (await maps.get(early)).metadata.uid  # type: ignore[union-attr]
    await scenario.core.patch_namespaced_config_map(maps.name, early, {"data": {"ca.crt": "tampered"}})
    repaired = await maps.wait_copy(early, {"ca.crt": "PEM-2"}, {"other.bin": "\x02"})
    assert repaired.metadata.uid == uid
    await scenario.core.delete_namespaced_config_map(maps.name, late)
    await maps.wait_copy(late, {"ca.crt": "PEM-2"}, {"other.bin": "\x02"})

    # the twin is reported, with an Event on the ConfigMap blueprint, and never written
    async def conflict_event() -> Any:
        found = [event for event in await scenario.events() if event.reason == "Conflict"]
        return found[0] if found else None

    event = await wait_for(conflict_event, timeout=30, what="a Conflict Event on the ConfigMap blueprint")
    assert (event.regarding.kind, event.regarding.name) == ("ConfigMap", maps.name)
    theirs = await maps.get(twin)
    assert theirs is not None
    assert theirs.data == {"theirs": "1"}
    assert MANAGED_BY not in (theirs.metadata.labels or {})
    metrics = await operator.metrics()
    assert metrics.value("secrets_operator_copies", kind="ConfigMap", state="conflict") == 1
    assert metrics.value("secrets_operator_copies", kind="ConfigMap", state="in_sync") == 2
    assert metrics.value("secrets_operator_writes_total", kind="Secret") == 0
    rows = {
        row["namespace"]: row
        for row in await check_rows(scenario, blueprints=operator.env["SECRETS_OPERATOR_BLUEPRINTS"])
    }
    assert (rows[twin]["kind"], rows[twin]["name"], rows[twin]["state"]) == (
        "ConfigMap",
        maps.name,
        "conflict",
    )
    assert "a ConfigMap with this name exists" in rows[twin]["detail"]


async def test_an_immutable_configmap_blueprint_replaced_is_followed_and_restarts_write_nothing(
    scenario: Scenario,
) -> None:
    maps = ConfigMaps(scenario, f"{scenario.prefix}-frozen")
    await maps.create_blueprint({"v": "1"}, immutable=True)
    namespace = await scenario.namespace("t")
    env = {"blueprints": blueprints({"source": f"{scenario.home}/{maps.name}", "kind": "ConfigMap"})}
    operator = scenario.operator(**env)
    await operator.wait_ready()
    first = await maps.wait_copy(namespace, {"v": "1"})
    assert first.immutable is True
    # rotate the way immutable objects are rotated: delete and create again
    await scenario.core.delete_namespaced_config_map(maps.name, scenario.home)
    await maps.create_blueprint({"v": "2"}, immutable=True)
    second = await maps.wait_copy(namespace, {"v": "2"})
    assert second.immutable is True
    assert second.metadata.uid != first.metadata.uid  # replaced: an immutable copy cannot be patched
    operator.stop()
    again = scenario.operator("b", **env)
    await again.wait_ready()

    async def settled() -> bool:
        return (await again.metrics()).value(
            "secrets_operator_copies", kind="ConfigMap", state="in_sync"
        ) == 1

    await wait_for(settled, timeout=20, what="the restarted operator to see the copy in sync")
    assert (await again.metrics()).value("secrets_operator_writes_total") == 0


async def test_configmap_copies_are_pruned_like_secrets(scenario: Scenario) -> None:
    maps = ConfigMaps(scenario, f"{scenario.prefix}-cfg")
    await maps.create_blueprint({"k": "v"})
    stays = await scenario.namespace("stays", labels={"tier": "web"})
    leaves = await scenario.namespace("leaves", labels={"tier": "web"})
    spec = {"source": f"{scenario.home}/{maps.name}", "kind": "ConfigMap", "namespaceSelector": "tier=web"}
    operator = scenario.operator(blueprints=blueprints(spec), prune="true", prune_grace_seconds="1")
    await operator.wait_ready()
    await maps.wait_copy(stays, {"k": "v"})
    await maps.wait_copy(leaves, {"k": "v"})
    await scenario.core.patch_namespace(leaves, {"metadata": {"labels": {"tier": "db"}}})
    await maps.wait_gone(leaves)
    assert await maps.get(stays) is not None

    async def counted() -> bool:
        metrics = await operator.metrics()
        return metrics.value("secrets_operator_excluded_namespaces", kind="ConfigMap", rule="selector") == 1

    await wait_for(counted, timeout=20, what="the relabelled namespace counted as excluded by the selector")
    await scenario.core.delete_namespaced_config_map(maps.name, scenario.home)
    await maps.wait_gone(stays)


# -- per-blueprint targeting


async def test_each_blueprint_reaches_its_own_namespaces(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    registry = f"{scenario.prefix}-registry"
    await scenario.blueprint(REGISTRY, name=registry)
    team_web = await scenario.namespace("team-web", labels={"tier": "web"})
    team_db = await scenario.namespace("team-db", labels={"tier": "db"})
    other = await scenario.namespace("other", labels={"tier": "web"})
    skipped = await scenario.namespace("skip")
    specs = blueprints(
        {
            "source": f"{scenario.home}/{scenario.secret_name}",
            "includeNamespaces": [f"{scenario.prefix}-team-*"],
            "namespaceSelector": "tier=web",
        },
        {"source": f"{scenario.home}/{registry}", "excludeNamespaces": [f"{scenario.prefix}-skip"]},
    )
    operator = scenario.operator(blueprints=specs)
    await operator.wait_ready()
    await scenario.wait_copy(team_web, HTPASSWD)
    for namespace in (team_web, team_db, other):
        await scenario.wait_copy(namespace, REGISTRY, name=registry)

    async def settled() -> bool:
        metrics = await operator.metrics()
        return metrics.value("secrets_operator_copies", state="in_sync") == 4

    await wait_for(settled, timeout=20, what="four copies in sync")
    for namespace in (team_db, other, skipped):
        assert await scenario.copy(namespace) is None, namespace
    assert await scenario.copy(skipped, registry) is None
    rows = await check_rows(scenario, blueprints=specs)
    why = {
        (row["blueprint"].split("/")[1], row["namespace"]): (row["state"], row.get("rule")) for row in rows
    }
    assert why[(scenario.secret_name, team_db)] == ("excluded", "selector")
    assert why[(scenario.secret_name, other)] == ("excluded", "include")
    assert why[(registry, skipped)] == ("excluded", "exclude")
    assert why[(registry, other)] == ("in_sync", None)
    details = {(row["blueprint"].split("/")[1], row["namespace"]): row["detail"] for row in rows}
    assert "the blueprint's namespaceSelector" in details[(scenario.secret_name, team_db)]
    metrics = await operator.metrics()
    source = f"{scenario.home}/{scenario.secret_name}"
    assert metrics.value("secrets_operator_excluded_namespaces", blueprint=source, rule="selector") == 1
    assert metrics.value("secrets_operator_excluded_namespaces", blueprint=source, rule="include") >= 2
    assert (
        metrics.value(
            "secrets_operator_excluded_namespaces", blueprint=f"{scenario.home}/{registry}", rule="exclude"
        )
        == 1
    )

    # a namespace relabelled into the blueprint's own selector gets its copy
    await scenario.core.patch_namespace(team_db, {"metadata": {"labels": {"tier": "web"}}})
    await scenario.wait_copy(team_db, HTPASSWD)


async def test_two_blueprints_writing_the_same_object_are_refused_at_start(scenario: Scenario) -> None:
    specs = blueprints(
        {"source": f"{scenario.home}/a", "targetName": "shared"},
        {"source": f"{scenario.home}/b", "targetName": "shared"},
    )
    operator = scenario.operator(blueprints=specs)
    assert await operator.wait_exit() == 2
    lines = [line for line in operator.log.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    # The whole line: both items, each by its source, and the name they would share.
    assert lines == [
        "secrets-operator: configuration error: SECRETS_OPERATOR_BLUEPRINTS: "
        f"item 1 (Secret {scenario.home}/a) and item 2 (Secret {scenario.home}/b) would both own "
        "Secrets named 'shared': two blueprints must not share a copy name, "
        "or they would fight over the same copies"
    ], lines


# -- renamed copies


async def test_a_renamed_copy_is_owned_repaired_and_its_old_name_goes_stale_then_pruned(
    scenario: Scenario, proxies: StartProxy
) -> None:
    await scenario.blueprint(HTPASSWD)
    source = f"{scenario.home}/{scenario.secret_name}"
    old_name, new_name = f"{scenario.prefix}-basic", f"{scenario.prefix}-basic-v2"
    first = await scenario.namespace("one")
    second = await scenario.namespace("two")
    foreign = await scenario.namespace("foreign")
    # someone else's Secret under the old name: never touched, whatever happens
    await scenario.core.create_namespaced_secret(
        foreign, client.V1Secret(metadata=client.V1ObjectMeta(name=old_name), string_data={"x": "theirs"})
    )
    renamed = blueprints({"source": source, "targetName": old_name})
    operator = scenario.operator(blueprints=renamed)
    await operator.wait_ready()
    for namespace in (first, second):
        copy = await scenario.wait_copy(namespace, HTPASSWD, name=old_name)
        assert copy.metadata.annotations[SOURCE] == source
        assert await scenario.copy(namespace) is None  # nothing under the source's own name
    await scenario.core.patch_namespaced_secret(old_name, first, {"data": {"auth": b64("tampered")}})
    await scenario.wait_copy(first, HTPASSWD, name=old_name)
    await scenario.core.delete_namespaced_secret(old_name, second)
    await scenario.wait_copy(second, HTPASSWD, name=old_name)
    operator.stop()

    # renamed again: new copies appear, the old ones are reported stale and left alone
    again = blueprints({"source": source, "targetName": new_name, "previousTargetNames": [old_name]})
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, "b", blueprints=again)
    await operator.wait_ready()
    for namespace in (first, second):
        await scenario.wait_copy(namespace, HTPASSWD, name=new_name)

    async def stale_counted() -> bool:
        return (await operator.metrics()).value("secrets_operator_copies", state="stale") == 2

    await wait_for(stale_counted, timeout=20, what="two stale copies under the earlier name")
    for namespace in (first, second):
        assert await scenario.copy(namespace, old_name) is not None
    assert not [write for write in proxy.writes if write.method == "DELETE"]
    rows = await check_rows(scenario, blueprints=again)
    stale = sorted(
        (row["namespace"], row["name"], row.get("rule")) for row in rows if row["state"] == "stale"
    )
    assert stale == [(first, old_name, "renamed"), (second, old_name, "renamed")]
    operator.stop()

    # with prune, the old copies go; the foreign Secret under the old name stays as it was
    operator = scenario.operator("c", blueprints=again, prune="true")
    await operator.wait_ready()
    for namespace in (first, second):
        await scenario.wait_no_copy(namespace, name=old_name)
        assert await scenario.copy(namespace, new_name) is not None
    theirs = await scenario.core.read_namespaced_secret(old_name, foreign)
    assert theirs.data == {"x": b64("theirs")}
    assert MANAGED_BY not in (theirs.metadata.labels or {})


async def test_another_blueprints_source_is_never_written_or_deleted_whatever_marks_it_carries(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """A's copies are named like B's source object, which sits in one of A's target namespaces
    and even carries A's ownership marks (it was once A's copy): it is never patched, replaced or
    pruned, while A's copies elsewhere follow A."""
    await scenario.blueprint(HTPASSWD)
    source = f"{scenario.home}/{scenario.secret_name}"
    shared = f"{scenario.prefix}-shared"
    other_home = await scenario.namespace("other")
    elsewhere = await scenario.namespace("elsewhere")
    theirs = await scenario.core.create_namespaced_secret(
        other_home,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=shared, labels={MANAGED_BY: "secrets-operator"}, annotations={SOURCE: source}
            ),
            string_data={"token": "theirs"},
        ),
    )
    specs = blueprints(
        {"source": source, "targetName": shared},
        {"source": f"{other_home}/{shared}", "targetName": f"{scenario.prefix}-b"},
    )
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, blueprints=specs, prune="true", prune_grace_seconds="0")
    await operator.wait_ready()
    await scenario.wait_copy(elsewhere, HTPASSWD, name=shared)
    await scenario.wait_copy(elsewhere, {"token": "theirs"}, name=f"{scenario.prefix}-b")  # B works too
    rows = await check_rows(scenario, blueprints=specs, prune="true")
    row = next(r for r in rows if r["blueprint"] == source and r["namespace"] == other_home)
    assert (row["state"], row.get("rule")) == ("excluded", "source"), row
    # A disappears: with PRUNE and no grace, its copies go, B's source stays
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)
    await scenario.wait_no_copy(elsewhere, name=shared)
    kept = await scenario.core.read_namespaced_secret(shared, other_home)
    assert kept.metadata.uid == theirs.metadata.uid
    assert kept.metadata.resource_version == theirs.metadata.resource_version
    touched = [(w.method, w.path) for w in proxy.writes if f"/namespaces/{other_home}/secrets" in w.path]
    assert touched == [], touched  # nothing written in B's home: not A's copy, not B's own
