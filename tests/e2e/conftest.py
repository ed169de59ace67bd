"""The shipped product on a real node: the image built and pushed, the chart pulled from a registry.

One session brings up (``tools/node.py``) a private dockerd, an OCI registry on loopback, a
control plane with a node (containerd, CNI, kubelet, kube-proxy, kube-scheduler), builds the
project's Dockerfile on a base image made from Debian's packages, pushes the image under two tags
and the packaged chart (``helm push oci://``), and hands the tests a :class:`Shipped` world.

Needs root (bridges, iptables, containers). Under ``CI=true`` a node that cannot be brought up
fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tools.binaries import BuildError, binaries
from tools.cluster import ControlPlane, ControlPlaneError, print_logs
from tools.node import (
    BASE_IMAGE,
    Docker,
    Node,
    NodeError,
    Registry,
    build_base_image,
    build_operator_image,
    running,
)
from tools.release import charts, versions

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclasses.dataclass
class Shipped:
    """What a user would have: an image in a registry, a chart in a registry, a cluster."""

    plane: ControlPlane
    registry: Registry
    docker: Docker
    node: Node
    image: str  # repository, without a tag
    tags: tuple[str, str]  # the release's tag, and another one for the upgrade
    build: versions.BuildInfo  # what the image was built from (version, commit, time)
    chart: str  # oci://... reference
    chart_version: str
    figures: dict[str, float]  # measured along the way, printed at the end

    def kubectl(self, *args: str, check: bool = True, stdin: str = "") -> str:
        command = [str(self.plane.bins.kubectl), "--kubeconfig", str(self.plane.admin_kubeconfig), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def helm(self, *args: str, major: int = 4) -> str:
        """Helm ``major``: the release is installed with Helm 3 and upgraded and removed with
        Helm 4, as a team moving to Helm 4 does (each major also does all three in test_chart)."""
        command = [str(binaries().helm_of(major)), "--kubeconfig", str(self.plane.admin_kubeconfig), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


def wait_until(probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` saying what and last."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shipped]:
    if os.geteuid() != 0:
        message = "the end-to-end tests need root (a bridge, iptables, containers)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("e2e")
    figures: dict[str, float] = {}
    failed = True
    try:
        with running(workdir) as (plane, registry, docker, node):
            started = time.monotonic()
            build_base_image(docker, BASE_IMAGE)
            figures["base image build (s)"] = time.monotonic() - started
            image = f"{registry.host}/secrets-operator"
            built = build_operator_image(docker, registry.host)
            build = built.build
            figures["image build (s)"] = built.seconds
            tags = (built.reference.rsplit(":", 1)[1], f"{versions.image_tag(build.version)}-e2e.2")
            size = docker.run("image", "inspect", "--format", "{{.Size}}", built.reference, what="inspect")
            figures["image size (MB)"] = int(size) / 1e6
            base_size = docker.run("image", "inspect", "--format", "{{.Size}}", BASE_IMAGE, what="inspect")
            figures["base image size (MB)"] = int(base_size) / 1e6
            docker.run("tag", built.reference, f"{image}:{tags[1]}", what="docker tag")
            started = time.monotonic()
            docker.push(f"{image}:{tags[1]}")
            figures["image push (s)"] = time.monotonic() - started
            helm = binaries().helm
            archive = charts.package(helm, workdir, build.version)
            subprocess.run(
                [str(helm), "push", str(archive), f"oci://{registry.host}/charts", "--plain-http"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            world = Shipped(
                plane=plane,
                registry=registry,
                docker=docker,
                node=node,
                image=image,
                tags=tags,
                build=build,
                chart=f"oci://{registry.host}/charts/secrets-operator",
                chart_version=versions.chart_version(build.version),
                figures=figures,
            )
            yield world
            failed = False
            print("\nmeasured in this run:")
            for name, value in figures.items():
                print(f"  {name}: {value:.2f}")
    except (
        BuildError,
        ControlPlaneError,
        NodeError,
        versions.VersionError,
        subprocess.CalledProcessError,
    ) as exc:
        message = f"cannot bring the node up: {exc}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    finally:
        if failed:
            print_logs(sorted(workdir.rglob("logs/*.log")) + sorted(workdir.rglob("*/log")))
