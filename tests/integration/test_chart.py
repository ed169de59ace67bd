"""The Helm chart, checked against the real control plane: its objects, its schema, its RBAC.

The RBAC proof renders the chart, applies exactly its ServiceAccount and RBAC objects, and runs
the operator with a token for that ServiceAccount and the environment of the rendered
Deployment: replication, drift repair, Events and leader election must work with those
permissions, and the same identity must be refused other Secrets and Leases elsewhere.

There is no kubelet in the local control plane, so the chart's pods never start there; the
operator runs as local processes configured from the rendered manifest instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

from secrets_operator.controller import REPORTING_CONTROLLER
from tests.conftest import Cluster
from tests.integration.conftest import MANAGED_BY, SOURCE, Scenario, b64
from tests.support import service_account_kubeconfig
from tools.binaries import binaries, release, service_monitor_crd
from tools.operator_process import OperatorProcess
from tools.release import charts, versions
from tools.waiting import read_or_none, wait_for

pytestmark = pytest.mark.chart

CHART = Path(__file__).resolve().parents[2] / "chart" / "secrets-operator"
#: Render for the server the tests run against (the chart refuses anything before its kubeVersion).
KUBE_VERSION = release().kubernetes_version.lstrip("v")
#: The chart is linted, rendered, installed and upgraded with both Helm majors.
HELMS = [3, 4]
HTPASSWD = {"auth": "erin:$apr1$q$w"}


def raw(obj: Mapping[str, Any]) -> Any:
    """Hand a plain manifest to the typed client (it serialises dicts as they are)."""
    return obj


def helm(*args: str, kubeconfig: Path | None = None, major: int = 4) -> subprocess.CompletedProcess[str]:
    """Run Helm ``major`` (the current one, 4, unless a test is about both)."""
    command = [str(binaries().helm_of(major)), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def kubectl(cluster: Cluster, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [str(binaries().kubectl), "--kubeconfig", str(cluster.kubeconfig), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def render(
    release: str, namespace: str, *, values_file: str = "", major: int = 4, **values: Any
) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    if values_file:
        args += ["-f", str(CHART / "ci" / values_file)]
    if values:
        args += ["--set-json", f"operator={json.dumps(values)}"]
    done = helm(*args, major=major)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _blueprints(*items: Any) -> list[str]:
    """Helm arguments that set operator.blueprints to ``items`` (strings and objects)."""
    return ["--set-json", f"operator.blueprints={json.dumps(list(items))}"]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


@pytest.fixture
async def crd(api: ApiClient, cluster: Cluster) -> None:
    extensions = client.ApiextensionsV1Api(api)
    # The real CRD, generated from prometheus-operator's pinned API types: the chart's
    # ServiceMonitor is validated against its actual schema, not against anything-goes.
    definition = yaml.safe_load(service_monitor_crd().read_text())
    try:
        await extensions.create_custom_resource_definition(raw(definition))
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


def test_the_tree_writes_no_version_and_the_packaged_chart_carries_gits(tmp_path: Path) -> None:
    """Chart.yaml holds placeholders; `helm package` through the release tooling sets both fields
    from the version git gives, the one the package and the image carry."""
    tree = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (tree["version"], tree["appVersion"]) == (charts.PLACEHOLDER, charts.PLACEHOLDER)
    version = versions.version()
    archive = charts.package(binaries().helm, tmp_path, version)
    with tarfile.open(archive) as packaged:
        member = packaged.extractfile("secrets-operator/Chart.yaml")
        assert member is not None
        chart = yaml.safe_load(member.read())
    assert chart["version"] == versions.chart_version(version)
    assert chart["appVersion"] == versions.image_tag(version)
    assert archive.name == f"secrets-operator-{versions.chart_version(version)}.tgz"


@pytest.mark.parametrize("major", HELMS)
def test_a_digest_pins_the_image_and_a_malformed_one_is_refused(major: int) -> None:
    """What deploy verified is what runs: image.digest replaces the tag; anything but sha256 is refused."""
    digest = "sha256:" + "ab" * 32
    base = ["template", "t", str(CHART), "--kube-version", KUBE_VERSION, "--set", "image.tag=ignored"]
    base += _blueprints("auth/htpasswd")
    done = helm(*base, "--set", f"image.digest={digest}", major=major)
    assert done.returncode == 0, done.stderr
    deployment = of_kind([doc for doc in yaml.safe_load_all(done.stdout) if doc], "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/secrets-operator/secrets-operator@{digest}"
    refused = helm(*base, "--set", "image.digest=latest", major=major)
    assert refused.returncode != 0
    assert "digest" in refused.stderr
    assert "does not match pattern" in refused.stderr.lower()


@pytest.mark.parametrize("major", HELMS)
@pytest.mark.parametrize("values_file", ["default-values.yaml", "all-values.yaml"])
def test_chart_lints_strictly(values_file: str, major: int) -> None:
    done = helm("lint", str(CHART), "--strict", "-f", str(CHART / "ci" / values_file), major=major)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("values_file", "values"),
    [
        ("default-values.yaml", {}),
        ("all-values.yaml", {}),
        ("default-values.yaml", {"blueprints": ["a/b", "c/d"], "prune": True, "conflictPolicy": "adopt"}),
    ],
)
def test_helm_3_and_helm_4_render_the_same_objects(values_file: str, values: dict[str, Any]) -> None:
    args: dict[str, Any] = {"values_file": values_file, **values}
    three, four = render("same", "ops", major=3, **args), render("same", "ops", major=4, **args)
    assert [(o["kind"], o["metadata"]["name"]) for o in three] == [
        (o["kind"], o["metadata"]["name"]) for o in four
    ]
    assert three == four


@pytest.mark.parametrize("major", HELMS)
@pytest.mark.parametrize("server", ["1.34.9", "1.30.0", "1.34.0-gke.100"])
def test_chart_refuses_servers_before_the_supported_range(server: str, major: int) -> None:
    defaults = str(CHART / "ci" / "default-values.yaml")
    done = helm("template", "t", str(CHART), "--kube-version", server, "-f", defaults, major=major)
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr, done.stderr
    assert ">=1.35.0-0" in done.stderr, done.stderr
    for supported in ("1.35.0", "1.36.3", "1.37.2", "1.35.1-eks.2"):
        accepted = helm("template", "t", str(CHART), "--kube-version", supported, "-f", defaults, major=major)
        assert accepted.returncode == 0, (supported, accepted.stderr)


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
        # Each complaint names the value's path and what is wrong with it: a bare key name would
        # also be found in a refusal of the key itself ("additional properties 'prune' not allowed").
        (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
        (["--set", "operator.prune=yes"], "at '/operator/prune': got string, want boolean"),
        (["--set", "operator.conflictPolicy=merge"], "at '/operator/conflictPolicy': value must be one of"),
        (
            ["--set", "operator.blueprints={not-a-reference}"],
            "at '/operator/blueprints/0': 'not-a-reference' does not match pattern",
        ),
        (["--set", "unknownTopLevel=1"], "at '': additional properties 'unknownTopLevel' not allowed"),
        (
            ["--set", "operator.unknownSetting=1"],
            "at '/operator': additional properties 'unknownSetting' not allowed",
        ),
        # Blueprint objects: exactly the operator's keys, each of its shape.
        (_blueprints({"source": "a/b", "colour": "red"}), "additional properties 'colour' not allowed"),
        (_blueprints({"source": "a/b", "kind": "Pod"}), "/operator/blueprints/0/kind"),
        (_blueprints({"source": "a/b", "kind": "secret"}), "/operator/blueprints/0/kind"),
        (_blueprints({"targetName": "b"}), "missing property 'source'"),
        (_blueprints({"source": "a"}), "/operator/blueprints/0/source"),
        (_blueprints({"source": "a/b/c"}), "/operator/blueprints/0/source"),
        (_blueprints({"source": "a/b", "targetName": "Bad_Name"}), "/operator/blueprints/0/targetName"),
        (_blueprints({"source": "a/b", "targetName": ""}), "/operator/blueprints/0/targetName"),
        (_blueprints({"source": "a/b", "targetName": "x" * 254}), "/operator/blueprints/0/targetName"),
        (_blueprints({"source": "a/b", "previousTargetNames": ["ok", "-bad"]}), "/previousTargetNames/1"),
        (_blueprints({"source": "a/b", "previousTargetNames": "old"}), "/previousTargetNames"),
        (_blueprints({"source": "a/b", "includeNamespaces": []}), "/includeNamespaces': minItems"),
        (_blueprints({"source": "a/b", "excludeNamespaces": [""]}), "/excludeNamespaces/0"),
        (_blueprints({"source": "a/b", "includeNamespaces": [" team-*"]}), "/includeNamespaces/0"),
        (_blueprints({"source": "a/b", "namespaceSelector": ["env=dev"]}), "/namespaceSelector"),
        (_blueprints("a/b..c"), "/operator/blueprints/0"),
        (_blueprints(f"{'n' * 64}/b"), "/operator/blueprints/0"),
        (["--set-json", "operator.blueprints=[]"], "/operator/blueprints"),
    ],
)
@pytest.mark.parametrize("major", HELMS)
def test_schema_rejects_wrong_values(override: list[str], complaint: str, major: int) -> None:
    args = [
        "template",
        "t",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(CHART / "ci" / "default-values.yaml"),
    ]
    done = helm(*args, *override, major=major)
    assert done.returncode != 0
    assert complaint in done.stderr, done.stderr


@pytest.mark.parametrize("major", HELMS)
def test_schema_accepts_every_key_of_a_blueprint_object(major: int) -> None:
    """The refusals above are each one value away from this: the schema is not just closed."""
    every_key = {
        "source": "auth/htpasswd",
        "kind": "ConfigMap",
        "targetName": "web.auth",
        "namespaceSelector": "env in (dev,prod)",
        "includeNamespaces": ["team-*"],
        "excludeNamespaces": [],
        "previousTargetNames": ["htpasswd", "web-auth"],
    }
    args = ["template", "t", str(CHART), "--kube-version", KUBE_VERSION]
    done = helm(
        *args,
        *_blueprints(every_key, "a/b", {"source": "c/d"}, {"source": "e/f", "kind": "Secret"}),
        major=major,
    )
    assert done.returncode == 0, done.stderr


SAME_NAME = "would both write copies named"
TWICE = "is configured twice with different options"
RESERVED = "is published into every namespace by Kubernetes itself"


@pytest.mark.parametrize(
    ("blueprints", "refusal"),
    [
        (["a/b", {"source": "c/d", "targetName": "b"}], SAME_NAME),  # a target is another's target
        (["a/b", {"source": "c/d", "previousTargetNames": ["b"]}], SAME_NAME),  # ...or its earlier name
        (
            [
                {"source": "a/x", "previousTargetNames": ["old"]},
                {"source": "c/y", "previousTargetNames": ["old"]},
            ],
            SAME_NAME,
        ),
        ([{"source": "a/b", "kind": "ConfigMap"}, {"source": "c/b", "kind": "ConfigMap"}], SAME_NAME),
        ([{"source": "a/b", "targetName": "c"}, {"source": "a/b", "targetName": "d"}], TWICE),
        ([{"source": "a/x", "kind": "ConfigMap", "targetName": "kube-root-ca.crt"}], RESERVED),
        ([{"source": "a/kube-root-ca.crt", "kind": "ConfigMap"}], RESERVED),
        ([{"source": "a/x", "kind": "ConfigMap", "previousTargetNames": ["kube-root-ca.crt"]}], RESERVED),
        (["a/b", {"source": "a/b", "excludeNamespaces": []}], TWICE),
        # Fine: one name in two kinds; a source named like another's target; the target among
        # the previous names; an identical repeat (listed once); one source as both kinds.
        (["a/b", {"source": "c/b", "kind": "ConfigMap"}], None),
        ([{"source": "a/b", "targetName": "c"}, "d/b"], None),
        ([{"source": "a/b", "targetName": "c", "previousTargetNames": ["b", "c", "b"]}, "d/e"], None),
        (["a/b", {"source": "a/b"}, {"source": "a/b", "kind": "Secret", "previousTargetNames": ["b"]}], None),
        (["a/b", {"source": "a/b", "kind": "ConfigMap"}], None),
        (["a/b", {"source": "a/b", "targetName": "b"}], None),  # the same copies, said otherwise
        ([{"source": "a/kube-root-ca.crt"}], None),  # reserved for ConfigMaps only
    ],
)
@pytest.mark.parametrize("major", HELMS)
def test_the_chart_refuses_exactly_the_blueprint_lists_the_operator_refuses(
    blueprints: list[Any], refusal: str | None, major: int
) -> None:
    """Two blueprints of one kind writing one name, or one blueprint configured twice otherwise:
    the operator refuses them at start, the chart already at install, naming them."""
    from secrets_operator.blueprint_config import parse_blueprints

    args = ["template", "t", str(CHART), "--kube-version", KUBE_VERSION]
    done = helm(*args, *_blueprints(*blueprints), major=major)
    if refusal is None:
        assert done.returncode == 0, done.stderr
        parse_blueprints(json.dumps(blueprints))
        return
    assert done.returncode != 0
    assert "operator.blueprints: " in done.stderr, done.stderr
    assert refusal in done.stderr, done.stderr
    with pytest.raises(
        ValueError, match=r"would both own|configure each blueprint once|published into every"
    ):
        parse_blueprints(json.dumps(blueprints))


@pytest.mark.parametrize("major", HELMS)
def test_chart_without_blueprints_is_refused_with_a_clear_message(major: int) -> None:
    done = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION, major=major)
    assert done.returncode != 0
    # The schema's own line for the empty list, not just any message that mentions blueprints.
    assert "- at '/operator/blueprints': minItems: got 0, want 1" in done.stderr.splitlines(), done.stderr


@pytest.mark.parametrize("major", HELMS)
def test_chart_without_a_service_account_to_create_needs_its_name(major: int) -> None:
    """serviceAccount.create=false once bound the operator's rights to the namespace's "default"
    ServiceAccount, which every pod without one of its own runs as: now the name is required."""
    defaults = str(CHART / "ci" / "default-values.yaml")
    args = ["template", "t", str(CHART), "--namespace", "ops", "--kube-version", KUBE_VERSION, "-f", defaults]
    done = helm(*args, "--set", "serviceAccount.create=false", major=major)
    running_as = {line.strip() for line in done.stdout.splitlines() if "serviceAccountName:" in line}
    assert done.returncode != 0, f"rendered, the operator with {running_as}"
    assert "serviceAccount.create is false: set serviceAccount.name to the existing ServiceAccount" in (
        done.stderr
    ), done.stderr

    named = helm(
        *args, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops-sa", major=major
    )
    assert named.returncode == 0, named.stderr
    objects = [doc for doc in yaml.safe_load_all(named.stdout) if doc]
    assert not [obj for obj in objects if obj["kind"] == "ServiceAccount"], "create=false creates none"
    subjects = [
        subject
        for obj in objects
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding")
        for subject in obj["subjects"]
    ]
    assert subjects, "the operator's rights are bound"
    assert all(
        subject == {"kind": "ServiceAccount", "name": "ops-sa", "namespace": "ops"} for subject in subjects
    )
    assert of_kind(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    assert "system:serviceaccount:ops:ops-sa" in json.dumps(of_kind(objects, "ValidatingAdmissionPolicy"))


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ("operator.leaseDurationSeconds=10", "leaseDurationSeconds must be greater than"),
        ("operator.retryPeriodSeconds=9", "renewDeadlineSeconds must be greater than 1.2 x"),
        ("operator.retryPeriodSeconds=8.34", "renewDeadlineSeconds must be greater than 1.2 x"),
    ],
)
@pytest.mark.parametrize("major", HELMS)
def test_chart_refuses_lease_timings_the_operator_would_refuse(
    override: str, complaint: str, major: int
) -> None:
    defaults = str(CHART / "ci" / "default-values.yaml")
    args = ["template", "t", str(CHART), "--kube-version", KUBE_VERSION, "-f", defaults]
    assert (
        helm(*args, major=major).returncode == 0
    )  # the defaults (15/10/2) pass; each override breaks one rule
    done = helm(*args, "--set-json", override, major=major)
    assert done.returncode != 0
    assert complaint in done.stderr


def _rules_by_resource(
    objects: list[dict[str, Any]],
) -> dict[str, list[tuple[tuple[str, ...], list[str] | None]]]:
    """The ClusterRole's core-group rules as {resource: [(verbs, resourceNames or None), ...]}."""
    rules: dict[str, list[tuple[tuple[str, ...], list[str] | None]]] = {}
    for rule in of_kind(objects, "ClusterRole")["rules"]:
        if rule["apiGroups"] == [""]:
            for resource in rule["resources"]:
                rules.setdefault(resource, []).append((tuple(rule["verbs"]), rule.get("resourceNames")))
    return rules


