"""The local control plane behaves like a real cluster in the ways the operator relies on."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

from tests.conftest import Cluster
from tests.support import server_minor, service_account_kubeconfig
from tools.binaries import release
from tools.waiting import read_or_none, wait_for


async def test_server_reports_the_pinned_kubernetes_version(cluster: Cluster, api: ApiClient) -> None:
    if cluster.plane is None:
        pytest.skip("an external cluster runs whatever version it runs")
    info = await client.VersionApi(api).get_code()
    assert info.git_version == release().kubernetes_version


async def test_secret_written_in_a_new_namespace_reads_back(api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="greeting"),
        type="Opaque",
        string_data={"hello": "world"},
    )
    await core.create_namespaced_secret(namespace, body)
    secret = await core.read_namespaced_secret("greeting", namespace)
    assert secret.type == "Opaque"
    assert secret.data == {"hello": "d29ybGQ="}


async def test_rbac_denies_a_service_account_until_a_role_grants_it(
    api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = await service_account_kubeconfig(
        api, namespace=namespace, name="reader", path=tmp_path / "reader.kubeconfig"
    )
    async with await config.new_client_from_config(config_file=str(kubeconfig)) as as_reader:
        reader = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as denied:
            await reader.list_namespaced_config_map(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(api)
        await rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
            ),
        )
        await rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-reads-configmaps"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
            ),
        )

        async def allowed() -> bool:
            try:
                await reader.list_namespaced_config_map(namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        await wait_for(allowed, timeout=10, what="the RoleBinding to take effect")
        # The grant is exactly what the Role says: Secrets stay forbidden.
        with pytest.raises(ApiException) as still_denied:
            await reader.list_namespaced_secret(namespace)
        assert still_denied.value.status == 403


async def test_deleted_namespace_finishes_terminating(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"t-doomed-{secrets.token_hex(3)}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    await core.create_namespaced_secret(
        name, client.V1Secret(metadata=client.V1ObjectMeta(name="content"), string_data={"k": "v"})
    )
    await core.delete_namespace(name)

    async def gone() -> bool:
        return await read_or_none(core.read_namespace(name)) is None

    # The namespace controller must empty it and remove the finalizer for it to disappear.
    await wait_for(gone, timeout=60, what=f"namespace {name} to be deleted", interval=0.2)


async def test_namespace_watch_delivers_added_event(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    listed = await core.list_namespace(limit=1)
    name = f"t-watched-{secrets.token_hex(3)}"
    seen = anyio.Event()

    async def watch_for_it() -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                core.list_namespace,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=30,
            ):
                if event["type"] == "ADDED" and event["object"].metadata.name == name:
                    seen.set()
                    return

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch_for_it)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        with anyio.fail_after(20):
            await seen.wait()
    await core.delete_namespace(name)


async def _served_from_cache(api: ApiClient, resource: str) -> float:
    """kube-apiserver's count of LISTs of ``resource`` (core group) served from its watch cache.

    The metric changed in 1.37: until 1.36 `apiserver_cache_list_total` counts them (and
    `apiserver_storage_list_total` only those read from etcd); 1.37 deprecates and hides it, and
    `apiserver_storage_list_total` counts every list, labelled `storage="watchcache"` or "etcd".
    """
    if await server_minor(api) >= 37:
        metric, label = "apiserver_storage_list_total{", 'storage="watchcache"'
    else:
        metric, label = "apiserver_cache_list_total{", ""
    response = await api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False)
    text = (await response.read()).decode()
    response.release()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric)
        and 'group=""' in line
        and f'resource="{resource}"' in line
        and label in line
    )


async def test_the_server_lists_from_its_watch_cache_in_pages_consistently_and_not_older_than(
    cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    """What the informer's LISTs rely on (kube/informer.py, docs/architecture.md "Watching"):
    every one of its pages, first list and relist alike, comes from the watch cache."""
    if cluster.plane is None:
        pytest.skip("an external cluster runs whatever version it runs")
    core = client.CoreV1Api(api)
    names = [f"s{i:02d}" for i in range(12)]
    for name in names:
        await core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"k": "v"})
        )

    async def pages(**query: Any) -> tuple[int, list[str], str]:
        """List one Secret per page to the end: pages, names, the first page's resourceVersion."""
        listed = await core.list_namespaced_secret(namespace, limit=1, **query)
        count, found, version = (
            1,
            [item.metadata.name for item in listed.items],
            listed.metadata.resource_version,
        )
        while listed.metadata._continue:
            listed = await core.list_namespaced_secret(
                namespace, limit=1, _continue=listed.metadata._continue
            )
            count += 1
            found += [item.metadata.name for item in listed.items]
        return count, found, version

    # Other clients (controllers, earlier tests' leftovers) may list Secrets meanwhile and add to
    # the counter, never take from it: so the check is one-sided, over enough pages that lists
    # served from etcd could not pass it on that noise.
    # The first list: consistent (no resourceVersion), in pages (v1.34+: ConsistentListFromCache,
    # ListFromCacheSnapshot).
    before = await _served_from_cache(api, "secrets")
    count, found, version = await pages()
    assert (count, found) == (12, names)
    assert await _served_from_cache(api, "secrets") >= before + 12

    # A relist: not older than the last version seen, in pages.
    before = await _served_from_cache(api, "secrets")
    count, found, newer = await pages(resource_version=version, resource_version_match="NotOlderThan")
    assert (count, found) == (12, names)
    assert int(newer) >= int(version)
    assert await _served_from_cache(api, "secrets") >= before + 12

    # Why the informer never lists at version 0: the cache ignores limit there, whole in one piece.
    whole = await core.list_namespaced_secret(namespace, resource_version="0", limit=1)
    assert len(whole.items) == 12
    assert not whole.metadata._continue
