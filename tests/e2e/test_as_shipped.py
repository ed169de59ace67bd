"""A platform team's first day, on a real node: install, watch it work, upgrade, break it, remove it.

The tests run in order and share one release: each step starts from where the last one left
it, as a person at a terminal would. Everything is done the way a user does it (helm from the
OCI registry, kubectl), and observed the way a user sees it (Pods, Events, restart counts, the
Lease, the Service, the logs).
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.e2e.conftest import Shipped, wait_until
from tools.node import build_operator_image

pytestmark = pytest.mark.e2e

RELEASE = "secrets-operator"
NAMESPACE = "secrets-operator"
HOME = "auth"
BLUEPRINT = "htpasswd"
#: Secret data that must never appear in a log line; also checked in base64.
CANARY = f"canary-{secrets.token_hex(8)}"
LEASE_SECONDS = 15  # the chart's defaults: 15 / 10 / 2
RENEW_DEADLINE = 10
RETRY_PERIOD = 2


def _ready_pods(world: Shipped) -> list[dict[str, Any]]:
    pods = world.json("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return [
        pod
        for pod in pods
        if pod["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]


def _lease(world: Shipped) -> dict[str, Any]:
    spec: dict[str, Any] = world.json("-n", NAMESPACE, "get", "lease", RELEASE)["spec"]
    return spec


def _holder_pod(world: Shipped) -> str:
    """The Pod whose operator process holds the Lease (identity: POD_NAME + "_" + 8 hex digits)."""
    pod, _, suffix = str(_lease(world).get("holderIdentity", "")).rpartition("_")
    return pod if len(suffix) == 8 else ""


def _namespace_with_copy(world: Shipped, name: str, *, timeout: float = 15) -> float:
    """Create a namespace and wait for its copy; the seconds it took."""
    started = time.monotonic()
    world.kubectl("create", "namespace", name)

    def copied() -> bool:
        secret = world.kubectl("-n", name, "get", "secret", BLUEPRINT, "-o", "json", check=False)
        if not secret:
            return False
        data = json.loads(secret).get("data", {})
        return bool(data == {"auth": base64.b64encode(CANARY.encode()).decode()})

    wait_until(copied, timeout=timeout, what=f"the copy in {name}")
    return time.monotonic() - started


def _samples(page: str) -> dict[str, list[Sample]]:
    """A /metrics page's samples by sample name, as Prometheus parses them (no HELP or TYPE line)."""
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_image_says_the_version_git_gives_and_holds_nothing_that_installs_code(shipped: Shipped) -> None:
    """The built image, before anything is installed: its version, labels and what it leaves out."""
    image = f"{shipped.image}:{shipped.tags[0]}"
    said = shipped.docker.run("run", "--rm", "--network=none", image, "--version", what="--version")
    assert said.split() == ["secrets-operator", shipped.build.version]
    labels = json.loads(
        shipped.docker.run("image", "inspect", "--format", "{{json .Config.Labels}}", image, what="inspect")
    )
    assert labels["org.opencontainers.image.version"] == shipped.build.version
    assert labels["org.opencontainers.image.revision"] == shipped.build.revision
    assert labels["org.opencontainers.image.created"] == shipped.build.created
    probe = (
        "import importlib.util, sys; "
        "print(sys.version_info[:2], [m for m in ('pip', 'setuptools', 'wheel', 'build', 'hatchling', "
        "'ensurepip', 'pytest') if importlib.util.find_spec(m)])"
    )
    found = shipped.docker.run(
        "run", "--rm", "--network=none", "--entrypoint=python", image, "-c", probe, what="the probe"
    )
    assert found.strip().endswith("[]"), f"the image can install code: {found.strip()}"
    assert found.startswith("(3, 13)"), f"the image's Python is not the base's 3.13: {found.strip()}"


#: What an image installed: its distributions, and one hash over site-packages (every path and
#: every file's bytes, in a fixed order).
FINGERPRINT = """
import hashlib, importlib.metadata, os, sys
root = sys.prefix  # the image's virtualenv: bin/, pyvenv.cfg and site-packages
digest = hashlib.sha256()
files = compiled = checked_hash = 0
for folder, dirs, names in os.walk(root):
    dirs.sort()
    for name in sorted(names):
        path = os.path.join(folder, name)
        if os.path.islink(path):  # bin/python and its aliases: where they point, not the interpreter
            content = os.readlink(path).encode()
        else:
            with open(path, "rb") as file:
                data = file.read()
            content = hashlib.sha256(data).digest()
            if name.endswith(".pyc"):
                compiled += 1
                # PEP 552: flags 0b11 = hash-based and checked against the source.
                checked_hash += int.from_bytes(data[4:8], "little") == 0b11
        digest.update(os.path.relpath(path, root).encode() + b"\\0" + content)
        files += 1
print(sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()))
print(files, digest.hexdigest())
print(compiled, checked_hash, sorted(os.listdir(os.path.join(root, "bin"))))
"""


