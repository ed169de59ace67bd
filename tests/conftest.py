"""Fixtures shared by every test tier: one real control plane per session, API clients, namespaces.

The control plane is started once, lazily, by the first test that needs it (unit tests never do).
``SECRETS_OPERATOR_TEST_KUBECONFIG`` points the same suite at any real cluster instead. Under
``CI=true`` a control plane that cannot be started fails the tests; elsewhere they are skipped with
the reason, so a laptop without Go can still run the unit tests. ``SECRETS_OPERATOR_KUBERNETES``
chooses the supported minor the local control plane runs (default: the newest).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient

from tools.binaries import BuildError, release
from tools.cluster import ControlPlane, ControlPlaneError, print_logs

KUBECONFIG_ENV = "SECRETS_OPERATOR_TEST_KUBECONFIG"
AUDIT_LOG_ENV = "SECRETS_OPERATOR_TEST_AUDIT_LOG"
_planes: list[ControlPlane] = []


def pytest_report_header(config: pytest.Config) -> str:
    """Say which Kubernetes the run is against; refuse an unsupported choice before any test."""
    if os.environ.get(KUBECONFIG_ENV):
        return f"cluster: {os.environ[KUBECONFIG_ENV]} (external)"
    try:
        chosen = release()
    except BuildError as exc:
        raise pytest.UsageError(str(exc)) from None
    return f"control plane: Kubernetes {chosen.kubernetes_version}, etcd {chosen.etcd_version}"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What a test needs to reach the cluster: an admin kubeconfig, and the local plane if we own it."""

    kubeconfig: Path
    plane: ControlPlane | None
    #: The API server's audit log (JSON lines, at least every ServiceAccount request at Metadata
    #: level): the local plane's, or ``SECRETS_OPERATOR_TEST_AUDIT_LOG`` for an external cluster.
    audit_log: Path | None = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        audit = os.environ.get(AUDIT_LOG_ENV)
        yield Cluster(kubeconfig=Path(external), plane=None, audit_log=Path(audit) if audit else None)
        return
    try:
        plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
        _planes.append(plane)
        plane.start()
    except (BuildError, ControlPlaneError, OSError) as exc:
        message = f"cannot start the local control plane: {exc}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield Cluster(kubeconfig=plane.admin_kubeconfig, plane=plane, audit_log=plane.audit_log)
    finally:
        plane.stop()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[ApiClient]:
    """An admin API client for the session's cluster, closed after the test."""
    api_client = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    async with api_client:
        yield api_client


@pytest.fixture
async def namespace(api: ApiClient, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace, unique per test (namespaces take a while to terminate), deleted afterwards."""
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """When anything failed, show the control plane's own logs: they often say why."""
    if exitstatus not in (0, 5):
        for plane in _planes:
            print_logs(plane.log_files())