def _by_name(names: list[str]) -> list[tuple[tuple[str, ...], list[str] | None]]:
    """The pair of rules a kind gets: every by-name verb on exactly ``names``, create on its own."""
    return [(("list", "watch", "patch", "delete"), names), (("create",), None)]


@pytest.mark.parametrize(
    ("blueprints", "secrets", "config_maps"),
    [
        # Strings only: Secrets by their names, and no ConfigMap rule at all.
        (["auth/htpasswd", "registry/pull-secret"], ["htpasswd", "pull-secret"], None),
        # A renamed Secret: its source (read at home), its target and its previous target names
        # (its copies); a plain one next to it. Deduplicated and sorted.
        (
            [
                "auth/htpasswd",
                {
                    "source": "registry/pull-secret",
                    "targetName": "regcred",
                    "previousTargetNames": ["old", "pull-secret"],
                },
            ],
            ["htpasswd", "old", "pull-secret", "regcred"],
            None,
        ),
        # A ConfigMap blueprint beside Secrets: each kind's rules name only that kind's names,
        # though a ConfigMap shares its source's name with a Secret blueprint's target.
        (
            [
                {"source": "auth/htpasswd", "targetName": "ca"},
                {
                    "source": "platform/ca",
                    "kind": "ConfigMap",
                    "targetName": "trusted-ca",
                    "previousTargetNames": ["ca-v1"],
                },
            ],
            ["ca", "htpasswd"],
            ["ca", "ca-v1", "trusted-ca"],
        ),
        # ConfigMap blueprints alone: no Secret rule at all.
        ([{"source": "platform/ca", "kind": "ConfigMap"}], None, ["ca"]),
    ],
    ids=["strings", "renamed-secret", "secret-and-configmap", "configmap-only"],
)
def test_rbac_grants_each_kind_only_its_own_blueprints_names(
    blueprints: list[Any], secrets: list[str] | None, config_maps: list[str] | None
) -> None:
    objects = render("t", "ops", values_file="default-values.yaml", blueprints=blueprints)
    rules = _rules_by_resource(objects)
    assert rules.pop("namespaces") == [(("list", "watch"), None)]
    expected = {"secrets": secrets, "configmaps": config_maps}
    assert rules == {resource: _by_name(names) for resource, names in expected.items() if names is not None}
    # The admission policy looks at ConfigMap writes only when ConfigMaps are granted; Secret
    # writes always (with ConfigMap blueprints alone, it refuses this identity every one).
    policy = of_kind(objects, "ValidatingAdmissionPolicy")
    matched = {
        resource
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for resource in rule["resources"]
    }
    assert matched == {"secrets", "events", "leases"} | ({"configmaps"} if config_maps else set())


def test_rbac_of_the_every_option_values_names_both_kinds() -> None:
    rules = _rules_by_resource(render("t", "ops", values_file="all-values.yaml"))
    assert rules["secrets"] == _by_name(["htpasswd", "pull-secret", "regcred"])
    assert rules["configmaps"] == _by_name(["ca-bundle", "trusted-ca"])


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


def _helm_operations(obj: Any) -> set[str]:
    """How Helm wrote ``obj``: "Apply" (server-side apply) or "Update" (client-side)."""
    return {entry.operation for entry in obj.metadata.managed_fields or [] if entry.manager == "helm"}


