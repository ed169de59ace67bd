"""What a platform team sees: copies appear, follow their blueprint, and come back when damaged.

Every test runs the operator as a subprocess against the real control plane and checks the
cluster's state from outside, the way a user would.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from kubernetes_asyncio import client

from tests.integration.conftest import LEGACY_HASH, MANAGED_BY, SOURCE, Scenario, StartProxy, b64
from tests.support import data_digests, log_entries, server_minor
from tools.waiting import wait_for

HTPASSWD = {"auth": "alice:$apr1$abc$xyz"}


async def test_copy_appears_in_a_namespace_created_after_start(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD, labels={"team": "platform"})
    operator = scenario.operator(copy_metadata="team")
    await operator.wait_ready()
    started = time.monotonic()
    namespace = await scenario.namespace("new")
    copy = await scenario.wait_copy(namespace, HTPASSWD)
    print(f"new namespace -> copy observed by polling: {(time.monotonic() - started) * 1000:.0f} ms")
    assert copy.type == "Opaque"
    assert copy.metadata.labels[MANAGED_BY] == "secrets-operator"
    assert copy.metadata.labels["team"] == "platform"
    assert copy.metadata.annotations[SOURCE] == f"{scenario.home}/{scenario.secret_name}"
    assert set(copy.metadata.annotations) == {SOURCE, "secrets-operator.io/copied-labels"}


async def test_no_object_carries_a_digest_of_the_blueprint_data(scenario: Scenario) -> None:
    """Whoever may read metadata or Events but not data must get nothing to test guesses against."""
    weak = {"auth": "alice:$apr1$weak$password1", "realm": "staff"}
    blueprint = await scenario.blueprint(weak, labels={"team": "platform"}, annotations={"note": "x"})
    copies = [await scenario.namespace(f"t{i}") for i in range(2)]
    twin = await scenario.namespace("twin")  # a conflict, so that an Event is recorded too
    await scenario.core.create_namespaced_secret(
        twin, client.V1Secret(metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"x": "y"})
    )
    operator = scenario.operator(copy_metadata="*")
    await operator.wait_ready()
    for namespace in copies:
        await scenario.wait_copy(namespace, weak)

    async def conflict_event() -> bool:
        return any(event.reason == "Conflict" for event in await scenario.events())

    await wait_for(conflict_event, timeout=20, what="a Conflict event on the blueprint")
    listed = await scenario.core.list_secret_for_all_namespaces(
        field_selector=f"metadata.name={scenario.secret_name}"
    )
    seen = {f"Secret {item.metadata.namespace}": item.metadata for item in listed.items}
    assert {*copies, twin, scenario.home} <= {item.metadata.namespace for item in listed.items}
    for namespace in [scenario.home, *copies, twin]:
        for event in await scenario.events(namespace):
            seen[f"Event {namespace}/{event.metadata.name}"] = event  # the whole Event, note included
    digests = data_digests("Opaque", dict(blueprint.data))
    for where, obj in seen.items():
        text = json.dumps(scenario.api.sanitize_for_serialization(obj))
        for what, digest in digests.items():
            assert digest not in text, f"{what} found in {where}: {text}"
        assert LEGACY_HASH not in text, where


async def test_copy_written_by_an_earlier_version_loses_its_data_digest_in_one_patch(
    scenario: Scenario, proxies: StartProxy
) -> None:
    blueprint = await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    source = f"{scenario.home}/{scenario.secret_name}"
    old_digest = data_digests("Opaque", dict(blueprint.data))["sha256 of type+data (content_hash)"]
    written = await scenario.core.create_namespaced_secret(
        namespace,
        client.V1Secret(  # exactly what earlier versions wrote
            metadata=client.V1ObjectMeta(
                name=scenario.secret_name,
                labels={MANAGED_BY: "secrets-operator"},
                annotations={SOURCE: source, LEGACY_HASH: old_digest},
            ),
            data=dict(blueprint.data),
        ),
    )
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy)
    await operator.wait_ready()

    async def digest_removed() -> bool:
        copy = await scenario.copy(namespace)
        return copy is not None and LEGACY_HASH not in (copy.metadata.annotations or {})

    await wait_for(digest_removed, timeout=20, what="the old digest annotation to leave the copy")

    async def settled() -> bool:  # the write is counted once its response is back (and logged)
        metrics = await operator.metrics()
        return (
            metrics.value("secrets_operator_copies", state="in_sync") == 1
            and metrics.value("secrets_operator_writes_total") >= 1
        )

    await wait_for(settled, timeout=20, what="the patched copy to be seen in sync")
    copy = await scenario.copy(namespace)
    assert copy is not None
    assert copy.metadata.uid == written.metadata.uid  # patched in place, not replaced
    assert copy.data == blueprint.data
    assert copy.metadata.annotations == {SOURCE: source}
    sent = [(write.method, write.path) for write in proxy.writes if "/secrets" in write.path]
    assert sent == [("PATCH", f"/api/v1/namespaces/{namespace}/secrets/{scenario.secret_name}")], sent


async def test_label_removed_from_the_blueprint_is_removed_from_copies(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD, labels={"team": "platform", "cost-center": "42"})
    namespace = await scenario.namespace("t")
    operator = scenario.operator(copy_metadata="team,cost-center")
    await operator.wait_ready()
    copy = await scenario.wait_copy(namespace, HTPASSWD)
    assert copy.metadata.labels["cost-center"] == "42"
    await scenario.core.patch_namespaced_secret(
        scenario.secret_name, scenario.home, {"metadata": {"labels": {"cost-center": None}}}
    )

    async def label_gone() -> bool:
        current = await scenario.copy(namespace)
        labels = (current.metadata.labels or {}) if current else {}
        return "cost-center" not in labels and labels.get("team") == "platform"

    await wait_for(label_gone, timeout=20, what="the dropped label to leave the copy")


async def test_blueprint_update_reaches_every_existing_copy(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(5)]
    operator = scenario.operator()
    await operator.wait_ready()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)
    rotated = {"auth": "alice:$apr1$new$rotated", "extra": "second key"}
    await scenario.update_blueprint(rotated)
    for namespace in targets:
        await scenario.wait_copy(namespace, rotated)


async def test_removed_blueprint_key_is_removed_from_copies(scenario: Scenario) -> None:
    await scenario.blueprint({"a": "1", "b": "2"})
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()
    await scenario.wait_copy(namespace, {"a": "1", "b": "2"})
    await scenario.update_blueprint({"a": "1"})
    await scenario.wait_copy(namespace, {"a": "1"})


async def test_edited_copy_is_restored(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()
    await scenario.wait_copy(namespace, HTPASSWD)
    await scenario.core.patch_namespaced_secret(
        scenario.secret_name, namespace, {"data": {"auth": b64("mallory:tampered"), "injected": b64("x")}}
    )
    await scenario.wait_copy(namespace, HTPASSWD)


async def test_deleted_copy_comes_back(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()
    await scenario.wait_copy(namespace, HTPASSWD)
    await scenario.core.delete_namespaced_secret(scenario.secret_name, namespace)
    await scenario.wait_copy(namespace, HTPASSWD)


async def test_unmanaged_twin_is_left_alone_and_reported_with_skip(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    other = await scenario.namespace("u")
    await scenario.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"mine": "keep me"}
        ),
    )
    operator = scenario.operator()
    await operator.wait_ready()
    await scenario.wait_copy(other, HTPASSWD)  # the operator has done its first pass

    async def conflict_event() -> bool:
        return any(
            event.reason == "Conflict" and namespace in (event.note or "")
            for event in await scenario.events()
        )

    await wait_for(conflict_event, timeout=20, what="a Conflict event on the blueprint")
    twin = await scenario.copy(namespace)
    assert twin is not None
    assert twin.data == {"mine": b64("keep me")}
    assert MANAGED_BY not in (twin.metadata.labels or {})
    assert (await operator.metrics()).value("secrets_operator_copies", state="conflict") == 1


async def test_conflicts_in_thirty_namespaces_make_one_event_not_thirty(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    names = [await scenario.namespace(f"c{i}") for i in range(30)]
    for name in names:
        await scenario.core.create_namespaced_secret(
            name,
            client.V1Secret(metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"a": "b"}),
        )
    operator = scenario.operator()
    await operator.wait_ready()

    async def summary() -> list[client.EventsV1Event]:
        return [event for event in await scenario.events() if event.reason == "Conflict"]

    found = await wait_for(summary, timeout=30, what="the Conflict Event")
    assert (await operator.metrics()).value("secrets_operator_copies", state="conflict") == 30
    await anyio.sleep(12)  # one more aggregation window: nothing else is coming
    events = await summary()
    sent = (await operator.metrics()).value("secrets_operator_events_total", result="sent")
    print(
        f"30 conflicting namespaces: {len(events)} Conflict Event(s), {sent:.0f} Event POST(s):",
        found[0].note,
    )
    assert len(events) == 1, [event.note for event in events]
    assert sent == 1
    assert events[0].note.startswith("30 namespaces (e.g. "), events[0].note


async def test_unmanaged_twin_is_adopted_with_adopt(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    await scenario.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=scenario.secret_name, labels={"owner": "someone"}),
            string_data={"mine": "replace me"},
        ),
    )
    operator = scenario.operator(conflict_policy="adopt")
    await operator.wait_ready()
    adopted = await scenario.wait_copy(namespace, HTPASSWD)
    assert adopted.metadata.labels["owner"] == "someone"  # others' labels survive adoption


async def test_unmanaged_twin_of_another_type_or_immutable_is_never_deleted_with_adopt(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """Adopting those would mean a delete and a create: they stay conflicts, exactly as they were."""
    await scenario.blueprint(HTPASSWD)
    typed = await scenario.namespace("typed")
    frozen = await scenario.namespace("frozen")
    other = await scenario.namespace("u")
    twins = {
        typed: client.V1Secret(
            metadata=client.V1ObjectMeta(name=scenario.secret_name),
            type="kubernetes.io/basic-auth",
            string_data={"username": "them", "password": "theirs"},
        ),
        frozen: client.V1Secret(
            metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"mine": "x"}, immutable=True
        ),
    }
    before = {
        namespace: await scenario.core.create_namespaced_secret(namespace, twin)
        for namespace, twin in twins.items()
    }
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, conflict_policy="adopt", resync_seconds="1")
    await operator.wait_ready()
    await scenario.wait_copy(other, HTPASSWD)  # the first pass is under way
    relisted = operator.log.count('"periodic resync"')

    async def resynced() -> bool:  # a wrongful delete could come with any later pass
        return operator.log.count('"periodic resync"') >= relisted + 3

    await wait_for(resynced, timeout=20, what="three periodic resyncs")
    writes = [(w.method, w.path, w.status) for w in proxy.writes if typed in w.path or frozen in w.path]
    assert not [write for write in writes if "/secrets" in write[1]], f"the twins were written: {writes}"
    for namespace, was in before.items():
        now = await scenario.copy(namespace)
        assert now is not None, f"the twin in {namespace} was deleted"
        assert (now.metadata.uid, now.metadata.resource_version) == (
            was.metadata.uid,
            was.metadata.resource_version,
        )
    assert (await operator.metrics()).value("secrets_operator_copies", state="conflict") == 2

    # One Event on the blueprint names both twins (Events are aggregated per blueprint and reason);
    # `check` gives each twin its own reason.
    async def reported() -> str | None:
        notes = [event.note or "" for event in await scenario.events() if event.reason == "Conflict"]
        found = [note for note in notes if "not adopted" in note and typed in note and frozen in note]
        return found[0] if found else None

    await wait_for(reported, timeout=30, what="a Conflict event naming both twins")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETS_OPERATOR_")}
    env.update(scenario.env(conflict_policy="adopt"))
    env["KUBECONFIG"] = str(scenario.cluster.kubeconfig)
    check = await anyio.run_process(
        [sys.executable, "-m", "secrets_operator", "check", "--problems-only", "--output", "json"],
        env=env,
        check=False,
    )
    rows = {row["namespace"]: row for row in json.loads(check.stdout)}
    assert rows[typed]["state"] == "conflict", rows
    assert "its type is 'kubernetes.io/basic-auth'" in rows[typed]["detail"], rows[typed]
    assert rows[frozen]["state"] == "conflict", rows
    assert "immutable" in rows[frozen]["detail"], rows[frozen]


async def test_excluded_unselected_and_opted_out_namespaces_get_nothing(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    selected = await scenario.namespace("sel", labels={"tier": "web"})
    unselected = await scenario.namespace("unsel", labels={"tier": "db"})
    opted_out = await scenario.namespace("out", labels={"tier": "web", "secrets-operator.io/exclude": "true"})
    excluded = await scenario.namespace("skipme", labels={"tier": "web"})
    operator = scenario.operator(namespace_selector="tier=web", exclude_namespaces=f"{scenario.prefix}-skip*")
    await operator.wait_ready()
    await scenario.wait_copy(selected, HTPASSWD)

    async def planned() -> bool:
        # Every namespace was queued when the operator started leading; with nothing left in
        # the queue and nothing in a worker's hands, every one of them has been planned (and the
        # unselected ones wrote nothing).
        metrics = await operator.metrics()
        return (
            metrics.only("secrets_operator_queue_depth") == 0
            and metrics.only("secrets_operator_queue_in_progress") == 0
            and metrics.value("secrets_operator_copies", state="in_sync") == 1
        )

    await wait_for(planned, timeout=20, what="all namespaces to be planned")
    for namespace in (unselected, opted_out, excluded, scenario.home):
        copy = await scenario.copy(namespace)
        if namespace == scenario.home:
            assert copy is not None  # the blueprint itself, untouched
            assert MANAGED_BY not in (copy.metadata.labels or {})
        else:
            assert copy is None, namespace


async def test_relabelled_namespace_gains_and_with_prune_loses_its_copy(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t", labels={"tier": "db"})
    operator = scenario.operator(namespace_selector="tier=web", prune="true")
    await operator.wait_ready()
    await scenario.core.patch_namespace(namespace, {"metadata": {"labels": {"tier": "web"}}})
    await scenario.wait_copy(namespace, HTPASSWD)
    await scenario.core.patch_namespace(namespace, {"metadata": {"labels": {"tier": "db"}}})
    await scenario.wait_no_copy(namespace)


async def test_copies_stay_when_the_namespace_leaves_the_selector_without_prune(
    scenario: Scenario, proxies: StartProxy
) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t", labels={"tier": "web"})
    proxy = await proxies("p")  # its log shows every write the operator sends
    resync = 1.0
    operator = scenario.operator_via(proxy, namespace_selector="tier=web", resync_seconds=str(resync))
    await operator.wait_ready()
    await scenario.wait_copy(namespace, HTPASSWD)
    await scenario.core.patch_namespace(namespace, {"metadata": {"labels": {"tier": "db"}}})
    relabelled = operator.log.count('"periodic resync"')

    async def excluded() -> bool:
        # Its only target has left the selector: nothing is in sync any more, nothing to write.
        return (await operator.metrics()).value("secrets_operator_copies", state="in_sync") == 0

    await wait_for(excluded, timeout=20, what="the namespace to be seen as excluded")

    # A wrongful DELETE could come with any later pass over the namespace: watch three resyncs.
    async def resynced() -> bool:
        return operator.log.count('"periodic resync"') >= relabelled + 3

    await wait_for(resynced, timeout=20 * resync, what="three periodic resyncs after the relabelling")
    deletes = [(write.path, write.status) for write in proxy.writes if write.method == "DELETE"]
    assert not deletes, f"the operator sent DELETEs without PRUNE: {deletes}"
    assert await scenario.copy(namespace) is not None


async def test_copy_left_in_a_namespace_that_stopped_being_a_target_is_reported_stale(
    scenario: Scenario,
) -> None:

    import anyio

    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t", labels={"tier": "web"})
    never = await scenario.namespace("never", labels={"tier": "db"})
    operator = scenario.operator(namespace_selector="tier=web")
    await operator.wait_ready()
    await scenario.wait_copy(namespace, HTPASSWD)
    await scenario.core.patch_namespace(namespace, {"metadata": {"labels": {"tier": "db"}}})

    async def stale() -> bool:
        metrics = await operator.metrics()
        return (
            metrics.value("secrets_operator_copies", state="stale") == 1
            and metrics.value("secrets_operator_copies", state="in_sync") == 0
        )

    await wait_for(stale, timeout=20, what="the copies gauge to count the left copy as stale")
    assert await scenario.copy(namespace) is not None  # PRUNE is off: kept

    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETS_OPERATOR_")}
    env.update(scenario.env(namespace_selector="tier=web"))
    env["KUBECONFIG"] = str(scenario.cluster.kubeconfig)
    check = await anyio.run_process(
        [sys.executable, "-m", "secrets_operator", "check", "--problems-only", "--output", "json"],
        env=env,
        check=False,
    )
    assert check.returncode == 1, check.stdout.decode()
    rows = {row["namespace"]: row for row in json.loads(check.stdout)}
    assert rows[namespace]["state"] == "stale", rows
    assert "NAMESPACE_SELECTOR" in rows[namespace]["detail"]
    assert never not in rows  # no copy there: excluded, not a problem


async def test_missing_blueprint_is_reported_then_copied_once_created(scenario: Scenario) -> None:
    await scenario.namespace("home")
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()

    async def reported() -> bool:
        return (await operator.metrics()).value("secrets_operator_copies", state="blueprint_missing") >= 1

    await wait_for(reported, timeout=20, what="the missing blueprint to be reported")
    waiting = log_entries(operator.log, "blueprint does not exist yet; waiting for it")
    assert [(e["level"], e["blueprint"], e["kind"]) for e in waiting] == [
        ("WARNING", f"{scenario.home}/{scenario.secret_name}", "Secret")
    ], waiting
    await scenario.blueprint(HTPASSWD)
    await scenario.wait_copy(namespace, HTPASSWD)


async def test_deleted_blueprint_prunes_copies_only_with_prune(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    operator = scenario.operator(prune="true", prune_grace_seconds="0")
    await operator.wait_ready()
    await scenario.wait_copy(namespace, HTPASSWD)
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)
    await scenario.wait_no_copy(namespace)


async def test_blueprint_deleted_and_created_again_keeps_its_copies_with_prune(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """Rotating an immutable blueprint, `kubectl replace --force`, Argo CD `Replace=true`: a delete,
    a gap, a create. With PRUNE on, no copy may be deleted for that, during the grace or after."""
    grace = 4.0
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(3)]
    proxy = await proxies("p")  # its log shows every write the operator sends
    operator = scenario.operator_via(proxy, prune="true", prune_grace_seconds=str(grace), resync_seconds="1")
    await operator.wait_ready()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)

    def deletes() -> list[tuple[str, int]]:
        return [(write.path, write.status) for write in proxy.writes if write.method == "DELETE"]

    deleted = time.monotonic()
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)
    await anyio.sleep(1.0)  # the gap: Argo CD, for one, waits for the deletion before creating
    rotated = {"auth": "alice:$apr1$new$rotated"}
    await scenario.blueprint(rotated)
    for namespace in targets:
        await scenario.wait_copy(namespace, rotated)
    assert not deletes(), f"copies were deleted for a blueprint deleted and created again: {deletes()}"

    # A wrongful DELETE could come with any pass once the grace is over: watch two resyncs.
    await anyio.sleep(max(0.0, deleted + grace - time.monotonic()))
    resyncs = operator.log.count('"periodic resync"')

    async def resynced() -> bool:
        return operator.log.count('"periodic resync"') >= resyncs + 2

    await wait_for(resynced, timeout=20, what="two periodic resyncs after the grace")
    assert not deletes(), f"copies were deleted after the grace of a blueprint that came back: {deletes()}"


async def test_copies_of_a_blueprint_left_deleted_are_pruned_when_the_grace_is_over(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """Not before, and without waiting for a resync (RESYNC_SECONDS is 600 here)."""
    grace = 4.0
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(3)]
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, prune="true", prune_grace_seconds=str(grace))
    await operator.wait_ready()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)
    deleted = time.monotonic()
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)

    async def waiting() -> bool:
        metrics = await operator.metrics()
        return metrics.value("secrets_operator_copies", state="blueprint_missing") == len(targets)

    await wait_for(waiting, timeout=grace, what="the copies to wait out the grace as blueprint_missing")
    pruning = log_entries(
        operator.log, "blueprint deleted; its copies will be pruned in 4 s unless it returns"
    )
    assert [(e["level"], e["blueprint"], e["kind"]) for e in pruning] == [
        ("WARNING", f"{scenario.home}/{scenario.secret_name}", "Secret")
    ], pruning
    for namespace in targets:
        await scenario.wait_no_copy(namespace, timeout=grace + 10)
    assert time.monotonic() - deleted >= grace
    assert [write.method for write in proxy.writes if "/secrets" in write.path].count("DELETE") == len(
        targets
    )
    assert (await operator.metrics()).value("secrets_operator_writes_total", action="delete") == len(targets)


async def test_a_blueprint_back_while_its_watch_stalls_is_read_again_before_any_prune(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """The grace counts how long the blueprint is *known* missing, not how long the cache shows it
    missing: with the blueprint's watch stalled (a half-open stream, a lagging watch cache, a
    reconnect backoff) the cache still shows it deleted at the end of the grace, after it came
    back. A consistent read then finds it, and the copies follow it instead of being deleted."""
    grace = 4.0
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(2)]
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, prune="true", prune_grace_seconds=str(grace))
    await operator.wait_ready()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)
    home = f"/api/v1/namespaces/{scenario.home}/secrets"

    async def watched() -> bool:
        return proxy.open_watches(home) == 1

    await wait_for(watched, timeout=10, what="the blueprint's watch through the proxy")
    deleted = time.monotonic()
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)

    async def seen_missing() -> bool:
        metrics = await operator.metrics()
        return metrics.value("secrets_operator_copies", state="blueprint_missing") == len(targets)

    await wait_for(seen_missing, timeout=grace, what="the operator to see the blueprint deleted")
    proxy.hold_path, proxy.hold_watches = home, True  # the watch stalls: nothing more reaches the cache
    assert proxy.cut_watches(home) == 1
    await anyio.sleep(0.5)
    rotated = {"auth": "alice:$apr1$new$rotated"}
    await scenario.blueprint(rotated)
    back = len(proxy.seen)  # what the operator asks from here on can only learn the blueprint by a read
    await anyio.sleep(max(0.0, deleted + grace + 2.0 - time.monotonic()))
    deletes = [(write.path, write.status) for write in proxy.writes if write.method == "DELETE"]
    assert not deletes, f"copies pruned from a stalled cache while the blueprint was back: {deletes}"
    for namespace in targets:  # still stalled: only the read at the end of the grace can see it
        await scenario.wait_copy(namespace, rotated, timeout=10)
    assert proxy.open_watches(home) == 0, "the watch was not stalled after all"
    # The read that found it must be consistent: a LIST by name with no resourceVersion, which the
    # API server answers as of now. One with resourceVersionMatch=NotOlderThan may be answered from
    # a watch cache as old as the stalled view (this API server's is current, so only the query
    # tells the two apart). The first LIST at start is consistent too: count only reads since.
    reads = [
        parse_qs(urlsplit(target).query, keep_blank_values=True)
        for method, target in proxy.seen[back:]
        if method == "GET" and urlsplit(target).path == home
    ]
    by_name = [f"metadata.name={scenario.secret_name}"]
    consistent = [
        query
        for query in reads
        if "watch" not in query
        and query.get("fieldSelector") == by_name
        and query.get("resourceVersion", [""]) == [""]
        and "resourceVersionMatch" not in query
    ]
    assert consistent, f"no consistent LIST of the blueprint after it came back; reads since: {reads}"
    proxy.release_watches()


async def test_service_account_token_blueprint_is_refused(scenario: Scenario) -> None:
    await scenario.namespace("home")
    await scenario.core.create_namespaced_service_account(
        scenario.home, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot"))
    )
    await scenario.core.create_namespaced_secret(
        scenario.home,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=scenario.secret_name, annotations={"kubernetes.io/service-account.name": "robot"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()

    async def refused_event() -> bool:
        return any(event.reason == "Refused" for event in await scenario.events())

    await wait_for(refused_event, timeout=20, what="a Refused event on the blueprint")
    assert await scenario.copy(namespace) is None


async def test_type_change_replaces_the_copy(scenario: Scenario) -> None:
    await scenario.blueprint({"username": "u", "password": "p"}, type="kubernetes.io/basic-auth")
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()
    await scenario.wait_copy(namespace, {"username": "u", "password": "p"})
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)
    await scenario.blueprint({"auth": "x"})

    async def replaced() -> bool:
        copy = await scenario.copy(namespace)
        return copy is not None and copy.type == "Opaque" and copy.data == {"auth": b64("x")}

    await wait_for(replaced, timeout=20, what="the copy to be replaced with the new type")


async def test_immutable_copy_is_replaced_when_the_blueprint_changes(scenario: Scenario) -> None:
    await scenario.blueprint({"v": "1"}, immutable=True)
    namespace = await scenario.namespace("t")
    operator = scenario.operator()
    await operator.wait_ready()
    first = await scenario.wait_copy(namespace, {"v": "1"})
    assert first.immutable is True
    await scenario.core.delete_namespaced_secret(scenario.secret_name, scenario.home)
    await scenario.blueprint({"v": "2"}, immutable=True)
    second = await scenario.wait_copy(namespace, {"v": "2"})
    assert second.immutable is True
    assert second.metadata.uid != first.metadata.uid


async def test_a_webhook_that_changes_every_write_is_retried_with_backoff_not_in_a_loop(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """The proxy stamps a nonce into every Secret write, as a mutating webhook could: the stored data
    never matches, and the watch reports each write. Backoff from 0.2 s gives passes at 0, 0.2,
    0.6, 1.4, 3.0, 6.2, 12.6 s: seven writes in 20 s, where the bypassed backoff made one per
    request the rate limit allowed."""
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("w")
    proxy = await proxies("p")
    proxy.mutate_secrets, proxy.mutate_path = True, f"/namespaces/{namespace}/"
    operator = scenario.operator_via(proxy)
    await operator.wait_ready()

    async def first_write() -> bool:
        return any(namespace in write.path for write in proxy.writes)

    await wait_for(first_write, timeout=20, what="the first write")
    await anyio.sleep(20)
    writes = [write for write in proxy.writes if f"/namespaces/{namespace}/secrets" in write.path]
    metrics = await operator.metrics()
    print(f"mutating webhook: {len(writes)} writes in 20 s, {proxy.mutated} mutated")
    assert 4 <= len(writes) <= 10, f"{len(writes)} writes in 20 s"
    # Backoff, not a fixed retry: the gaps between the passes' writes grow (about doubling), so
    # the last is several times the first. A little slack for the machine's jitter.
    gaps = [later.started - earlier.started for earlier, later in itertools.pairwise(writes)]
    assert all(longer >= 0.8 * shorter for shorter, longer in itertools.pairwise(gaps)), gaps
    assert gaps[-1] >= 4 * gaps[0], gaps
    assert metrics.value("secrets_operator_reconciles_total", result="error") >= 4

    async def failing() -> list[client.EventsV1Event]:
        return [event for event in await scenario.events() if event.reason == "ReplicationFailing"]

    (event,) = await wait_for(failing, timeout=15, what="a ReplicationFailing Event")
    assert f"1 namespace ({namespace})" in event.note


async def test_a_mutating_admission_policy_that_changes_every_write_is_retried_with_backoff(
    scenario: Scenario,
) -> None:
    """The same fight as above, with the real thing where it exists: MutatingAdmissionPolicy is GA
    and on from 1.36 (beta and off in 1.35, where only webhooks mutate, as the test above plays).
    The policy stamps each write's resourceVersion into the copy's data, so the stored copy never
    matches and every write is seen as drift: the operator must back off, not loop."""
    admission = client.AdmissionregistrationV1Api(scenario.api)
    if await server_minor(scenario.api) < 36:
        # 1.35: the API is not served at all (v1 lacks it, v1beta1 is off), so no policy can
        # mutate the copies.
        served = await client.AdmissionregistrationV1Api(scenario.api).get_api_resources()
        assert "mutatingadmissionpolicies" not in {r.name for r in served.resources}
        with pytest.raises(client.ApiException) as off:
            await client.AdmissionregistrationV1beta1Api(scenario.api).get_api_resources()
        assert off.value.status == 404
        return
    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("m")
    name = f"{scenario.prefix}-stamp"
    policy: Any = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["secrets"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "the-copy",
                    "expression": (
                        f'request.namespace == "{namespace}" && request.name == "{scenario.secret_name}"'
                    ),
                }
            ],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [
                {
                    "patchType": "ApplyConfiguration",
                    # A nonce per write: admission CEL has no request UID, no clock and no base64,
                    # but an update carries the resourceVersion it replaces (each write moves it
                    # on), and its digits padded to a multiple of 4 are valid base64.
                    "applyConfiguration": {
                        "expression": (
                            'Object{data: {"stamp": has(object.metadata.resourceVersion)'
                            " ? object.metadata.resourceVersion"
                            ' + ["", "AAA", "AA", "A"][size(object.metadata.resourceVersion) % 4]'
                            ' : "bmV3"}}'
                        )
                    },
                }
            ],
        },
    }
    binding: Any = {  # plain manifests: the typed client sends dicts as they are
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name},
    }
    await admission.create_mutating_admission_policy(policy)
    await admission.create_mutating_admission_policy_binding(binding)
    try:
        # The policy is in force once a write of ours is stamped (the admission plugin loads
        # policies from its own informer, so the first writes may pass unstamped).
        async def stamping() -> bool:
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(name=scenario.secret_name), data={"x": b64("y")}
            )
            try:
                await scenario.core.create_namespaced_secret(namespace, body)
                written = await scenario.core.read_namespaced_secret(scenario.secret_name, namespace)
                return "stamp" in (written.data or {})
            finally:
                await scenario.core.delete_namespaced_secret(scenario.secret_name, namespace)

        await wait_for(stamping, timeout=30, what=f"the policy {name} to stamp writes", interval=0.5)
        operator = scenario.operator()
        await operator.wait_ready()

        async def stamped_copy() -> bool:
            copy = await scenario.copy(namespace)
            return copy is not None and "stamp" in (copy.data or {})

        await wait_for(stamped_copy, timeout=20, what="the operator's copy, stamped by the policy")
        # Watch the backoff's own schedule for 20 s: when the stored copy changes (one change
        # per write of the operator's, each stamped anew).
        started = await operator.metrics()
        seen = await scenario.copy(namespace)
        assert seen is not None
        version, changes, until = seen.metadata.resource_version, [], time.monotonic() + 20
        while time.monotonic() < until:
            await anyio.sleep(0.1)
            copy = await scenario.copy(namespace)
            if copy is not None and copy.metadata.resource_version != version:
                version = copy.metadata.resource_version
                changes.append(time.monotonic())
        ended = await operator.metrics()
        writes = ended.value("secrets_operator_writes_total") - started.value("secrets_operator_writes_total")
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(changes)]
        print(f"mutating admission policy: {writes} writes in 20 s, gaps between them {gaps} s")
        assert 3 <= writes <= 10, f"{writes} writes in 20 s"
        # Exponential, not merely slow: a fixed retry period would keep the gaps alike.
        assert len(gaps) >= 2, gaps
        assert gaps[-1] >= 3 * gaps[0], f"the gaps between writes do not grow: {gaps}"

        async def failing() -> list[client.EventsV1Event]:
            return [event for event in await scenario.events() if event.reason == "ReplicationFailing"]

        (event,) = await wait_for(failing, timeout=15, what="a ReplicationFailing Event")
        assert f"1 namespace ({namespace})" in event.note
    finally:
        await admission.delete_mutating_admission_policy_binding(name)
        await admission.delete_mutating_admission_policy(name)


async def test_restart_in_sync_makes_zero_writes(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(5)]
    first = scenario.operator("first")
    await first.wait_ready()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)
    first.stop()

    second = scenario.operator("second")
    await second.wait_ready()
    listed = await scenario.core.list_namespace()
    everything = len(listed.items)

    async def first_pass_done() -> bool:
        metrics = await second.metrics()
        return metrics.value("secrets_operator_reconciles_total") >= everything

    await wait_for(first_pass_done, timeout=30, what="the restarted operator's first full pass")
    metrics = await second.metrics()
    assert metrics.value("secrets_operator_writes_total") == 0
    # Requests that are not Secret writes: Lease renewals are PATCHes, and POST creates the Lease
    # (or an Event); no DELETE and no PUT at all.
    assert metrics.value("secrets_operator_api_requests_total", verb="POST") <= 1
    assert metrics.value("secrets_operator_api_requests_total", verb="DELETE") == 0
    assert metrics.value("secrets_operator_api_requests_total", verb="PUT") == 0
    assert metrics.value("secrets_operator_copies", state="in_sync") == len(targets)


async def test_check_reports_states_and_sync_once_repairs(scenario: Scenario) -> None:

    import anyio

    await scenario.blueprint(HTPASSWD)
    namespace = await scenario.namespace("t")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETS_OPERATOR_")}
    env.update(scenario.env())
    env["KUBECONFIG"] = str(scenario.cluster.kubeconfig)
    check = await anyio.run_process([sys.executable, "-m", "secrets_operator", "check"], env=env, check=False)
    assert check.returncode == 1
    report = check.stdout.decode()
    assert namespace in report
    assert "missing" in report

    dry = await anyio.run_process(
        [sys.executable, "-m", "secrets_operator", "sync", "--once", "--dry-run"], env=env, check=False
    )
    assert dry.returncode == 0
    assert f"would create Secret {namespace}/{scenario.secret_name}" in dry.stdout.decode()
    assert await scenario.copy(namespace) is None

    applied = await anyio.run_process(
        [sys.executable, "-m", "secrets_operator", "sync", "--once"], env=env, check=False
    )
    assert applied.returncode == 0, applied.stderr.decode()
    await scenario.wait_copy(namespace, HTPASSWD, timeout=5)

    again = await anyio.run_process([sys.executable, "-m", "secrets_operator", "check"], env=env, check=False)
    assert again.returncode == 0, again.stdout.decode()
    assert "in_sync" in again.stdout.decode()
