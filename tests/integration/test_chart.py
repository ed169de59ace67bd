"""The Helm chart, checked against the real control plane: its objects, its schema, its RBAC.

The RBAC proof renders the chart, applies exactly its ServiceAccount and RBAC objects, and runs
the operator with a token for that ServiceAccount and the environment of the rendered
Deployment: replication, drift repair, Events and leader election must work with those
permissions, and the same identity must be refused other Secrets and Leases elsewhere.

There is no kubelet in the local control plane, so the chart's pods never start there; the
operator runs as local processes configured from the rendered manifest instead.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

import secrets_operator
from tests.binaries import binaries
from tests.conftest import Cluster
from tests.integration.conftest import Scenario, b64
from tests.operator import OperatorProcess
from tests.support import service_account_kubeconfig, wait_for

pytestmark = pytest.mark.chart

CHART = Path(__file__).resolve().parents[2] / "chart" / "secrets-operator"
KUBE_VERSION = "1.35.4"
HTPASSWD = {"auth": "erin:$apr1$q$w"}

# A stand-in for prometheus-operator's CRD, so that a ServiceMonitor can be dry-run: it checks
# that the API accepts the kind and metadata, not prometheus-operator's own schema.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def raw(obj: Mapping[str, Any]) -> Any:
    """Hand a plain manifest to the typed client (it serialises dicts as they are)."""
    return obj


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(binaries().helm), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def kubectl(cluster: Cluster, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [str(binaries().kubectl), "--kubeconfig", str(cluster.kubeconfig), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def render(release: str, namespace: str, *, values_file: str = "", **values: Any) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    if values_file:
        args += ["-f", str(CHART / "ci" / values_file)]
    if values:
        args += ["--set-json", f"operator={json.dumps(values)}"]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


@pytest.fixture
async def crd(api: ApiClient, cluster: Cluster) -> None:
    extensions = client.ApiextensionsV1Api(api)
    try:
        await extensions.create_custom_resource_definition(raw(SERVICE_MONITOR_CRD))
    except ApiException as exc:
        if exc.status != 409:
            raise

    async def established() -> bool:
        crd = await extensions.read_custom_resource_definition("servicemonitors.monitoring.coreos.com")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    await wait_for(established, timeout=30, what="the ServiceMonitor CRD")

    # Established is not yet served by discovery, which is what kubectl goes by.
    async def discoverable() -> bool:
        return kubectl(cluster, "get", "servicemonitors.monitoring.coreos.com", "-A").returncode == 0

    await wait_for(discoverable, timeout=30, what="ServiceMonitors in API discovery")


# ------------------------------------------------------------------------------ the chart


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == secrets_operator.__version__
    assert chart["appVersion"] == secrets_operator.__version__


@pytest.mark.parametrize("values_file", ["default-values.yaml", "all-values.yaml"])
def test_chart_lints_strictly(values_file: str) -> None:
    done = helm("lint", str(CHART), "--strict", "-f", str(CHART / "ci" / values_file))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values_file", ["default-values.yaml", "all-values.yaml"])
async def test_every_rendered_object_is_accepted_by_the_api_server(
    values_file: str, cluster: Cluster, api: ApiClient, crd: None
) -> None:
    namespace = f"chart-{secrets.token_hex(3)}"
    await client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    try:
        objects = render("dry", namespace, values_file=values_file)
        done = kubectl(cluster, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objects))
        assert done.returncode == 0, done.stderr
        applied = [line for line in done.stdout.splitlines() if "(server dry run)" in line]
        assert len(applied) == len(objects), done.stdout
    finally:
        await client.CoreV1Api(api).delete_namespace(namespace)


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        (["--set", "replicaCount=two"], "replicaCount"),
        (["--set", "operator.prune=yes"], "prune"),
        (["--set", "operator.conflictPolicy=merge"], "conflictPolicy"),
        (["--set", "operator.blueprints={not-a-reference}"], "blueprints"),
        (["--set", "unknownTopLevel=1"], "unknownTopLevel"),
        (["--set", "operator.unknownSetting=1"], "unknownSetting"),
    ],
)
def test_schema_rejects_wrong_values(override: list[str], complaint: str) -> None:
    args = [
        "template",
        "t",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(CHART / "ci" / "default-values.yaml"),
    ]
    done = helm(*args, *override)
    assert done.returncode != 0
    assert complaint in done.stderr


def test_chart_without_blueprints_is_refused_with_a_clear_message() -> None:
    done = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION)
    assert done.returncode != 0
    assert "blueprints" in done.stderr


def test_chart_refuses_lease_timings_the_operator_would_refuse() -> None:
    defaults = str(CHART / "ci" / "default-values.yaml")
    done = helm(
        "template", "t", str(CHART), "--kube-version", KUBE_VERSION, "-f", defaults,
        "--set", "operator.leaseDurationSeconds=5",
    )  # fmt: skip
    assert done.returncode != 0
    assert "leaseDurationSeconds must be greater than" in done.stderr


def test_rbac_limits_secret_access_to_the_blueprint_names() -> None:
    objects = render("t", "ops", values_file="all-values.yaml")
    rules = of_kind(objects, "ClusterRole")["rules"]
    secret_rules = [rule for rule in rules if "secrets" in rule["resources"]]
    assert {tuple(rule["verbs"]) for rule in secret_rules if "resourceNames" not in rule} == {("create",)}
    named = [rule for rule in secret_rules if "resourceNames" in rule]
    assert [sorted(rule["resourceNames"]) for rule in named] == [["htpasswd", "pull-secret"]]


async def test_pod_from_the_deployment_is_admitted_under_restricted_pod_security(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace = f"restricted-{secrets.token_hex(3)}"
    await core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=namespace,
                labels={
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            )
        )
    )
    try:
        objects = render("psa", namespace, values_file="default-values.yaml")
        template = of_kind(objects, "Deployment")["spec"]["template"]
        await core.create_namespaced_service_account(namespace, raw(of_kind(objects, "ServiceAccount")))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "from-chart", **template["metadata"]},
            "spec": template["spec"],
        }
        created = await core.create_namespaced_pod(namespace, raw(pod))
        assert created.metadata.name == "from-chart"

        # The namespace really enforces "restricted": the same Pod without securityContext is refused.
        bare_spec = json.loads(json.dumps(template["spec"]))
        bare_spec.pop("securityContext")
        bare_spec["containers"][0].pop("securityContext")
        bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}, "spec": bare_spec}
        with pytest.raises(ApiException) as refused:
            await core.create_namespaced_pod(namespace, raw(bare))
        assert refused.value.status == 403
        assert "restricted" in str(refused.value.body)
    finally:
        await core.delete_namespace(namespace)


def test_helm_install_and_uninstall_succeed_on_the_local_control_plane(cluster: Cluster) -> None:
    # Installs every object; the pods stay Pending here (no kubelet), so no --wait.
    release, namespace = f"inst-{secrets.token_hex(3)}", f"inst-{secrets.token_hex(3)}"
    done = helm(
        "install", release, str(CHART), "--namespace", namespace, "--create-namespace",
        "-f", str(CHART / "ci" / "default-values.yaml"), kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "STATUS: deployed" in done.stdout
    # NOTES.txt tells how to see the copies and the leader.
    assert "kubectl get secrets --all-namespaces --field-selector metadata.name=htpasswd" in done.stdout
    assert "jsonpath='{.spec.holderIdentity}" in done.stdout
    status = helm("status", release, "--namespace", namespace, "-o", "json", kubeconfig=cluster.kubeconfig)
    assert json.loads(status.stdout)["info"]["status"] == "deployed"
    removed = helm("uninstall", release, "--namespace", namespace, kubeconfig=cluster.kubeconfig)
    assert removed.returncode == 0, removed.stderr
    kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


# ------------------------------------------------------------------------ the RBAC proof


def _deployment_env(deployment: Mapping[str, Any], *, pod_name: str, pod_namespace: str) -> dict[str, str]:
    """The operator's environment as the Deployment would give it (downward API resolved)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": pod_name, "metadata.namespace": pod_namespace}[path]
    return env