def test_two_builds_of_one_commit_install_the_same_files(shipped: Shipped) -> None:
    """A second build, every step run again (--no-cache), installs the same distributions and the
    same bytes into site-packages, compiled files included."""
    again = build_operator_image(shipped.docker, shipped.registry.host, tag="rebuilt", no_cache=True)
    shipped.figures["image build, no cache (s)"] = again.seconds

    def fingerprint(image: str) -> list[str]:
        run = ("run", "--rm", "--network=none", "--entrypoint=python", image, "-c", FINGERPRINT)
        return shipped.docker.run(*run, what=f"the fingerprint of {image}").splitlines()

    first, second = fingerprint(f"{shipped.image}:{shipped.tags[0]}"), fingerprint(again.reference)
    assert "'secrets-operator==" in first[0]
    assert "'pydantic==" in first[0]
    assert int(first[1].split()[0]) > 1000  # the whole virtualenv was read
    compiled, checked_hash, bin_dir = first[2].split(maxsplit=2)
    # Every module is compiled, and not stamped with the build's clock: hash-checked .pyc files.
    assert int(compiled) > 1000, first[2]
    assert checked_hash == compiled, first[2]
    assert "'secrets-operator'" in bin_dir, bin_dir
    assert "'python'" in bin_dir, bin_dir
    assert second == first


@pytest.fixture(scope="module")
def installed(shipped: Shipped) -> Shipped:
    """The blueprint, a namespace enforcing `restricted`, and `helm install` (Helm 3) from the
    registry; the upgrade and the removal below use Helm 4."""
    world = shipped
    world.kubectl("create", "namespace", HOME)
    world.kubectl("-n", HOME, "create", "secret", "generic", BLUEPRINT, f"--from-literal=auth={CANARY}")
    world.kubectl("create", "namespace", NAMESPACE)
    world.kubectl(
        "label", "namespace", NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    started = time.monotonic()
    world.helm(
        "install", RELEASE, world.chart, "--version", world.chart_version, "--plain-http",
        "--namespace", NAMESPACE,
        "--set", f"image.repository={world.image}",
        "--set", f"operator.blueprints={{{HOME}/{BLUEPRINT}}}",
        "--set", "operator.excludeNamespaces={kube-system,kube-public,kube-node-lease," + NAMESPACE + "}",
        major=3,
    )  # fmt: skip
    wait_until(lambda: len(_ready_pods(world)) == 2, timeout=120, what="two Ready Pods")
    world.figures["helm install to two Ready Pods (s)"] = time.monotonic() - started
    return world


def test_both_pods_run_ready_through_their_probes_under_restricted(installed: Shipped) -> None:
    world = installed
    for pod in _ready_pods(world):
        (container,) = pod["spec"]["containers"]
        assert container["image"] == f"{world.image}:{world.tags[0]}"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] == 65532
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"]
        assert status["restartCount"] == 0
        started = _parse(status["state"]["running"]["startedAt"])
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        world.figures["container start to Ready (s)"] = (
            _parse(ready["lastTransitionTime"]) - started
        ).seconds
    events = world.json("-n", NAMESPACE, "get", "events")["items"]
    assert any(e["reason"] == "Pulled" for e in events), "the kubelet pulled the image from the registry"

    # The PodDisruptionBudget counts the Pods: one may be evicted at a time.
    def budget() -> dict[str, Any] | None:
        status: dict[str, Any] = world.json("-n", NAMESPACE, "get", "pdb", RELEASE).get("status", {})
        return status if status.get("currentHealthy") == 2 else None

    assert (
        wait_until(budget, timeout=30, what="the PodDisruptionBudget to count both Pods")[
            "disruptionsAllowed"
        ]
        == 1
    )
    # The image itself runs as a numeric non-root user, whatever the Pod says.
    user = world.docker.run(
        "image", "inspect", "--format", "{{.Config.User}}", f"{world.image}:{world.tags[0]}", what="inspect"
    )
    assert user.strip() == "65532:65532"