@pytest.mark.parametrize(
    ("installed_by", "upgraded_by", "upgrade_flags"),
    [(3, 3, ()), (4, 4, ()), (3, 4, ()), (3, 4, ("--server-side=true",))],
)
async def test_helm_installs_upgrades_and_uninstalls_on_the_local_control_plane(
    installed_by: int, upgraded_by: int, upgrade_flags: tuple[str, ...], cluster: Cluster, api: ApiClient
) -> None:
    """Each Helm major installs, upgrades and uninstalls the chart against the real API server;
    (3, 4) is a team moving to Helm 4 with releases Helm 3 installed: Helm 4 keeps client-side
    apply for them unless told `--server-side=true`, which must work too. No kubelet runs here,
    so the Pods stay Pending and nothing waits for them; the objects themselves are checked."""
    release, namespace = f"inst-{secrets.token_hex(3)}", f"inst-{secrets.token_hex(3)}"
    kube = {"kubeconfig": cluster.kubeconfig}
    values = ["-f", str(CHART / "ci" / "default-values.yaml")]
    done = helm(
        "install", release, str(CHART), "--namespace", namespace, "--create-namespace", *values,
        **kube, major=installed_by,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "STATUS: deployed" in done.stdout
    # NOTES.txt tells how to see the copies and the leader.
    assert "kubectl get secrets --all-namespaces --field-selector metadata.name=htpasswd" in done.stdout
    assert "jsonpath='{.spec.holderIdentity}" in done.stdout
    apps = client.AppsV1Api(api)
    (deployment,) = (await apps.list_namespaced_deployment(namespace)).items
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["SECRETS_OPERATOR_PRUNE"] == "false"
    # Helm 4 installs with server-side apply, Helm 3 with client-side (create) requests.
    assert _helm_operations(deployment) == ({"Apply"} if installed_by == 4 else {"Update"})

    upgraded = helm(
        "upgrade", release, str(CHART), "--namespace", namespace, *values, *upgrade_flags,
        "--set", "operator.prune=true", "--set", "replicaCount=3", **kube, major=upgraded_by,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    assert "STATUS: deployed" in upgraded.stdout
    assert "REVISION: 2" in upgraded.stdout
    deployment = await apps.read_namespaced_deployment(deployment.metadata.name, namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["SECRETS_OPERATOR_PRUNE"] == "true"
    assert deployment.spec.replicas == 3
    if upgrade_flags:
        assert "Apply" in _helm_operations(deployment)
    history = helm("history", release, "--namespace", namespace, "-o", "json", **kube, major=upgraded_by)
    assert [(r["revision"], r["status"]) for r in json.loads(history.stdout)] == [
        (1, "superseded"),
        (2, "deployed"),
    ]
    for major in {installed_by, upgraded_by}:  # both read what the other wrote
        status = helm("status", release, "--namespace", namespace, "-o", "json", **kube, major=major)
        assert json.loads(status.stdout)["info"]["status"] == "deployed", status.stderr

    removed = helm("uninstall", release, "--namespace", namespace, **kube, major=upgraded_by)
    assert removed.returncode == 0, removed.stderr
    assert (await apps.list_namespaced_deployment(namespace)).items == []
    # Nothing cluster-scoped is left behind either.
    rbac = client.RbacAuthorizationV1Api(api)
    admission = client.AdmissionregistrationV1Api(api)
    left = [
        *(r.metadata.name for r in (await rbac.list_cluster_role()).items),
        *(r.metadata.name for r in (await rbac.list_cluster_role_binding()).items),
        *(r.metadata.name for r in (await admission.list_validating_admission_policy()).items),
        *(r.metadata.name for r in (await admission.list_validating_admission_policy_binding()).items),
    ]
    assert [name for name in left if release in name] == []
    kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


@pytest.mark.parametrize("major", HELMS)
def test_each_helm_is_the_major_it_claims(major: int) -> None:
    done = helm("version", "--template", "{{.Version}}", major=major)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"v{major}."), done.stdout


def test_helm_template_without_kube_version_needs_one_on_helm_3() -> None:
    """What operations.md tells Helm 3 users: `helm template` checks kubeVersion against Helm's
    built-in default (1.34 for v3.19, 1.37 for v4.3), so Helm 3 needs `--kube-version`."""
    values = ["-f", str(CHART / "ci" / "default-values.yaml")]
    three = helm("template", "t", str(CHART), *values, major=3)
    assert three.returncode != 0
    assert "incompatible with Kubernetes v1.34" in three.stderr, three.stderr
    assert helm("template", "t", str(CHART), *values, "--kube-version", "1.35.0", major=3).returncode == 0
    assert helm("template", "t", str(CHART), *values, major=4).returncode == 0


# ------------------------------------------------------------------------ the RBAC proof

#: The rendered objects that decide what the operator's identity may do: applied exactly.
AUTHORITY_KINDS = {
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
#: Short Lease timings, so that the steady state (several lease durations) fits in a test.
LEASE = {"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 0.5}
LEASE_SECONDS = float(LEASE["leaseDurationSeconds"])
#: The User-Agent the operator's client sends; the audit check selects its requests by it.
OPERATOR_AGENT = "secrets-operator"
#: The User-Agent of the requests the tests send with the operator's token, acting as a thief.
THIEF_AGENT = "stolen-token"
POLICY_MESSAGE = "secrets-operator"  # every refusal of the chart's admission policy names it


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


def deployment_env_value(deployment: Mapping[str, Any], name: str) -> str:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (value,) = [item["value"] for item in container["env"] if item["name"] == name]
    return str(value)


class Release:
    """The chart rendered for one test, with exactly its authority objects applied.

    The operator's replicas get a TokenRequest token for the chart's ServiceAccount and the
    rendered Deployment's environment; the thief gets the same token.
    """

    def __init__(self, scenario: Scenario, cluster: Cluster, tmp_path: Path, namespace: str, **values: Any):
        self.scenario, self.cluster, self.tmp_path, self.namespace = scenario, cluster, tmp_path, namespace
        self.name = scenario.prefix
        self.objects = render(self.name, namespace, **values)
        self.deployment = of_kind(self.objects, "Deployment")
        self.account = of_kind(self.objects, "ServiceAccount")["metadata"]["name"]
        self.user = f"system:serviceaccount:{namespace}:{self.account}"
        self.lease_name = deployment_env_value(self.deployment, "SECRETS_OPERATOR_LEASE_NAME")
        self.kubeconfig = tmp_path / "operator.kubeconfig"
        self.applied: list[dict[str, Any]] = []

    async def apply(self) -> None:
        self.applied = [obj for obj in self.objects if obj["kind"] in AUTHORITY_KINDS]
        assert {obj["kind"] for obj in self.applied} == AUTHORITY_KINDS
        done = kubectl(self.cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all(self.applied))
        assert done.returncode == 0, done.stderr
        await service_account_kubeconfig(
            self.scenario.api, namespace=self.namespace, name=self.account, path=self.kubeconfig
        )
        await self._wait_effective()

    def remove(self) -> None:
        cluster_scoped = [obj for obj in self.applied if "namespace" not in obj["metadata"]]
        kubectl(self.cluster, "delete", "-f", "-", "--wait=false", stdin=yaml.safe_dump_all(cluster_scoped))

    @contextlib.asynccontextmanager
    async def thief(self, agent: str = THIEF_AGENT) -> AsyncIterator[ApiClient]:
        """An API client holding the operator's token, as someone who stole it would."""
        async with await config.new_client_from_config(config_file=str(self.kubeconfig)) as stolen:
            stolen.user_agent = agent
            yield stolen

    async def _wait_effective(self) -> None:
        """Wait until the API server enforces what was just applied (its caches lag a little),
        so that a refusal later on is the chart's doing and a permission is really the chart's."""
        home, name = self.scenario.home, self.scenario.secret_name
        unmarked = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"probe": "x"})
        async with self.thief(f"{THIEF_AGENT}/probe") as stolen:
            core = client.CoreV1Api(stolen)
            leases = client.CoordinationV1Api(stolen)

            async def enforced() -> bool:
                try:
                    await core.list_namespace(limit=1)
                    await core.list_namespaced_secret(home, field_selector=f"metadata.name={name}")
                    await leases.list_namespaced_lease(
                        self.namespace, field_selector=f"metadata.name={self.lease_name}"
                    )
                except ApiException as exc:
                    if exc.status != 403:
                        raise
                    return False  # RBAC not effective yet
                try:  # granted by RBAC, refused by the admission policy once it is in force
                    await core.create_namespaced_secret(self.namespace, unmarked, dry_run="All")
                except ApiException as exc:
                    return exc.status == 403 and POLICY_MESSAGE in str(exc.body)
                return False

            await wait_for(enforced, timeout=30, what="the chart's RBAC and admission policy in force")

    def replica(self, name: str) -> OperatorProcess:
        env = _deployment_env(self.deployment, pod_name=f"{self.name}-{name}", pod_namespace=self.namespace)
        process = OperatorProcess(
            name=f"{self.name}-{name}", kubeconfig=self.kubeconfig, env=env, log_dir=self.tmp_path
        )
        # Two processes on one machine need two ports; everything else is the manifest's.
        process.env["SECRETS_OPERATOR_HTTP_PORT"] = "0"
        process.env.pop("SECRETS_OPERATOR_IDENTITY", None)
        self.scenario.operators.append(process)
        process.start()
        return process

    def requests(self) -> list[dict[str, Any]]:
        """Every request the API server audited for the chart's ServiceAccount, so far."""
        audit_log = self.cluster.audit_log
        assert audit_log is not None, (
            "the RBAC proof reads the API server's audit log: set SECRETS_OPERATOR_TEST_AUDIT_LOG"
        )
        events = []
        for line in audit_log.read_text().splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") == self.user:
                events.append(event)
        return events


def _pod_of(holder: str) -> str:
    """The Pod whose process holds the Lease: an identity is POD_NAME + "_" + a per-process suffix."""
    pod, _, suffix = holder.rpartition("_")
    assert len(suffix) == 8, f"not a per-process identity: {holder!r}"
    return pod


def _refused(event: Mapping[str, Any]) -> bool:
    return int(event.get("responseStatus", {}).get("code", 0)) in (401, 403)


def _describe(event: Mapping[str, Any]) -> str:
    status = event.get("responseStatus", {})
    return f"{event['verb']} {event['requestURI']} -> {status.get('code')} {status.get('message', '')[:200]}"


async def _one_leader(replicas: list[OperatorProcess]) -> OperatorProcess:
    async def one() -> OperatorProcess | None:
        leaders = [replica for replica in replicas if await replica.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    return await wait_for(one, timeout=4 * LEASE_SECONDS, what="exactly one leader")


async def _hold_steadily(
    release: Release,
    replicas: list[OperatorProcess],
    *,
    lease_durations: float,
    late_namespace: str,
) -> str:
    """Watch the Lease for ``lease_durations`` lease durations and return its holder's Pod.

    Throughout: one holder, one of ``replicas``, whose renewTime advances again well within
    every lease duration (a leader that stops renewing freezes it). After two thirds of the
    window a namespace is created, and must get its copy within the window.
    """
    leases = client.CoordinationV1Api(release.scenario.api)
    seconds = lease_durations * LEASE_SECONDS
    holders: set[str] = set()
    renewals, longest_gap, last_gap = 0, 0.0, 0.0
    copied: list[str] = []

    async def observe() -> None:
        nonlocal renewals, longest_gap, last_gap
        started = time.monotonic()
        last_renew, last_change = None, started
        while (now := time.monotonic()) - started < seconds:
            spec = (await leases.read_namespaced_lease(release.lease_name, release.namespace)).spec
            holders.add(_pod_of(spec.holder_identity or ""))
            if spec.renew_time != last_renew:
                renewals += last_renew is not None
                last_renew, last_change = spec.renew_time, now
            longest_gap = max(longest_gap, now - last_change)
            last_gap = now - last_change
            await anyio.sleep(0.1)

    async def late() -> None:
        await anyio.sleep(seconds * 2 / 3)  # the moment of a namespace's creation, not a wait
        namespace = await release.scenario.namespace(late_namespace)
        await release.scenario.wait_copy(namespace, HTPASSWD, timeout=seconds / 3)
        copied.append(namespace)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(observe)
        tasks.start_soon(late)
    names = {replica.name for replica in replicas}
    assert len(holders) == 1, f"holders over the window: {holders}"
    assert holders <= names, f"holders over the window: {holders}, replicas {names}"
    assert longest_gap < LEASE_SECONDS, f"renewTime stood still for {longest_gap:.1f} s"
    # Renewals come every retry period (0.5 s): at least half of them must show.
    retry = float(LEASE["retryPeriodSeconds"])
    assert renewals >= seconds / retry / 2, f"only {renewals} renewals in {seconds:.0f} s"
    assert last_gap < LEASE_SECONDS / 2, f"no renewal in the last {last_gap:.1f} s of the window"
    assert copied
    (holder,) = holders
    leaders = [replica.name for replica in replicas if await replica.is_leader()]
    assert leaders == [holder], f"replicas reporting leadership: {leaders}, Lease holder {holder}"
    return holder


async def test_operator_works_with_exactly_the_chart_rbac_over_the_steady_state(
    scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    """Two replicas under exactly the chart's RBAC and admission policy, for minutes of Lease time.

    Three blueprints: a Secret copied under its own name, a Secret renamed (with a copy left
    under its previous name), and a ConfigMap copied under another name into the namespaces of
    its own glob. Replication, repair, pruning and Events, of both kinds; the Lease renewed by
    one holder for five lease durations; a SIGTERM hand-over after which the new holder keeps
    renewing; an upgrade (a second pair started after the first stopped) over the existing
    Lease; and, over all of it, no request of the operator's refused by the API server, and
    every verb the chart grants used, per resource (its audit log): the Role is exactly what the
    code needs.
    """
    release_namespace = await scenario.namespace("system")
    await scenario.blueprint(HTPASSWD)
    source = f"{scenario.home}/{scenario.secret_name}"
    # The renamed Secret: copies are `renamed_target` now; they were named like it at first, then
    # `renamed_before` (a name RBAC grants for that reason alone).
    renamed_name, renamed_target = f"{scenario.prefix}-reg", f"{scenario.prefix}-regcred"
    renamed_before = f"{scenario.prefix}-reg-v1"
    renamed, token = f"{scenario.home}/{renamed_name}", {"token": "t"}
    await scenario.blueprint(token, name=renamed_name)
    # The ConfigMap blueprint, copied as `cm_target`, only into the t<digit> namespaces.
    cm_name, cm_target, ca = f"{scenario.prefix}-ca", f"{scenario.prefix}-trusted-ca", {"ca.crt": "PEM"}
    cm_source = f"{scenario.home}/{cm_name}"
    await scenario.core.create_namespaced_config_map(scenario.home, _config_map(cm_name, data=ca))
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
    # Copies earlier releases made under the previous names: stale now, and pruned.
    for namespace, stale in ((targets[1], renamed_name), (targets[2], renamed_before)):
        await scenario.core.create_namespaced_secret(
            namespace, _secret(stale, marked_for=renamed, data={"token": b64("t")})
        )
    release = Release(
        scenario, cluster, tmp_path, release_namespace,
        blueprints=[
            source,
            {
                "source": renamed, "targetName": renamed_target,
                "previousTargetNames": [renamed_name, renamed_before],
            },
            {
                "source": cm_source, "kind": "ConfigMap", "targetName": cm_target,
                "includeNamespaces": [f"{scenario.prefix}-t[0-9]"],
            },
        ],
        includeNamespaces=[f"{scenario.prefix}-*"],
        prune=True,  # so that the proof covers the delete the operator sends
        **LEASE,
    )  # fmt: skip
    await release.apply()
    replicas: list[OperatorProcess] = []
    try:
        first = [release.replica("pod-a"), release.replica("pod-b")]
        replicas += first
        for replica in first:
            await replica.wait_ready()

        # Replication, drift repair, and Events on the blueprint (events.k8s.io create).
        for namespace in targets:
            await scenario.wait_copy(namespace, HTPASSWD)
            await scenario.wait_copy(namespace, token, name=renamed_target)
            await _wait_config_map(scenario, namespace, cm_target, ca, source=cm_source)
        # The copies under the previous names are pruned; none is made under them anywhere.
        await scenario.wait_no_copy(targets[1], name=renamed_name)
        await scenario.wait_no_copy(targets[2], name=renamed_before)
        for namespace in targets:
            assert await scenario.copy(namespace, renamed_name) is None
            assert await scenario.copy(namespace, renamed_before) is None
        assert await read_or_none(scenario.core.read_namespaced_config_map(cm_target, twin)) is None
        await scenario.core.delete_namespaced_secret(scenario.secret_name, targets[1])
        await scenario.wait_copy(targets[1], HTPASSWD)
        await scenario.core.patch_namespaced_secret(
            scenario.secret_name, targets[2], {"data": {"auth": b64("x")}}
        )
        await scenario.wait_copy(targets[2], HTPASSWD)
        # The same for the ConfigMap copies (create, patch).
        await scenario.core.delete_namespaced_config_map(cm_target, targets[1])
        await _wait_config_map(scenario, targets[1], cm_target, ca, source=cm_source)
        await scenario.core.patch_namespaced_config_map(cm_target, targets[2], {"data": {"ca.crt": "x"}})
        await _wait_config_map(scenario, targets[2], cm_target, ca, source=cm_source)

        async def conflict_event() -> bool:
            return any(e.reason == "Conflict" for e in await scenario.events())

        await wait_for(conflict_event, timeout=20, what="a Conflict event recorded with the chart's RBAC")
        # Pruning (DELETE): a namespace that opts out loses its copies, of both kinds.
        await scenario.core.patch_namespace(
            targets[0], {"metadata": {"labels": {"secrets-operator.io/exclude": "true"}}}
        )
        await scenario.wait_no_copy(targets[0])
        await scenario.wait_no_copy(targets[0], name=renamed_target)

        async def config_map_pruned() -> bool:
            return await read_or_none(scenario.core.read_namespaced_config_map(cm_target, targets[0])) is None

        await wait_for(config_map_pruned, timeout=20, what="the ConfigMap copy pruned")

        # The steady state: five lease durations of renewals by one holder. Someone else touching
        # the Lease's metadata makes the holder's next renewal meet 409, then re-read it (GET).
        await _one_leader(first)
        await client.CoordinationV1Api(scenario.api).patch_namespaced_lease(
            release.lease_name, release_namespace, {"metadata": {"annotations": {"example.com/seen": "yes"}}}
        )
        holder = await _hold_steadily(release, first, lease_durations=5, late_namespace="late")
        for replica in first:
            await _no_refusals_reported(replica)

        # SIGTERM of the holder: the other takes over and keeps renewing.
        leader = next(replica for replica in first if replica.name == holder)
        standby = next(replica for replica in first if replica is not leader)
        leader.send(signal.SIGTERM)
        assert await leader.wait_exit() == 0
        leases = client.CoordinationV1Api(scenario.api)

        async def taken_over() -> bool:
            lease = await leases.read_namespaced_lease(release.lease_name, release_namespace)
            return _pod_of(lease.spec.holder_identity or "_") == standby.name

        await wait_for(taken_over, timeout=LEASE_SECONDS, what="the standby to take the released Lease")
        await _hold_steadily(release, [standby], lease_durations=2, late_namespace="after-handover")

        # An upgrade: the old pair gone, a new pair over the Lease they leave behind.
        standby.send(signal.SIGTERM)
        assert await standby.wait_exit() == 0
        second = [release.replica("pod-c"), release.replica("pod-d")]
        replicas += second
        for replica in second:
            await replica.wait_ready()
        await _one_leader(second)
        await _hold_steadily(release, second, lease_durations=2, late_namespace="after-upgrade")
        for replica in second:
            await _no_refusals_reported(replica)
            replica.send(signal.SIGTERM)
            assert await replica.wait_exit() == 0  # their release is inside the audited window

        # ...and nothing more: the same token is refused what the operator does not need.
        async with release.thief(f"{THIEF_AGENT}/final") as stolen:
            core = client.CoreV1Api(stolen)
            leases_as_thief = client.CoordinationV1Api(stolen)
            elsewhere = client.V1Lease(
                metadata=client.V1ObjectMeta(name=release.lease_name), spec=client.V1LeaseSpec()
            )
            for attempt in (
                core.read_namespaced_secret(unrelated.metadata.name, targets[0]),
                core.list_secret_for_all_namespaces(),
                core.delete_namespaced_secret(unrelated.metadata.name, targets[0]),
                core.list_config_map_for_all_namespaces(),
                core.read_namespaced_config_map(cm_target, targets[1]),  # by name too: never GET
                leases_as_thief.create_namespaced_lease("default", elsewhere),
                leases_as_thief.read_namespaced_lease("kube-controller-manager", "kube-system"),
            ):
                with pytest.raises(ApiException) as refused_request:
                    await attempt
                assert refused_request.value.status == 403

        # Over the whole scenario, the API server refused the operator nothing. The thief's
        # refusals just above must be in the same log: proof that the check can see one.
        async def audited() -> list[dict[str, Any]] | None:
            events = release.requests()
            thief = [e for e in events if e.get("userAgent") == f"{THIEF_AGENT}/final" and _refused(e)]
            return events if len(thief) >= 7 else None

        events = await wait_for(audited, timeout=10, what="the thief's refusals in the audit log")
        operator = [e for e in events if e.get("userAgent", "").startswith(OPERATOR_AGENT)]
        lease_writes = [e for e in operator if "/leases" in e["requestURI"] and e["verb"] == "patch"]
        assert len(lease_writes) >= 40, f"only {len(lease_writes)} Lease renewals audited"
        refusals = [_describe(e) for e in operator if _refused(e)]
        assert not refusals, "the API server refused the operator:\n" + "\n".join(refusals[:20])
        # ...and nothing granted goes unused: the Role is exactly the requests the code sends.
        assert _verbs_used(operator) == _verbs_granted(release.objects)
    finally:
        for replica in replicas:
            replica.stop()
        release.remove()


async def _no_refusals_reported(replica: OperatorProcess) -> None:
    """The replica itself saw no 401 (the audit log cannot show one: it has no user) and no 403."""
    metrics = await replica.metrics()
    for code in ("401", "403"):
        assert metrics.value("secrets_operator_api_errors_total", code=code) == 0, replica.log[-3000:]


def _verbs_used(events: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    used: dict[tuple[str, str], set[str]] = {}
    for event in events:
        ref = event.get("objectRef", {})
        used.setdefault((ref.get("apiGroup", ""), ref["resource"]), set()).add(event["verb"])
    return used


def _verbs_granted(objects: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for role in (obj for obj in objects if obj["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


async def _forbidden(attempt: Awaitable[Any], because: str) -> None:
    """``attempt`` is refused with 403, and the refusal says ``because`` (RBAC's or the policy's)."""
    with pytest.raises(ApiException) as caught:
        await attempt
    assert caught.value.status == 403, caught.value.body
    assert because in str(caught.value.body), caught.value.body


def _secret(name: str, *, marked_for: str = "", **fields: Any) -> client.V1Secret:
    labels, annotations = dict(fields.pop("labels", {})), dict(fields.pop("annotations", {}))
    if marked_for:
        labels["app.kubernetes.io/managed-by"] = "secrets-operator"
        annotations["secrets-operator.io/source"] = marked_for
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations), **fields
    )


def _config_map(name: str, *, marked_for: str = "", **fields: Any) -> client.V1ConfigMap:
    labels, annotations = dict(fields.pop("labels", {})), dict(fields.pop("annotations", {}))
    if marked_for:
        labels["app.kubernetes.io/managed-by"] = "secrets-operator"
        annotations["secrets-operator.io/source"] = marked_for
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations), **fields
    )


async def _wait_config_map(
    scenario: Scenario,
    namespace: str,
    name: str,
    data: Mapping[str, str],
    *,
    source: str,
    timeout: float = 20,
) -> client.V1ConfigMap:
    """Wait until the ConfigMap copy ``name`` in ``namespace`` holds exactly ``data`` and the marks."""

    async def exact() -> client.V1ConfigMap | None:
        found = await read_or_none(scenario.core.read_namespaced_config_map(name, namespace))
        if found is None or (found.data or {}) != dict(data):
            return None
        labels, annotations = found.metadata.labels or {}, found.metadata.annotations or {}
        if labels.get(MANAGED_BY) != "secrets-operator" or annotations.get(SOURCE) != source:
            return None
        return found

    return await wait_for(exact, timeout=timeout, what=f"ConfigMap copy {namespace}/{name}")


@pytest.mark.parametrize("conflict_policy", ["skip", "adopt"])
async def test_a_stolen_operator_token_can_neither_mint_tokens_nor_touch_unmanaged_secrets(
    conflict_policy: str, scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    """Act with the chart's ServiceAccount token as a thief would, under the chart's objects.

    RBAC alone grants Secret and ConfigMap `create` everywhere and `list`/`watch`/`patch`/`delete`
    on the blueprints' names (sources, targets, previous targets) everywhere; the chart's
    admission policy must refuse everything the operator never does, and allow what it does
    (shown with dry runs, so the fixtures stay intact). Four blueprints: a Secret copied under
    its own name, a Secret renamed (its copies were named like it before), a ConfigMap copied
    under another name, and one copied under its own, at home in another namespace.
    """
    release_namespace = await scenario.namespace("system")
    await scenario.blueprint(HTPASSWD)
    source, name = f"{scenario.home}/{scenario.secret_name}", scenario.secret_name
    itself = "never writes a blueprint itself"  # the policy's refusal of a write to a blueprint
    # The renamed Secret: copies are now `renamed_target`; they used to be named like the source.
    renamed_name, renamed_target = f"{scenario.prefix}-reg", f"{scenario.prefix}-regcred"
    renamed = f"{scenario.home}/{renamed_name}"
    await scenario.blueprint({"token": "t"}, name=renamed_name)
    # The ConfigMap, copied as `cm_target`.
    cm_name, cm_target = f"{scenario.prefix}-ca", f"{scenario.prefix}-trusted-ca"
    cm_source = f"{scenario.home}/{cm_name}"
    # A second ConfigMap, at home in another namespace, copied under its own name.
    plain_home, plain_cm = await scenario.namespace("cm-home"), f"{scenario.prefix}-settings"
    plain_source = f"{plain_home}/{plain_cm}"
    victim = await scenario.namespace("victim")
    twin = await scenario.namespace("twin")
    managed = await scenario.namespace("managed")
    admin = scenario.core
    await admin.create_namespaced_config_map(scenario.home, _config_map(cm_name, data={"ca.crt": "PEM"}))
    await admin.create_namespaced_config_map(plain_home, _config_map(plain_cm, data={"k": "v"}))
    await admin.create_namespaced_secret(twin, _secret(name, string_data={"x": "theirs"}))
    await admin.create_namespaced_secret(managed, _secret(name, marked_for=source, data={"auth": b64("a")}))
    # A copy of the renamed blueprint left under its previous name, and a managed ConfigMap copy.
    await admin.create_namespaced_secret(
        managed, _secret(renamed_name, marked_for=renamed, data={"token": b64("t")})
    )
    await admin.create_namespaced_config_map(
        managed, _config_map(cm_target, marked_for=cm_source, data={"ca.crt": "old"})
    )
    await admin.create_namespaced_config_map(twin, _config_map(cm_target, data={"ca.crt": "theirs"}))
    await admin.create_namespaced_secret(twin, _secret(renamed_name, string_data={"x": "theirs"}))
    release = Release(
        scenario, cluster, tmp_path, release_namespace,
        blueprints=[
            source,
            {"source": renamed, "targetName": renamed_target, "previousTargetNames": [renamed_name]},
            {"source": cm_source, "kind": "ConfigMap", "targetName": cm_target},
            {"source": plain_source, "kind": "ConfigMap"},
        ],
        includeNamespaces=[f"{scenario.prefix}-*"], conflictPolicy=conflict_policy,
    )  # fmt: skip
    await release.apply()
    try:
        async with release.thief() as stolen:
            core = client.CoreV1Api(stolen)

            # Minting another account's token: a service-account-token Secret with a blueprint's
            # name, for the namespace's `default` account (marks or not).
            token_annotations = {"kubernetes.io/service-account.name": "default"}
            for marks in ("", source):
                await _forbidden(
                    core.create_namespaced_secret(
                        victim,
                        _secret(
                            name,
                            marked_for=marks,
                            type="kubernetes.io/service-account-token",
                            annotations=token_annotations,
                        ),
                    ),
                    "service-account",
                )
            assert await scenario.copy(victim) is None
            # Creating anything but a marked copy named after a blueprint.
            await _forbidden(core.create_namespaced_secret(victim, _secret(name, data={})), "ownership marks")
            await _forbidden(
                core.create_namespaced_secret(victim, _secret("other", marked_for=source)), "named after"
            )
            await _forbidden(
                core.create_namespaced_secret(victim, _secret(name, marked_for=f"{victim}/{name}")),
                "ownership marks",
            )
            # A managed copy may not gain service-account annotations nor lose its marks.
            await _forbidden(
                core.patch_namespaced_secret(name, managed, {"metadata": {"annotations": token_annotations}}),
                "service-account",
            )
            unmark = {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}}
            await _forbidden(core.patch_namespaced_secret(name, managed, unmark), "ownership marks")
            # Another kind of self-filling credential: a bootstrap token.
            await _forbidden(
                core.create_namespaced_secret(
                    victim, _secret(name, marked_for=source, type="bootstrap.kubernetes.io/token")
                ),
                "bootstrap-token",
            )
            # Finalizers or owners: a copy that pins its namespace in Terminating, or is collected
            # with something else.
            hold = {"metadata": {"finalizers": ["example.com/hold"]}}
            await _forbidden(
                core.create_namespaced_secret(
                    victim,
                    client.V1Secret(
                        metadata=client.V1ObjectMeta(
                            name=name,
                            finalizers=["example.com/hold"],
                            labels={"app.kubernetes.io/managed-by": "secrets-operator"},
                            annotations={"secrets-operator.io/source": source},
                        )
                    ),
                ),
                "finalizers",
            )
            await _forbidden(core.patch_namespaced_secret(name, managed, hold), "finalizers")
            owner = {
                "metadata": {
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Namespace", "name": managed, "uid": "0" * 8}
                    ]
                }
            }
            await _forbidden(core.patch_namespaced_secret(name, managed, owner), "owner references")
            # Events only in the blueprints' namespaces; Leases only its own.
            event = {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "forged"},
                "eventTime": "2026-01-01T00:00:00.000000Z",
                "reportingController": "x",
                "reportingInstance": "x",
                "action": "x",
                "reason": "x",
                "type": "Normal",
                "regarding": {"kind": "Secret", "namespace": victim, "name": name},
            }
            await _forbidden(
                client.EventsV1Api(stolen).create_namespaced_event(victim, raw(event)), "Events only"
            )
            lease = client.V1Lease(metadata=client.V1ObjectMeta(name="another"), spec=client.V1LeaseSpec())
            await _forbidden(
                client.CoordinationV1Api(stolen).create_namespaced_lease(release_namespace, lease),
                "own Lease",
            )
            # The blueprint itself is never written.
            await _forbidden(core.delete_namespaced_secret(name, scenario.home), itself)
            await _forbidden(
                core.patch_namespaced_secret(name, scenario.home, {"data": {"auth": b64("y")}}), itself
            )
            # The unmanaged twin: left as it is with skip; with adopt, only made into a marked copy
            # in place. Never deleted, whatever the policy (adopt never replaces a twin).
            theirs = {"data": {"x": b64("mine")}}
            adopted = {
                "metadata": {
                    "labels": {"app.kubernetes.io/managed-by": "secrets-operator"},
                    "annotations": {"secrets-operator.io/source": source},
                }
            }
            await _forbidden(core.patch_namespaced_secret(name, twin, theirs), "ownership marks")
            await _forbidden(
                core.delete_namespaced_secret(name, twin), "only delete Secrets and ConfigMaps it"
            )
            if conflict_policy == "skip":
                await _forbidden(
                    core.patch_namespaced_secret(name, twin, adopted), "only change Secrets and ConfigMaps it"
                )
            else:
                await core.patch_namespaced_secret(name, twin, adopted, dry_run="All")

            # The renamed Secret: copies are created under its target name only. Its source's
            # name, which RBAC grants so that the blueprint can be read, is a name its copies had
            # before the rename: such a copy may be changed or cleaned up, never created anew.
            await _forbidden(
                core.create_namespaced_secret(victim, _secret(renamed_name, marked_for=renamed)),
                "current target name",
            )
            # A mark for one blueprint does not cover another's copy names.
            await _forbidden(
                core.create_namespaced_secret(victim, _secret(renamed_target, marked_for=source)),
                "ownership marks",
            )
            await _forbidden(
                core.create_namespaced_secret(victim, _secret(name, marked_for=renamed)), "ownership marks"
            )
            # ...nor may a managed copy be re-pointed at another blueprint (or one of another kind).
            for other in (renamed, cm_source):
                repoint = {"metadata": {"annotations": {"secrets-operator.io/source": other}}}
                await _forbidden(core.patch_namespaced_secret(name, managed, repoint), "ownership marks")
            await _forbidden(core.delete_namespaced_secret(renamed_name, scenario.home), itself)
            # Nor is an unmanaged Secret under a previous name adopted, whatever the policy.
            renamed_adopted = {
                "metadata": {
                    "labels": {"app.kubernetes.io/managed-by": "secrets-operator"},
                    "annotations": {"secrets-operator.io/source": renamed},
                }
            }
            await _forbidden(
                core.patch_namespaced_secret(renamed_name, twin, renamed_adopted), "current target name"
            )

            # The ConfigMap blueprint: the same rules, for its kind and its copies' name.
            await _forbidden(
                core.create_namespaced_config_map(victim, _config_map("other", marked_for=cm_source)),
                "named after",
            )
            await _forbidden(  # its source's name is no copy's name
                core.create_namespaced_config_map(victim, _config_map(cm_name, marked_for=cm_source)),
                "named after",
            )
            await _forbidden(
                core.create_namespaced_config_map(victim, _config_map(cm_target)), "ownership marks"
            )
            for wrong in (source, f"{victim}/{cm_name}", f"{scenario.home}/{cm_target}"):
                await _forbidden(
                    core.create_namespaced_config_map(victim, _config_map(cm_target, marked_for=wrong)),
                    "ownership marks",
                )
            # Kinds do not mix: a Secret under the ConfigMap's copy name, a ConfigMap under a
            # Secret's, each marked for the blueprint of the other kind.
            await _forbidden(
                core.create_namespaced_secret(victim, _secret(cm_target, marked_for=cm_source)), "named after"
            )
            await _forbidden(
                core.create_namespaced_config_map(victim, _config_map(name, marked_for=source)), "named after"
            )
            # The ConfigMap blueprints themselves are never written: the renamed one's name is no
            # copy's name at all; the other's is, and it is refused as a blueprint.
            await _forbidden(core.delete_namespaced_config_map(cm_name, scenario.home), "named after")
            await _forbidden(
                core.patch_namespaced_config_map(cm_name, scenario.home, {"data": {"ca.crt": "forged"}}),
                "named after",
            )
            await _forbidden(core.delete_namespaced_config_map(plain_cm, plain_home), itself)
            await _forbidden(
                core.patch_namespaced_config_map(plain_cm, plain_home, {"data": {"k": "forged"}}), itself
            )
            # Its managed copy keeps its marks (for this blueprint) and gains no finalizer.
            await _forbidden(core.patch_namespaced_config_map(cm_target, managed, unmark), "ownership marks")
            repoint = {"metadata": {"annotations": {"secrets-operator.io/source": source}}}
            await _forbidden(core.patch_namespaced_config_map(cm_target, managed, repoint), "ownership marks")
            await _forbidden(core.patch_namespaced_config_map(cm_target, managed, hold), "finalizers")
            # The unmanaged ConfigMap twin: never deleted; overwritten only when adopted.
            await _forbidden(
                core.patch_namespaced_config_map(cm_target, twin, {"data": {"ca.crt": "mine"}}),
                "ownership marks",
            )
            await _forbidden(
                core.delete_namespaced_config_map(cm_target, twin), "only delete Secrets and ConfigMaps it"
            )
            cm_adopted = {
                "metadata": {
                    "labels": {"app.kubernetes.io/managed-by": "secrets-operator"},
                    "annotations": {"secrets-operator.io/source": cm_source},
                }
            }
            if conflict_policy == "skip":
                await _forbidden(
                    core.patch_namespaced_config_map(cm_target, twin, cm_adopted),
                    "only change Secrets and ConfigMaps it",
                )
            else:
                await core.patch_namespaced_config_map(cm_target, twin, cm_adopted, dry_run="All")

            # What the operator does is allowed: create, change and delete its own copies, of
            # each kind, under each blueprint's target name; change and delete (prune) copies
            # left under a previous name.
            await core.create_namespaced_secret(
                victim, _secret(name, marked_for=source, data={"auth": b64("a")}), dry_run="All"
            )
            await core.patch_namespaced_secret(name, managed, {"data": {"auth": b64("b")}}, dry_run="All")
            await core.delete_namespaced_secret(name, managed, dry_run="All")
            await core.create_namespaced_secret(
                victim, _secret(renamed_target, marked_for=renamed, data={"token": b64("t")}), dry_run="All"
            )
            await core.patch_namespaced_secret(
                renamed_name, managed, {"data": {"token": b64("u")}}, dry_run="All"
            )
            await core.delete_namespaced_secret(renamed_name, managed, dry_run="All")
            await core.create_namespaced_config_map(
                victim, _config_map(cm_target, marked_for=cm_source, data={"ca.crt": "PEM"}), dry_run="All"
            )
            await core.patch_namespaced_config_map(
                cm_target, managed, {"data": {"ca.crt": "new"}}, dry_run="All"
            )
            await core.delete_namespaced_config_map(cm_target, managed, dry_run="All")
            # every blueprint's home, of either kind: its own Events regarding the blueprint there
            for kind, home, blueprint in (
                ("Secret", scenario.home, name),
                ("ConfigMap", plain_home, plain_cm),
            ):
                allowed = {
                    **event,
                    "metadata": {"name": "allowed", "namespace": home},
                    "reportingController": REPORTING_CONTROLLER,
                    "regarding": {"kind": kind, "namespace": home, "name": blueprint},
                }
                await client.EventsV1Api(stolen).create_namespaced_event(home, raw(allowed), dry_run="All")
            own = client.V1Lease(
                metadata=client.V1ObjectMeta(name=release.lease_name), spec=client.V1LeaseSpec()
            )
            await client.CoordinationV1Api(stolen).create_namespaced_lease(
                release_namespace, own, dry_run="All"
            )

        # The twins and the managed copies are exactly as the admin left them.
        assert (await scenario.copy(twin)).data == {"x": b64("theirs")}  # type: ignore[union-attr]
        assert (await scenario.copy(managed)).data == {"auth": b64("a")}  # type: ignore[union-attr]
        assert (await scenario.copy(managed, renamed_name)).data == {"token": b64("t")}  # type: ignore[union-attr]
        assert (await scenario.copy(twin, renamed_name)).data == {"x": b64("theirs")}  # type: ignore[union-attr]
        assert (await admin.read_namespaced_config_map(cm_target, twin)).data == {"ca.crt": "theirs"}
        assert (await admin.read_namespaced_config_map(cm_target, managed)).data == {"ca.crt": "old"}
        assert await read_or_none(admin.read_namespaced_config_map(cm_target, victim)) is None
        assert await scenario.copy(victim, renamed_target) is None

        # The operator itself works under the policy, adopting the twins when told to.
        replica = release.replica("pod-a")
        await replica.wait_ready()
        await scenario.wait_copy(managed, HTPASSWD)
        await scenario.wait_copy(victim, HTPASSWD)
        await scenario.wait_copy(victim, {"token": "t"}, name=renamed_target)
        await _wait_config_map(scenario, victim, cm_target, {"ca.crt": "PEM"}, source=cm_source)
        await _wait_config_map(scenario, managed, cm_target, {"ca.crt": "PEM"}, source=cm_source)
        await _wait_config_map(scenario, victim, plain_cm, {"k": "v"}, source=plain_source)
        if conflict_policy == "adopt":
            await scenario.wait_copy(twin, HTPASSWD)
            await _wait_config_map(scenario, twin, cm_target, {"ca.crt": "PEM"}, source=cm_source)
        else:
            assert (await scenario.copy(twin)).data == {"x": b64("theirs")}  # type: ignore[union-attr]
            assert (await admin.read_namespaced_config_map(cm_target, twin)).data == {"ca.crt": "theirs"}
        assert (await replica.metrics()).value("secrets_operator_api_errors_total", code="403") == 0
    finally:
        release.remove()


@pytest.mark.parametrize("major", [3, 4])
async def test_a_stolen_operator_token_can_neither_forge_events_nor_pin_its_lease(
    major: int, scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    """Events and the Lease, as a thief with the chart's ServiceAccount token, on Helm 3 and 4.

    An Event is admitted only as the operator records them: in a blueprint's namespace, with the
    operator's own reportingController, regarding one of its blueprints (kind, namespace and
    name). The operator's Lease may be renewed, but may not gain (or lose) finalizers or owners:
    a finalizer would pin the release namespace in Terminating.
    """
    release_namespace = await scenario.namespace("system")
    await scenario.blueprint(HTPASSWD)
    name, cm_name = scenario.secret_name, f"{scenario.prefix}-ca"
    await scenario.core.create_namespaced_config_map(
        scenario.home, _config_map(cm_name, data={"ca.crt": "PEM"})
    )
    release = Release(
        scenario, cluster, tmp_path, release_namespace, major=major,
        blueprints=[f"{scenario.home}/{name}", {"source": f"{scenario.home}/{cm_name}", "kind": "ConfigMap"}],
        includeNamespaces=[f"{scenario.prefix}-*"],
    )  # fmt: skip
    await release.apply()
    lease_spec = {"holderIdentity": "someone", "leaseDurationSeconds": 4}
    await client.CoordinationV1Api(scenario.api).create_namespaced_lease(
        release_namespace, raw({"metadata": {"name": release.lease_name}, "spec": lease_spec})
    )
    try:
        async with release.thief() as stolen:
            events, leases = client.EventsV1Api(stolen), client.CoordinationV1Api(stolen)

            def event(regarding: Mapping[str, str], controller: str = REPORTING_CONTROLLER) -> Any:
                return raw(
                    {
                        "apiVersion": "events.k8s.io/v1",
                        "kind": "Event",
                        "metadata": {"name": "forged", "namespace": scenario.home},
                        "eventTime": "2026-01-01T00:00:00.000000Z",
                        "reportingController": controller,
                        "reportingInstance": "x",
                        "action": "Replicate",
                        "reason": "Conflict",
                        "type": "Warning",
                        "regarding": {"apiVersion": "v1", **regarding},
                    }
                )

            home = scenario.home
            blueprint = {"kind": "Secret", "namespace": home, "name": name}
            # Posing as another controller, about the operator's own blueprint.
            for controller in ("kubelet", "secrets-operator.io/other"):
                await _forbidden(
                    events.create_namespaced_event(home, event(blueprint, controller)),
                    "own reportingController",
                )
            # As the operator, about anything but a blueprint: another object in the home
            # namespace, a blueprint's name under the other kind, a blueprint's name elsewhere.
            for regarding in (
                {"kind": "Secret", "namespace": home, "name": "other"},
                {"kind": "ConfigMap", "namespace": home, "name": name},
                {"kind": "Secret", "namespace": home, "name": cm_name},
                {"kind": "Secret", "namespace": release_namespace, "name": name},
                {"kind": "Pod", "namespace": home, "name": name},
            ):
                await _forbidden(
                    events.create_namespaced_event(home, event(regarding)), "regarding one of its"
                )
            # What the operator records is allowed: about each blueprint, of either kind.
            for regarding in (blueprint, {"kind": "ConfigMap", "namespace": home, "name": cm_name}):
                await events.create_namespaced_event(home, event(regarding), dry_run="All")

            # The Lease: renewed, never pinned nor owned.
            hold = {"metadata": {"finalizers": ["example.com/hold"]}}
            await _forbidden(
                leases.patch_namespaced_lease(release.lease_name, release_namespace, hold),
                "Lease's finalizers",
            )
            owner = {
                "metadata": {
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Namespace", "name": home, "uid": "0" * 8}
                    ]
                }
            }
            await _forbidden(
                leases.patch_namespaced_lease(release.lease_name, release_namespace, owner),
                "owner references",
            )
            renew = {"spec": {"holderIdentity": "thief", "renewTime": "2026-01-01T00:00:00.000000Z"}}
            await leases.patch_namespaced_lease(release.lease_name, release_namespace, renew, dry_run="All")
        found = await client.CoordinationV1Api(scenario.api).read_namespaced_lease(
            release.lease_name, release_namespace
        )
        assert found.spec.holder_identity == "someone"
        assert not found.metadata.finalizers
        assert not found.metadata.owner_references
    finally:
        release.remove()


@pytest.mark.parametrize("major", [3, 4])
async def test_a_stolen_operator_token_writes_copies_only_where_the_configuration_can_target(
    major: int, scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    """The fixed part of namespace selection, as a thief with the chart's token, on Helm 3 and 4.

    A marked copy is created or updated only in a namespace its blueprint's globs can select:
    never its home, not one its excludeNamespaces match, only one its includeNamespaces match;
    a blueprint's own globs replace the global ones (even an empty exclude list). Deletes stay
    admitted everywhere: a copy in a namespace that is no longer a target is pruned.
    """
    release_namespace = await scenario.namespace("system")
    await scenario.blueprint(HTPASSWD)
    name, cm_name, prefix = scenario.secret_name, f"{scenario.prefix}-ca", scenario.prefix
    source, cm_source = f"{scenario.home}/{name}", f"{scenario.home}/{cm_name}"
    renamed = f"{scenario.home}/{prefix}-reg"  # its copies are named {prefix}-regcred
    await scenario.core.create_namespaced_config_map(
        scenario.home, _config_map(cm_name, data={"ca.crt": "PEM"})
    )
    team, team_ab = await scenario.namespace("team-a"), await scenario.namespace("team-ab")
    ex, q7, qa = (
        await scenario.namespace("ex-1"),
        await scenario.namespace("q7"),
        await scenario.namespace("qa"),
    )
    release = Release(
        scenario, cluster, tmp_path, release_namespace, major=major,
        blueprints=[
            source,
            {"source": renamed, "targetName": f"{prefix}-regcred"},
            {"source": cm_source, "kind": "ConfigMap",
             "includeNamespaces": [f"{prefix}-team-?", f"{prefix}-ex-*"], "excludeNamespaces": []},
        ],
        includeNamespaces=[f"{prefix}-*"],
        excludeNamespaces=["kube-*", f" {prefix}-ex-* , {prefix}-q[0-9]"],
    )  # fmt: skip
    await release.apply()
    # A copy already in an excluded namespace (the configuration changed since it was written),
    # still carrying the data digest earlier versions wrote.
    legacy = {"annotations": {"secrets-operator.io/source-hash": "0" * 64}}
    await scenario.core.create_namespaced_secret(
        ex, _secret(name, marked_for=source, data={"auth": b64("a")}, **legacy)
    )
    try:
        async with release.thief() as stolen:
            core = client.CoreV1Api(stolen)

            def secret() -> client.V1Secret:
                return _secret(name, marked_for=source, data={"auth": b64("a")})

            def config_map() -> client.V1ConfigMap:
                return _config_map(cm_name, marked_for=cm_source, data={"ca.crt": "PEM"})

            # The Secret blueprint, global globs: not at home, not excluded (a glob of the
            # comma-separated value, a bracket set), not outside includeNamespaces.
            # At home, a copy under the blueprint's own name would be the blueprint itself (refused
            # as such); under another target name it is a copy the operator never makes.
            await _forbidden(
                core.create_namespaced_secret(scenario.home, secret(), dry_run="All"), "blueprint itself"
            )
            renamed_copy = _secret(f"{prefix}-regcred", marked_for=renamed, data={"token": b64("t")})
            await _forbidden(
                core.create_namespaced_secret(scenario.home, renamed_copy, dry_run="All"), "home namespace"
            )
            await core.create_namespaced_secret(team, renamed_copy, dry_run="All")
            await _forbidden(
                core.create_namespaced_secret(q7, secret(), dry_run="All"), "excludeNamespaces match"
            )
            await _forbidden(
                core.create_namespaced_secret(ex, secret(), dry_run="All"), "excludeNamespaces match"
            )
            await _forbidden(
                core.create_namespaced_secret("default", secret(), dry_run="All"), "includeNamespaces match"
            )
            # ...nor kept up to date there: an update of a copy in an excluded namespace.
            await _forbidden(
                core.patch_namespaced_secret(name, ex, {"data": {"auth": b64("b")}}, dry_run="All"),
                "excludeNamespaces match",
            )
            for allowed in (team, team_ab, qa):
                await core.create_namespaced_secret(allowed, secret(), dry_run="All")
            # ...but there it may lose the legacy digest (as the operator removes it from every
            # copy of its own), as long as nothing else changes, and it may be pruned.
            drop = {"metadata": {"annotations": {"secrets-operator.io/source-hash": None}}}
            await core.patch_namespaced_secret(name, ex, drop, dry_run="All")
            # Anything more is refused there: changed data, or an annotation gained on the way.
            gained = {"secrets-operator.io/source-hash": None, "secrets-operator.io/copied-labels": "x"}
            for more in ({**drop, "data": {"auth": b64("b")}}, {"metadata": {"annotations": gained}}):
                await _forbidden(
                    core.patch_namespaced_secret(name, ex, more, dry_run="All"), "excludeNamespaces"
                )
            await core.delete_namespaced_secret(name, ex, dry_run="All")  # pruned where excluded
            # The ConfigMap blueprint, its own globs: "?" is one character, and its empty
            # excludeNamespaces replaces the global list.
            await _forbidden(
                core.create_namespaced_config_map(team_ab, config_map(), dry_run="All"),
                "includeNamespaces match",
            )
            await _forbidden(
                core.create_namespaced_config_map(qa, config_map(), dry_run="All"), "includeNamespaces match"
            )
            for allowed in (team, ex):
                await core.create_namespaced_config_map(allowed, config_map(), dry_run="All")
    finally:
        release.remove()


@pytest.mark.parametrize("major", [3, 4])
async def test_a_stolen_operator_token_adds_to_a_copy_only_its_marks_and_copied_metadata(
    major: int, scenario: Scenario, cluster: Cluster, tmp_path: Path
) -> None:
    """Labels and annotations, as a thief with the chart's token, on Helm 3 and 4.

    A key the operator's identity adds to a copy must be one of its marks or a key copyMetadata
    copies (never one of the keys it never copies, such as Helm's); a key already on the copy
    (a tenant's label) stays, and may even change, since it is not the operator's to police.
    """
    release_namespace = await scenario.namespace("system")
    copied = {"team.example.com/tier": "gold"}
    await scenario.blueprint(
        HTPASSWD, labels={**copied, "meta.helm.sh/release-name": "r"}, annotations=copied
    )
    name, cm_name = scenario.secret_name, f"{scenario.prefix}-ca"
    source, cm_source = f"{scenario.home}/{name}", f"{scenario.home}/{cm_name}"
    await scenario.core.create_namespaced_config_map(scenario.home, _config_map(cm_name, data={"k": "v"}))
    target, managed = await scenario.namespace("target"), await scenario.namespace("managed")
    release = Release(
        scenario, cluster, tmp_path, release_namespace, major=major,
        blueprints=[source, {"source": cm_source, "kind": "ConfigMap"}],
        includeNamespaces=[f"{scenario.prefix}-*"], copyMetadata=["team.example.com/*", "*.helm.sh/*"],
    )  # fmt: skip
    await release.apply()
    tenant = {"labels": {"tenant.example.org/owner": "t"}, "annotations": {"tenant.example.org/note": "n"}}
    await scenario.core.create_namespaced_secret(
        managed, _secret(name, marked_for=source, data={"auth": b64("a")}, **tenant)
    )
    await scenario.core.create_namespaced_config_map(
        managed, _config_map(cm_name, marked_for=cm_source, data={"k": "v"}, **tenant)
    )
    try:
        async with release.thief() as stolen:
            core = client.CoreV1Api(stolen)

            def secret(**metadata: Any) -> client.V1Secret:
                return _secret(name, marked_for=source, data={"auth": b64("a")}, **metadata)

            labels, annotations = "its own labels", "its own annotations"
            # Created with keys the operator never writes: foreign ones, or Helm's (which
            # copyMetadata's "*.helm.sh/*" matches, but the operator never copies).
            for key in ("evil.example.com/x", "meta.helm.sh/release-name"):
                await _forbidden(
                    core.create_namespaced_secret(target, secret(labels={key: "v"}), dry_run="All"), labels
                )
                await _forbidden(
                    core.create_namespaced_secret(target, secret(annotations={key: "v"}), dry_run="All"),
                    annotations,
                )
                await _forbidden(
                    core.create_namespaced_config_map(
                        target, _config_map(cm_name, marked_for=cm_source, labels={key: "v"}), dry_run="All"
                    ),
                    labels,
                )
            # Added to a managed copy by an update.
            for field, because in (("labels", labels), ("annotations", annotations)):
                gain = {"metadata": {field: {"evil.example.com/x": "v"}}}
                await _forbidden(core.patch_namespaced_secret(name, managed, gain, dry_run="All"), because)
                await _forbidden(
                    core.patch_namespaced_config_map(cm_name, managed, gain, dry_run="All"), because
                )
            # What the operator writes is admitted: its marks and bookkeeping, copied keys.
            await core.create_namespaced_secret(
                target,
                secret(
                    labels=copied,
                    annotations={
                        **copied,
                        "secrets-operator.io/copied-labels": "team.example.com/tier",
                        "secrets-operator.io/copied-annotations": "team.example.com/tier",
                    },
                ),
                dry_run="All",
            )
            repair = {"metadata": {"labels": copied}, "data": {"auth": b64("b")}}
            await core.patch_namespaced_secret(name, managed, repair, dry_run="All")
            # A tenant's keys stay on a repaired copy, changed or not: not the operator's business.
            changed = {"metadata": {"labels": {"tenant.example.org/owner": "u"}}, "data": {"k": "w"}}
            await core.patch_namespaced_config_map(cm_name, managed, changed, dry_run="All")

        # The operator itself, under the policy: copies gain the copied keys (not Helm's), and
        # the repaired copy keeps its tenant's label.
        replica = release.replica("pod-a")
        await replica.wait_ready()
        await scenario.wait_copy(target, HTPASSWD)
        repaired = await scenario.wait_copy(managed, HTPASSWD)

        async def labelled() -> bool:
            found = await scenario.copy(target)
            return found is not None and copied.items() <= (found.metadata.labels or {}).items()

        await wait_for(labelled, timeout=20, what="the copied label on the new copy")
        labelled_copy = await scenario.copy(target)
        assert labelled_copy is not None
        assert "meta.helm.sh/release-name" not in (labelled_copy.metadata.labels or {})
        assert (repaired.metadata.labels or {}).get("tenant.example.org/owner") == "t"
        assert (await replica.metrics()).value("secrets_operator_api_errors_total", code="403") == 0
    finally:
        release.remove()


@pytest.mark.parametrize(
    ("globs", "names"),
    [
        (["team-*"], ["team-", "team-a", "team", "xteam-a", "team-a.b"]),
        (["t?m", "a.b"], ["tam", "tm", "taam", "a.b", "axb"]),
        (["q[0-9]", "r[!a-c]"], ["q7", "qa", "q", "q77", "rd", "ra", "r"]),
        (
            ["x[]]y", "[!]]z", "[]", "[!]", "[^x]", "[\\]"],
            ["x]y", "xy", "az", "]z", "[]", "[!]", "^", "x", "\\", "a"],
        ),
    ],
)
def test_the_policy_renders_namespace_globs_as_the_operator_matches_them(
    globs: list[str], names: list[str]
) -> None:
    """Each glob list, rendered to the policy's regular expression, matches exactly the names
    the operator's fnmatch-based matches_any matches (Python's re stands in for RE2 here; the
    thief test above has the API server's CEL evaluate the rendered expressions)."""
    import re

    from secrets_operator.selectors import matches_any

    objects = render("t", "ops", blueprints=["a/b"], excludeNamespaces=globs)
    policy = of_kind(objects, "ValidatingAdmissionPolicy")
    (placements,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "placements"]
    regex = json.loads(placements)["Secret|a/b"][2]
    for name in names:
        assert bool(re.fullmatch(regex, name)) == matches_any(name, globs), (name, regex)


def test_the_policy_never_admits_the_keys_the_operator_never_copies() -> None:
    """The policy's list of keys never copied is the operator's (planning.NEVER_COPIED)."""
    import re

    from secrets_operator.planning import NEVER_COPIED
    from secrets_operator.selectors import matches_any

    policy = of_kind(render("t", "ops", blueprints=["a/b"]), "ValidatingAdmissionPolicy")
    (never,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "neverCopied"]
    regex = json.loads(never)
    keys = [glob.replace("*", "x") for glob in NEVER_COPIED]
    keys += [f"{key}x" for key in keys] + ["app.kubernetes.io/name", "example.com/helm.sh", "team/x"]
    for key in keys:
        assert bool(re.fullmatch(regex, key)) == matches_any(key, NEVER_COPIED), key


def test_every_setting_is_a_chart_value_passed_to_the_operator() -> None:
    """Each setting's variable carries the value given to its chart value (every one non-default)."""
    from secrets_operator.settings import Settings
    from tools.reference import HELM_FROM_POD, helm_value

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]
    given = yaml.safe_load((CHART / "ci" / "all-values.yaml").read_text())["operator"]
    deployment = of_kind(render("t", "ops", values_file="all-values.yaml"), "Deployment")
    env = _deployment_env(deployment, pod_name="the-pod", pod_namespace="the-namespace")
    assert env["POD_NAME"] == "the-pod"  # the operator takes its identity from the Pod's name
    assert env["SECRETS_OPERATOR_LEASE_NAMESPACE"] == "ops"  # the release namespace

    def as_variable(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(value)
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    # Values whose non-default the every-option file cannot hold (it runs three replicas).
    alone = {"leaderElection": ["--set", "operator.leaderElection=false", "--set", "replicaCount=1"]}
    for name in Settings.model_fields:
        if name in HELM_FROM_POD:
            continue
        key = helm_value(name).removeprefix("operator.")
        assert key in defaults, name
        variable = f"SECRETS_OPERATOR_{name.upper()}"
        if key in alone:
            args = ["template", "t", str(CHART), "--kube-version", KUBE_VERSION, "-f"]
            done = helm(*args, str(CHART / "ci" / "all-values.yaml"), *alone[key])
            assert done.returncode == 0, done.stderr
            other = of_kind([d for d in yaml.safe_load_all(done.stdout) if d], "Deployment")
            value = _deployment_env(other, pod_name="p", pod_namespace="n")[variable]
            assert value == as_variable(not defaults[key]), name
            continue
        assert given[key] != defaults[key], f"ci/all-values.yaml must set {key} to a non-default value"
        if key == "blueprints":  # a JSON list of the items as given (the operator reads it below)
            assert json.loads(env[variable]) == given[key]
            continue
        assert env[variable] == as_variable(given[key]), name


def test_the_operator_reads_the_blueprints_the_deployment_passes_as_the_chart_grants_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rendered SECRETS_OPERATOR_BLUEPRINTS, through the operator's own settings loader: the
    blueprints it configures are the ones the chart normalised, and every name it will list, watch
    or write is one the ClusterRole grants for that kind, and no other."""
    from secrets_operator import settings
    from secrets_operator.model import Kind
    from secrets_operator.selectors import parse_label_selector

    objects = render("t", "ops", values_file="all-values.yaml")
    env = _deployment_env(of_kind(objects, "Deployment"), pod_name="p", pod_namespace="ops")
    for variable in [name for name in os.environ if name.startswith(settings.ENV_PREFIX)]:
        monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    loaded = settings.load()
    specs = [
        (str(s.ref.kind), str(s.ref), s.target, s.names, s.selector, s.include, s.exclude)
        for s in loaded.blueprints
    ]
    assert specs == [
        ("Secret", "auth/htpasswd", "htpasswd", ("htpasswd",), None, None, None),
        ("Secret", "registry/pull-secret", "regcred", ("regcred", "pull-secret"), None, None, None),
        (
            "ConfigMap",
            "platform/ca-bundle",
            "trusted-ca",
            ("trusted-ca",),
            parse_label_selector("tls=enabled"),
            ("team-*",),
            ("team-sandbox",),
        ),
    ]
    rules = _rules_by_resource(objects)
    for kind in Kind:
        needed = sorted(
            {name for s in loaded.blueprints if s.ref.kind is kind for name in (s.ref.name, *s.names)}
        )
        (named,) = [names for verbs, names in rules[kind.plural] if names is not None]
        assert named == needed, kind
