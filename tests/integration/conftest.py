"""Fixtures for operator scenarios: a unique namespace prefix per test, blueprints, replicas.

Each test gets its own prefix (``s<hex>``): its namespaces, blueprint names and Lease are named
after it and its operators only target ``<prefix>-*``, so tests never see each other's objects
even though namespaces take a while to terminate.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

from tests.conftest import Cluster
from tests.faults import FaultProxy
from tools.operator_process import OperatorProcess
from tools.waiting import read_or_none, wait_for

StartProxy = Callable[[str], Awaitable[FaultProxy]]
MANAGED_BY = "app.kubernetes.io/managed-by"
SOURCE = "secrets-operator.io/source"
#: The digest of type+data that earlier versions wrote on every copy; no object may carry it now.
LEGACY_HASH = "secrets-operator.io/source-hash"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Scenario:
    """A test's private corner of the cluster, and the operators that serve it."""

    def __init__(self, api: ApiClient, cluster: Cluster, log_dir: Path) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.cluster = cluster
        self.log_dir = log_dir
        self.prefix = f"s{secrets.token_hex(3)}"
        self.home = f"{self.prefix}-home"
        self.secret_name = f"{self.prefix}-auth"
        self.namespaces: list[str] = []
        self.operators: list[OperatorProcess] = []

    # -- objects

    async def namespace(self, suffix: str, labels: Mapping[str, str] | None = None) -> str:
        name = f"{self.prefix}-{suffix}"
        await self.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {})))
        )
        self.namespaces.append(name)
        return name

    async def blueprint(
        self,
        data: Mapping[str, str],
        *,
        name: str | None = None,
        type: str = "Opaque",
        immutable: bool | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> client.V1Secret:
        if self.home not in self.namespaces:
            await self.namespace("home")
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name or self.secret_name, labels=dict(labels or {}), annotations=dict(annotations or {})
            ),
            type=type,
            data={key: b64(value) for key, value in data.items()},
            immutable=immutable,
        )
        return await self.core.create_namespaced_secret(self.home, body)

    async def update_blueprint(self, data: Mapping[str, str], *, name: str | None = None) -> None:
        await self.core.patch_namespaced_secret(
            name or self.secret_name,
            self.home,
            [{"op": "replace", "path": "/data", "value": {k: b64(v) for k, v in data.items()}}],
        )

    async def copy(self, namespace: str, name: str | None = None) -> client.V1Secret | None:
        return await read_or_none(self.core.read_namespaced_secret(name or self.secret_name, namespace))

    async def wait_copy(
        self, namespace: str, data: Mapping[str, str], *, timeout: float = 20, name: str | None = None
    ) -> client.V1Secret:
        """Wait until the copy in ``namespace`` holds exactly ``data`` and our markers."""
        wanted = {key: b64(value) for key, value in data.items()}

        async def exact() -> client.V1Secret | None:
            secret = await self.copy(namespace, name)
            if secret is None or (secret.data or {}) != wanted:
                return None
            if (secret.metadata.labels or {}).get(MANAGED_BY) != "secrets-operator":
                return None
            return secret

        return await wait_for(exact, timeout=timeout, what=f"an exact copy in {namespace}")

    async def wait_no_copy(self, namespace: str, *, timeout: float = 20, name: str | None = None) -> None:
        async def absent() -> bool:
            return await self.copy(namespace, name) is None

        await wait_for(absent, timeout=timeout, what=f"no copy in {namespace}")

    async def events(self, namespace: str | None = None) -> list[Any]:
        listed = await client.EventsV1Api(self.api).list_namespaced_event(namespace or self.home)
        return list(listed.items)

    # -- operators

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "SECRETS_OPERATOR_BLUEPRINTS": f"{self.home}/{self.secret_name}",
            "SECRETS_OPERATOR_INCLUDE_NAMESPACES": f"{self.prefix}-*",
            "SECRETS_OPERATOR_LEASE_NAME": self.prefix,
            "SECRETS_OPERATOR_LEASE_NAMESPACE": "default",
            "SECRETS_OPERATOR_RESYNC_SECONDS": "600",
        }
        env.update({f"SECRETS_OPERATOR_{key.upper()}": value for key, value in overrides.items()})
        return env

    def operator(self, name: str = "a", **env: str) -> OperatorProcess:
        """A replica with the admin kubeconfig; ``env`` keys are settings without the prefix."""
        return self._start(name, self.cluster.kubeconfig, env)

    def _start(self, name: str, kubeconfig: Path, env: Mapping[str, str]) -> OperatorProcess:
        process = OperatorProcess(
            name=f"{self.prefix}-{name}",
            kubeconfig=kubeconfig,
            env=self.env(**env),
            log_dir=self.log_dir,
        )
        self.operators.append(process)
        process.start()
        return process

    def operator_via(self, proxy: FaultProxy, name: str = "a", **env: str) -> OperatorProcess:
        """A replica that reaches the API server only through ``proxy``."""
        kubeconfig = self.log_dir / f"{name}-via-{proxy.port}.kubeconfig"
        kubeconfig.write_text(proxy.kubeconfig())
        return self._start(name, kubeconfig, env)

    async def cleanup(self) -> None:
        for process in self.operators:
            process.stop()
        for name in self.namespaces:
            try:
                await self.core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
async def scenario(
    api: ApiClient, cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Scenario]:
    world = Scenario(api, cluster, tmp_path)
    yield world
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for process in world.operators:
            print(f"\n----- log of operator {process.name} -----\n{process.log[-6000:]}")
    await world.cleanup()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
async def proxies(api: ApiClient) -> AsyncIterator[StartProxy]:
    """Start fault proxies in front of the cluster, authenticated as the test's admin client."""
    configuration = api.configuration
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    token = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization") or ""
    async with contextlib.AsyncExitStack() as stack:

        async def start(name: str) -> FaultProxy:
            proxy = FaultProxy(str(configuration.host), context, authorization=token, name=name)
            return await stack.enter_async_context(proxy)

        yield start