def test_one_holder_renews_for_two_minutes_and_new_namespaces_get_copies(installed: Shipped) -> None:
    """Over 125 s (several lease durations): one holder, renewing about every retry period, while
    namespaces keep getting their copies. The Lease is sampled on a thread of its own, so that
    the namespace checks never hide a gap."""
    world = installed
    pods = {pod["metadata"]["name"] for pod in _ready_pods(world)}
    holders: set[str] = set()
    stamps: list[datetime.datetime] = []  # every renewTime seen, in order
    stop = threading.Event()
    failures: list[BaseException] = []

    def sample() -> None:
        try:
            while not stop.is_set():
                lease = _lease(world)
                pod, _, suffix = str(lease.get("holderIdentity", "")).rpartition("_")
                holders.add(pod if len(suffix) == 8 else "")
                stamp = datetime.datetime.strptime(lease["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
                if not stamps or stamps[-1] != stamp:
                    stamps.append(stamp)
                stop.wait(0.25)
        except BaseException as exc:  # the sampler dying must fail the test, not thin the samples
            failures.append(exc)

    sampler = threading.Thread(target=sample, name="lease-sampler", daemon=True)
    started = time.monotonic()
    sampler.start()
    copied = list[float]()
    try:
        while time.monotonic() - started < 125:
            copied.append(_namespace_with_copy(world, f"team-{len(copied)}"))
            stop.wait(max(0.0, started + 25 * len(copied) - time.monotonic()))
    finally:
        stop.set()
        sampler.join(timeout=30)
    # The node's API server runs on this machine's clock: the window's end counts as a last stamp,
    # so renewals that stopped near its end show as a gap too.
    ended = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert not sampler.is_alive()
    assert not failures, failures
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise([*stamps, ended])]
    assert len(holders) == 1, holders
    assert holders <= pods, (holders, pods)
    # About 62 renewals in 125 s at one every retry period; half of that is the floor.
    assert len(stamps) - 1 >= 125 / RETRY_PERIOD / 2, f"{len(stamps) - 1} renewals in 125 s"
    assert max(gaps) < RENEW_DEADLINE, f"renewTime stood still for {max(gaps):.1f} s"
    assert len(copied) >= 5
    world.figures["Lease renewals in 125 s"] = len(stamps) - 1
    world.figures["longest gap between renewals (s)"] = max(gaps)
    world.figures["new namespace -> copy, worst of 5 (s)"] = max(copied)


def test_upgrade_to_another_tag_rolls_with_a_handover_and_misses_no_namespace(installed: Shipped) -> None:
    world = installed
    before = _lease(world)
    started = time.monotonic()
    world.helm(
        "upgrade", RELEASE, world.chart, "--version", world.chart_version, "--plain-http",
        "--namespace", NAMESPACE, "--reuse-values", "--set", f"image.tag={world.tags[1]}",
    )  # fmt: skip
    created: list[str] = []
    seen: list[dict[str, Any]] = []  # the Lease as it was at each poll, to time the hand-over

    def rolled() -> bool:
        if len(created) < 40:  # namespaces keep appearing while the Pods roll
            name = f"roll-{len(created)}"
            world.kubectl("create", "namespace", name)
            created.append(name)
        seen.append(_lease(world))
        pods = _ready_pods(world)
        images = {pod["spec"]["containers"][0]["image"] for pod in pods}
        return len(pods) == 2 and images == {f"{world.image}:{world.tags[1]}"}

    wait_until(rolled, timeout=180, what="both Pods replaced by the new tag", interval=1)
    world.figures["rolling update (s)"] = time.monotonic() - started
    after = _lease(world)
    new_pods = {pod["metadata"]["name"] for pod in _ready_pods(world)}
    assert _holder_pod(world) in new_pods
    assert after["leaseTransitions"] > before.get("leaseTransitions", 0)
    # Hand-over: from the old holder's last renewal to the new holder's acquisition (both
    # written by replicas on this machine's clock).
    old = [lease for lease in seen if lease["holderIdentity"] == before["holderIdentity"]]
    last_renewal = _parse((old or [before])[-1]["renewTime"])
    world.figures["rolling update: last renewal -> new holder (s)"] = (
        _parse(after["acquireTime"]) - last_renewal
    ).total_seconds()
    for name in created:

        def copied(name: str = name) -> str:
            return world.kubectl("-n", name, "get", "secret", BLUEPRINT, check=False)

        wait_until(copied, timeout=30, what=f"the copy in {name}, created during the roll")


def _take_over(world: Shipped, old: str, *, timeout: float) -> tuple[str, float]:
    """Wait for a Pod other than ``old`` to hold the Lease; that Pod and the seconds it took."""
    started = time.monotonic()

    def new_holder() -> str | None:
        holder = _holder_pod(world)
        return holder if holder and holder != old else None

    holder = wait_until(new_holder, timeout=timeout, what=f"another replica to take over from {old}")
    return holder, time.monotonic() - started


def test_deleting_the_leader_pod_hands_over(installed: Shipped) -> None:
    world = installed
    leader = _holder_pod(world)
    world.kubectl("-n", NAMESPACE, "delete", "pod", leader, "--wait=false")
    # A graceful delete releases the Lease: another replica takes it at once, well before the
    # claim could have lapsed (lease duration) and before the margin a stuck leader is allowed
    # (lease duration minus renew deadline) is spent.
    holder, took = _take_over(world, leader, timeout=LEASE_SECONDS - RENEW_DEADLINE)
    world.figures["leader Pod deleted -> new holder (s)"] = took
    assert holder != leader
    wait_until(
        lambda: len(_ready_pods(world)) == 2, timeout=120, what="the ReplicaSet's replacement Pod Ready"
    )
    _namespace_with_copy(world, "after-delete")


def _operator_process(pod: str) -> int:
    """The host PID of the operator in ``pod`` (found by its environment, as `crictl` would)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"secrets-operator" not in (proc / "cmdline").read_bytes():
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"POD_NAME={pod}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no operator process for Pod {pod}")


def test_killing_the_leaders_process_restarts_it_and_hands_over(installed: Shipped) -> None:
    world = installed
    leader = _holder_pod(world)
    os.kill(_operator_process(leader), signal.SIGKILL)
    # No release: the other replica waits out the Lease (15 s) from the last renewal it saw. The
    # restarted container is a new candidate (a new identity), and it started watching later.
    holder, took = _take_over(world, leader, timeout=LEASE_SECONDS + 10)
    world.figures["leader process killed -> new holder (s)"] = took
    assert holder != leader

    def restarted() -> dict[str, Any] | None:
        pod = world.json("-n", NAMESPACE, "get", "pod", leader)
        (status,) = pod["status"]["containerStatuses"]
        return status if status["restartCount"] >= 1 and status["ready"] else None

    status = wait_until(restarted, timeout=90, what=f"the kubelet to restart {leader}'s container")
    assert status["lastState"]["terminated"]["exitCode"] == 137  # SIGKILL, as kubectl describe shows
    events = world.json("-n", NAMESPACE, "get", "events", "--field-selector", f"involvedObject.name={leader}")
    started = sum(e.get("count", 1) for e in events["items"] if e["reason"] == "Started")
    assert started >= 2, "kubectl shows the container started again"
    pods = world.kubectl("-n", NAMESPACE, "get", "pods")
    assert leader in pods
    _namespace_with_copy(world, "after-kill")


def test_metrics_through_the_service_and_logs_are_json_without_secret_data(installed: Shipped) -> None:
    world = installed
    service = f"{RELEASE}-metrics"
    _namespace_with_copy(world, "metrics")  # the leader has a write to count, whoever leads

    def leaders_page() -> tuple[str, dict[str, list[Sample]]] | None:
        """Samples by name from the endpoint the service picked: each request picks at random."""
        page = world.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/services/{service}:http-metrics/proxy/metrics"
        )
        samples = _samples(page)
        assert len(samples.get("secrets_operator_leader", [])) == 1, (
            f"no leader sample (HELP, TYPE do not count): {page}"
        )
        (leader,) = samples["secrets_operator_leader"]
        assert leader.value in (0.0, 1.0), leader
        return (page, samples) if leader.value == 1.0 else None

    metrics, samples = wait_until(leaders_page, timeout=60, what="the service to reach the leader's /metrics")
    created = {"kind": "Secret", "action": "create", "result": "success"}
    writes = [s for s in samples.get("secrets_operator_writes_total", []) if s.labels == created]
    assert len(writes) == 1, f"no {created} sample of writes_total on the leader's page: {metrics}"
    assert writes[0].value >= 1, writes
    forms = {CANARY, base64.b64encode(CANARY.encode()).decode()}
    for pod in _ready_pods(world):
        log = world.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"])
        lines = log.splitlines()
        assert lines, pod["metadata"]["name"]
        for line in lines:
            assert isinstance(json.loads(line), dict), line
        for form in forms:
            assert form not in log
    for form in forms:
        assert form not in metrics


def test_uninstall_removes_every_object_of_the_release_and_leaves_the_copies(installed: Shipped) -> None:
    world = installed
    world.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = (
        "deployments,replicasets,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
        "clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings",
    )

    def gone() -> bool:
        left = [world.kubectl("get", kind, "-A", "-l", selector, "-o", "name") for kind in kinds]
        pods = world.kubectl("-n", NAMESPACE, "get", "pods", "-o", "name")
        return not "".join(left).strip() and not pods.strip()

    wait_until(gone, timeout=120, what="every object of the release to go")
    copies = world.kubectl(
        "get", "secrets", "-A", "-l", "app.kubernetes.io/managed-by=secrets-operator", "-o", "name"
    )
    assert copies.count(f"secret/{BLUEPRINT}") >= 5, "copies stay after uninstall, as documented"