async def _apply_rbac(cluster: Cluster, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    rbac = [obj for obj in objects if obj["kind"] in kinds]
    done = kubectl(cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert done.returncode == 0, done.stderr
    return rbac


async def _wait_rbac_effective(kubeconfig: Path, *, secret: tuple[str, str], lease: tuple[str, str]) -> None:
    """Wait until the API server's authorizer has caught up with the RBAC objects just applied,
    so that a refusal later on is the chart's doing, not a cache lagging by milliseconds."""
    async with await config.new_client_from_config(config_file=str(kubeconfig)) as as_operator:
        core = client.CoreV1Api(as_operator)
        leases = client.CoordinationV1Api(as_operator)

        async def allowed() -> bool:
            try:
                await core.list_namespace(limit=1)
                await core.list_namespaced_secret(secret[0], field_selector=f"metadata.name={secret[1]}")
                await leases.list_namespaced_lease(lease[0], field_selector=f"metadata.name={lease[1]}")
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return False
            return True

        await wait_for(allowed, timeout=20, what="the chart's RBAC to take effect")


async def test_operator_works_with_exactly_the_chart_rbac_and_nothing_more(
    scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    release_namespace = await scenario.namespace("system")
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(3)]
    twin = await scenario.namespace("twin")
    await scenario.core.create_namespaced_secret(
        twin,
        client.V1Secret(metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"x": "theirs"}),
    )
    unrelated = await scenario.core.create_namespaced_secret(
        targets[0],
        client.V1Secret(metadata=client.V1ObjectMeta(name="unrelated"), string_data={"db": "password"}),
    )
    release = scenario.prefix
    objects = render(
        release,
        release_namespace,
        blueprints=[f"{scenario.home}/{scenario.secret_name}"],
        includeNamespaces=[f"{scenario.prefix}-*"],
        leaseDurationSeconds=4,
        renewDeadlineSeconds=3,
        retryPeriodSeconds=0.5,
    )
    rbac = await _apply_rbac(cluster, objects)
    try:
        account = of_kind(objects, "ServiceAccount")["metadata"]["name"]
        kubeconfig = await service_account_kubeconfig(
            scenario.api, namespace=release_namespace, name=account, path=tmp_path / "operator.kubeconfig"
        )
        deployment = of_kind(objects, "Deployment")
        lease_name = deployment_env_value(deployment, "SECRETS_OPERATOR_LEASE_NAME")
        await _wait_rbac_effective(
            kubeconfig, secret=(scenario.home, scenario.secret_name), lease=(release_namespace, lease_name)
        )
        replicas = []
        for name in ("pod-a", "pod-b"):
            env = _deployment_env(deployment, pod_name=f"{release}-{name}", pod_namespace=release_namespace)
            process = OperatorProcess(
                name=f"{release}-{name}", kubeconfig=kubeconfig, env=env, log_dir=tmp_path
            )
            # Two processes on one machine need two ports; everything else is the manifest's.
            process.env["SECRETS_OPERATOR_HTTP_PORT"] = "0"
            process.env.pop("SECRETS_OPERATOR_IDENTITY", None)
            scenario.operators.append(process)
            process.start()
            replicas.append(process)
        for replica in replicas:
            await replica.wait_ready()

        # Replication and drift repair.
        for namespace in targets:
            await scenario.wait_copy(namespace, HTPASSWD)
        await scenario.core.delete_namespaced_secret(scenario.secret_name, targets[1])
        await scenario.wait_copy(targets[1], HTPASSWD)
        await scenario.core.patch_namespaced_secret(
            scenario.secret_name, targets[2], {"data": {"auth": b64("x")}}
        )
        await scenario.wait_copy(targets[2], HTPASSWD)

        # Events on the blueprint (events.k8s.io create).
        async def conflict_event() -> bool:
            return any(e.reason == "Conflict" for e in await scenario.events())

        await wait_for(conflict_event, timeout=20, what="a Conflict event recorded with the chart's RBAC")

        # Leader election: exactly one leader, named in the Lease in the release namespace.
        async def one_leader() -> OperatorProcess | None:
            leaders = [replica for replica in replicas if await replica.is_leader()]
            return leaders[0] if len(leaders) == 1 else None

        leader = await wait_for(one_leader, timeout=20, what="one leader")
        lease = await client.CoordinationV1Api(scenario.api).read_namespaced_lease(
            lease_name, release_namespace
        )
        assert lease.spec.holder_identity == leader.name
        for replica in replicas:  # the chart's RBAC never refused the operator anything
            refused = (await replica.metrics()).value("secrets_operator_api_errors_total", code="403")
            assert refused == 0, replica.log[-3000:]

        # ...and nothing more: the same identity is refused what it does not need.
        async with await config.new_client_from_config(config_file=str(kubeconfig)) as as_operator:
            core = client.CoreV1Api(as_operator)
            with pytest.raises(ApiException) as read_other:
                await core.read_namespaced_secret(unrelated.metadata.name, targets[0])
            assert read_other.value.status == 403
            with pytest.raises(ApiException) as list_all:
                await core.list_secret_for_all_namespaces()
            assert list_all.value.status == 403
            with pytest.raises(ApiException) as delete_other:
                await core.delete_namespaced_secret(unrelated.metadata.name, targets[0])
            assert delete_other.value.status == 403
            leases = client.CoordinationV1Api(as_operator)
            elsewhere = client.V1Lease(
                metadata=client.V1ObjectMeta(name=lease_name), spec=client.V1LeaseSpec()
            )
            with pytest.raises(ApiException) as foreign_lease:
                await leases.create_namespaced_lease("default", elsewhere)
            assert foreign_lease.value.status == 403
            with pytest.raises(ApiException) as other_lease:
                await leases.read_namespaced_lease("kube-controller-manager", "kube-system")
            assert other_lease.value.status == 403
    finally:
        cluster_scoped = [obj for obj in rbac if obj["kind"].startswith("Cluster")]
        kubectl(cluster, "delete", "-f", "-", "--wait=false", stdin=yaml.safe_dump_all(cluster_scoped))


def deployment_env_value(deployment: Mapping[str, Any], name: str) -> str:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (value,) = [item["value"] for item in container["env"] if item["name"] == name]
    return str(value)


def test_every_setting_is_a_chart_value_passed_to_the_operator() -> None:
    from secrets_operator.settings import Settings
    from tests.reference import HELM_FROM_POD, helm_value

    values = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]
    deployment = of_kind(render("t", "ops", values_file="default-values.yaml"), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"] for item in container["env"]}
    for name in Settings.model_fields:
        if name == "identity":
            assert "POD_NAME" in env  # the operator takes its identity from the Pod's name
            continue
        assert f"SECRETS_OPERATOR_{name.upper()}" in env, name
        if name not in HELM_FROM_POD:
            assert helm_value(name).removeprefix("operator.") in values, name
