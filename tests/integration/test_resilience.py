"""The operator survives what real clusters do to it, and never leaks Secret data while at it."""

from __future__ import annotations

import base64
import os
import secrets
import sys
import urllib.parse

import anyio
from kubernetes_asyncio import client

from tests.integration.conftest import Scenario, StartProxy, b64
from tests.support import log_entries
from tools.waiting import wait_for


async def test_expired_watch_relists_and_repairs_what_changed_meanwhile(
    scenario: Scenario, proxies: StartProxy
) -> None:
    await scenario.blueprint({"auth": "carol:pw"})
    namespace = await scenario.namespace("t")
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, "a")
    await operator.wait_ready()
    await scenario.wait_copy(namespace, {"auth": "carol:pw"})

    # Hold the copies' reconnecting watch, cut the current one, change things meanwhile, then let
    # it come back to a 410 Gone: only a relist can show it what happened.
    copies = "/api/v1/secrets"

    async def copies_watched() -> bool:
        return proxy.open_watches(copies) == 1

    await wait_for(copies_watched, timeout=10, what="the copies' watch through the proxy")
    proxy.hold_path = proxy.gone_path = copies
    proxy.hold_watches = True
    proxy.gone_next_watches = 1
    assert proxy.cut_watches(copies) == 1
    await scenario.core.delete_namespaced_secret(scenario.secret_name, namespace)
    # A copy the operator writes while its watch is down never reaches its cache; deleted before
    # the relist, it is absent from both the old and the new list, and must still come back.
    unseen = await scenario.namespace("u")
    await scenario.wait_copy(unseen, {"auth": "carol:pw"})
    await scenario.core.delete_namespaced_secret(scenario.secret_name, unseen)
    proxy.release_watches()

    await scenario.wait_copy(namespace, {"auth": "carol:pw"})
    await scenario.wait_copy(unseen, {"auth": "carol:pw"})
    assert proxy.gone_served == 1
    # Every LIST of the copies is paged (a copy is as large as its blueprint) and served from the
    # API server's watch cache (test_control_plane.py): consistent at start, and after the 410 not
    # older than the last version seen.
    lists = [
        dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
        for method, target in proxy.seen
        if method == "GET" and urllib.parse.urlsplit(target).path == copies and "watch=true" not in target
    ]
    assert len(lists) == 2, lists
    assert "resourceVersion" not in lists[0], lists
    assert int(lists[1]["resourceVersion"]) > 0, lists
    assert lists[1]["resourceVersionMatch"] == "NotOlderThan", lists
    assert all(int(query["limit"]) > 0 for query in lists), lists
    metrics = await operator.metrics()
    assert (
        metrics.value(
            "secrets_operator_watch_restarts_total",
            informer=f"copies Secret {scenario.secret_name}",
            reason="gone",
        )
        >= 1
    )


async def test_secret_data_never_appears_in_logs_events_metrics_or_reports(scenario: Scenario) -> None:
    canary = f"CANARY-{secrets.token_hex(8)}"
    rotated = f"CANARY-{secrets.token_hex(8)}"
    leaks = _fragments(canary) | _fragments(rotated)
    await scenario.blueprint({"password": canary}, annotations={"note": "annotations are not data"})
    target = await scenario.namespace("t")
    twin = await scenario.namespace("twin")
    await scenario.core.create_namespaced_secret(
        twin,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"password": canary}
        ),
    )
    operator = scenario.operator(log_level="DEBUG")  # the most verbose it gets
    await operator.wait_ready()
    await scenario.wait_copy(target, {"password": canary})
    await scenario.update_blueprint({"password": rotated})
    await scenario.wait_copy(target, {"password": rotated})
    await scenario.core.patch_namespaced_secret(
        scenario.secret_name, target, {"data": {"password": b64(canary)}}
    )
    await scenario.wait_copy(target, {"password": rotated})

    async def conflict_reported() -> bool:
        return any(event.reason == "Conflict" for event in await scenario.events())

    await wait_for(conflict_reported, timeout=20, what="the conflict Event")

    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETS_OPERATOR_")}
    env.update(scenario.env(log_level="DEBUG", log_format="text"))
    env["KUBECONFIG"] = str(scenario.cluster.kubeconfig)
    outputs = []
    for command in (["check"], ["check", "--output", "json"], ["sync", "--once", "--dry-run"]):
        done = await anyio.run_process(
            [sys.executable, "-m", "secrets_operator", *command], env=env, check=False
        )
        outputs.append(done.stdout.decode() + done.stderr.decode())

    events = [await scenario.events(ns) for ns in (scenario.home, target, twin)]
    notes = " ".join(f"{e.reason} {e.note} {e.action}" for batch in events for e in batch)
    metrics = (await operator.metrics()).text
    for where, text in [
        ("operator log", operator.log),
        ("events", notes),
        ("metrics", metrics),
        *((f"command output {i}", out) for i, out in enumerate(outputs)),
    ]:
        found = sorted(leak for leak in leaks if leak in text)
        assert not found, f"Secret data leaked into the {where}: {len(found)} fragments"
    created = log_entries(operator.log, "created copy")  # the log did record what happened
    assert {(e["namespace"], e["copy"], e["kind"]) for e in created} == {
        (target, scenario.secret_name, "Secret")
    }, created
    # The forms searched for are the ones the cluster really holds: the copy carries the rotated
    # canary and the twin the first one, exactly as base64 in the API and decoded.
    for namespace, value in ((target, rotated), (twin, canary)):
        stored = await scenario.copy(namespace)
        assert stored is not None, f"no {scenario.secret_name} in {namespace}"
        assert stored.data == {"password": b64(value)}, f"{namespace} does not hold the canary"
        assert base64.b64decode(stored.data["password"]).decode() == value


def _fragments(value: str) -> set[str]:
    """What of ``value`` may not appear anywhere: its random part alone, and every piece of 12
    characters of it and of its base64 form (a message cut short, or quoting part of a value)."""
    random_part = value.removeprefix("CANARY-")
    pieces = {random_part}
    for form in (value, b64(value)):
        pieces |= {form[i : i + 12] for i in range(len(form) - 11)}
    return pieces
