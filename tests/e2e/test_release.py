"""Releasing and deploying as the pipeline does, on the real node: tags, signatures, refusals, rollback.

A clone of this repository is tagged the way a maintainer tags it; ``python -m tools.release``
(what ``nox -s release`` and ``nox -s deploy`` run) publishes to the node's OCI registry and to a
classic chart repository (nginx behind basic auth), with keys made for the run, and deploys the
``staging`` environment (deploy/values-staging.yaml) onto the node. The tests run in order and
share that world, as successive pipeline runs do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Shipped, wait_until
from tools.binaries import CACHE, binaries, release_tools
from tools.chartrepo import ChartRepository, Credentials
from tools.chartrepo import running as chart_repository
from tools.node import BASE_IMAGE, build_base_image
from tools.release.signing import CosignKey, GpgKey, make_cosign_key, make_gpg_key

pytestmark = pytest.mark.e2e

ARM64_BASE = "secrets-operator-base:trixie-arm64"
NAMESPACE = "so-staging"
GPG_NAME = "secrets-operator release (e2e) <release@secrets-operator.invalid>"


@dataclasses.dataclass
class Pipeline:
    """A maintainer's clone, the chart repository, the keys: what CI variables point a pipeline at."""

    world: Shipped
    clone: Path
    repository: ChartRepository
    cosign: CosignKey
    gpg: GpgKey
    workdir: Path

    def env(self, *, publisher: bool = True, **extra: str) -> dict[str, str]:
        credentials = self.repository.publisher if publisher else self.repository.reader
        return {
            **os.environ,
            "SECRETS_OPERATOR_CACHE_DIR": str(CACHE),
            "DOCKER_HOST": f"unix://{self.world.docker.socket}",
            "RELEASE_REGISTRY": f"{self.world.registry.host}/platform",
            "RELEASE_REGISTRY_INSECURE": "true",
            "RELEASE_BASE_IMAGE_AMD64": BASE_IMAGE,
            "RELEASE_BASE_IMAGE_ARM64": ARM64_BASE,
            "CHART_REPO_URL": self.repository.url,
            "CHART_REPO_USERNAME": credentials.user,
            "CHART_REPO_PASSWORD": credentials.password,
            "COSIGN_KEY": str(self.cosign.private),
            "COSIGN_PASSWORD": self.cosign.password,
            "COSIGN_PUBLIC_KEY": str(self.cosign.public),
            "HELM_SIGNING_KEY": self.gpg.name,
            "HELM_SIGNING_KEYRING": str(self.gpg.secring),
            "HELM_VERIFY_KEYRING": str(self.gpg.pubring),
            "KUBECONFIG": str(self.world.plane.admin_kubeconfig),
            "DEPLOY_NAMESPACE": NAMESPACE,
            "DEPLOY_RELEASE_NAME": "so-staging",
            **extra,
        }

    def tool(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m tools.release ARGS`` in the clone, as a pipeline job runs it."""
        publisher = args[0] == "release"
        done = subprocess.run(
            [sys.executable, "-m", "tools.release", *args],
            cwd=self.clone,
            env=self.env(publisher=publisher, **env),
            capture_output=True,
            text=True,
            timeout=2400,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tools.release {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=Release", "-c", "user.email=release@secrets-operator.invalid", *args],
            cwd=self.clone,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def cut(self, version: str, *, broken_readiness: bool = False) -> None:
        """Note a change under Unreleased, move the entries under ``version``, commit and tag, as
        a maintainer does."""
        changelog = self.clone / "CHANGELOG.md"
        text = changelog.read_text()
        text = text.replace(
            "## [Unreleased]\n\n", f"## [Unreleased]\n\n### Changed\n- What {version} changes.\n\n", 1
        )
        changelog.write_text(
            text.replace("## [Unreleased]\n", f"## [Unreleased]\n\n## [{version}] - 2026-12-07\n", 1)
        )
        if broken_readiness:
            web = self.clone / "src" / "secrets_operator" / "web.py"
            source = web.read_text()
            assert "        ok, detail = ready()\n" in source
            web.write_text(
                source.replace("        ok, detail = ready()\n", "        ok, detail = False, 'broken'\n", 1)
            )
        self.git("commit", "-qam", f"Release {version}")
        self.git("tag", "-a", f"v{version}", "-m", f"secrets-operator {version}")

    def helm(self, *args: str) -> Any:
        command = [
            str(binaries().helm),
            "--kubeconfig",
            str(self.world.plane.admin_kubeconfig),
            *args,
            "-o",
            "json",
        ]
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    def repository_file(self, name: str) -> bytes:
        return (self.repository.workdir / "charts" / name).read_bytes()


@pytest.fixture(scope="module")
def pipeline(shipped: Shipped, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("release")
    started = time.monotonic()
    build_base_image(shipped.docker, ARM64_BASE, arch="arm64")
    shipped.figures["arm64 base image (s)"] = time.monotonic() - started
    tools = release_tools()
    cosign = make_cosign_key(workdir / "cosign", secrets.token_urlsafe(12), cosign=tools.cosign)
    gpg = make_gpg_key(workdir / "gnupg", GPG_NAME)
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(Path(__file__).resolve().parents[2]), str(clone)], check=True)
    reader = Credentials("reader", secrets.token_urlsafe(12))
    publisher = Credentials("publisher", secrets.token_urlsafe(12))
    with chart_repository(workdir / "charts", reader=reader, publisher=publisher) as repository:
        shipped.kubectl("create", "namespace", NAMESPACE)
        yield Pipeline(shipped, clone, repository, cosign, gpg, workdir)


def test_a_tagged_release_publishes_signed_multi_arch_images_sboms_and_charts(pipeline: Pipeline) -> None:
    pipeline.cut("0.2.0")
    started = time.monotonic()
    done = pipeline.tool("release", "0.2.0", "--json", str(pipeline.workdir / "0.2.0.json"))
    pipeline.world.figures["release 0.2.0, amd64 + arm64 (s)"] = time.monotonic() - started
    artifacts = {a["what"]: a for a in json.loads((pipeline.workdir / "0.2.0.json").read_text())}
    print(done.stdout)
    image = f"{pipeline.world.registry.host}/platform/secrets-operator"
    assert artifacts["image index"]["where"] == f"{image}:0.2.0"
    tools = release_tools()

    index = json.loads(_crane("manifest", f"{image}:0.2.0"))
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    arm64 = artifacts["image linux/arm64"]["where"]
    said = pipeline.world.docker.run(
        "run",
        "--rm",
        "--network=none",
        "--platform=linux/arm64",
        arm64,
        "--version",
        what="the arm64 image under emulation",
    )
    assert said.split() == ["secrets-operator", "0.2.0"]
    usage = pipeline.world.docker.run(
        "run",
        "--rm",
        "--network=none",
        "--platform=linux/arm64",
        arm64,
        "check",
        "--help",
        what="check --help on arm64",
    )
    assert usage.startswith("usage: secrets-operator check")

    for reference in (f"{image}:0.2.0", artifacts["image linux/amd64"]["where"], arm64):
        _cosign(tools.cosign, "verify", "--key", str(pipeline.cosign.public), reference)
    for platform in ("amd64", "arm64"):
        reference = artifacts[f"image linux/{platform}"]["where"]
        verified = _cosign(
            tools.cosign,
            "verify-attestation",
            "--type",
            "spdxjson",
            "--key",
            str(pipeline.cosign.public),
            reference,
        )
        assert "SPDX" in verified or "spdx" in verified
    chart = artifacts["chart (OCI, cosign-signed)"]
    _cosign(
        tools.cosign,
        "verify",
        "--key",
        str(pipeline.cosign.public),
        chart["where"].removeprefix("oci://").replace(":0.2.0", "@" + chart["digest"]),
    )

    # As a user of the original: helm repo add with credentials, then every released version.
    listed = _helm_search(pipeline)
    assert [entry["version"] for entry in listed] == ["0.2.0"]
    assert pipeline.repository_file("secrets-operator-0.2.0.tgz.prov").startswith(
        b"-----BEGIN PGP SIGNED MESSAGE"
    )


def test_what_exists_a_wrong_password_a_dirty_tree_and_a_bad_tag_are_refused_changing_nothing(
    pipeline: Pipeline,
) -> None:
    before = (pipeline.repository_file("index.yaml"), _crane("digest", _image(pipeline, "0.2.0")))
    again = pipeline.tool("release", "0.2.0", check=False)
    assert again.returncode == 2
    assert again.stderr.startswith("error: 0.2.0 is already released (")
    assert again.stderr.strip().endswith("nothing was changed")
    wrong = pipeline.tool("release", "0.2.0", check=False, CHART_REPO_PASSWORD="wrong")
    assert wrong.returncode == 2
    assert "refused user 'publisher' (401): wrong user or password" in wrong.stderr
    (pipeline.clone / "README.md").write_text("edited\n")
    dirty = pipeline.tool("release", "0.2.0", check=False)
    pipeline.git("checkout", "README.md")
    assert "the tree has uncommitted changes" in dirty.stderr
    bad_tag = pipeline.tool("check-tag", "v0.2", check=False)
    assert (
        bad_tag.stderr
        == "error: tag 'v0.2' is not vX.Y.Z (three numbers without leading zeros, e.g. v0.2.0)\n"
    )
    assert (pipeline.repository_file("index.yaml"), _crane("digest", _image(pipeline, "0.2.0"))) == before


def test_deploy_verifies_the_release_and_installs_staging(pipeline: Pipeline) -> None:
    world = pipeline.world
    world.kubectl("create", "namespace", "app-staging")
    world.kubectl("label", "namespace", "app-staging", "environment=staging")
    world.kubectl("create", "namespace", "app-production")
    world.kubectl("label", "namespace", "app-production", "environment=production")
    started = time.monotonic()
    done = pipeline.tool("deploy", "staging")
    world.figures["deploy 0.2.0 to staging (s)"] = time.monotonic() - started
    assert done.stdout.startswith("staging: 0.2.0 deployed as revision 1 (")
    status = pipeline.helm("status", "so-staging", "-n", NAMESPACE)
    assert status["info"]["status"] == "deployed"
    assert status["chart"]["metadata"]["version"] == "0.2.0"
    deployment = world.json("-n", NAMESPACE, "get", "deployment", "so-staging-secrets-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        container["image"]
        == f"{world.registry.host}/platform/secrets-operator@{_crane('digest', _image(pipeline, '0.2.0'))}"
    )
    wait_until(lambda: _copy(world, "app-staging"), timeout=60, what="staging's copy in app-staging")
    assert _copy(world, "app-production") is None


def test_an_unknown_version_bad_values_and_tampered_artifacts_are_refused_before_anything_changes(
    pipeline: Pipeline,
) -> None:
    world = pipeline.world
    revisions = len(pipeline.helm("history", "so-staging", "-n", NAMESPACE))
    unknown = pipeline.tool("deploy", "staging", "--version", "9.9.9", check=False)
    assert (
        unknown.stderr
        == f"error: version 9.9.9 does not exist in {pipeline.repository.url}; released: 0.2.0\n"
    )

    broken = pipeline.clone / "deploy" / "values-broken.yaml"
    broken.write_text(yaml.safe_dump({"operator": {"conflictPolicy": "overwrite-everything"}}))
    refused = pipeline.tool("deploy", "broken", check=False)
    broken.unlink()
    assert "values-broken.yaml is refused by the chart 0.2.0" in refused.stderr

    # A modified image pushed under the released tag: its digest carries no signature.
    tampered = f"{world.registry.host}/platform/secrets-operator:0.2.0"
    original = _crane("digest", tampered)
    context = pipeline.workdir / "tampered"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {tampered}\nLABEL tampered=yes\n")
    world.docker.build(context, tampered)
    world.docker.push(tampered)
    refused = pipeline.tool("deploy", "staging", check=False)
    assert refused.returncode == 2
    assert "is refused: the signature of" in refused.stderr
    assert "no signatures found" in refused.stderr
    _crane("copy", f"{world.registry.host}/platform/secrets-operator@{original}", tampered)

    # A chart replaced in the repository: its .prov no longer matches.
    archive = pipeline.repository.workdir / "charts" / "secrets-operator-0.2.0.tgz"
    kept = archive.read_bytes()
    archive.write_bytes(kept + b"\0")
    refused = pipeline.tool("deploy", "staging", check=False)
    archive.write_bytes(kept)
    assert "chart 0.2.0 does not verify" in refused.stderr
    assert len(pipeline.helm("history", "so-staging", "-n", NAMESPACE)) == revisions


def test_an_upgrade_rolls_with_a_handover_and_no_namespace_misses_its_copy(pipeline: Pipeline) -> None:
    world = pipeline.world
    pipeline.cut("0.3.0")
    pipeline.tool("release", "0.3.0", RELEASE_PLATFORMS="linux/amd64")
    holder = _holder(world)
    deploying = subprocess.Popen(
        [sys.executable, "-m", "tools.release", "deploy", "staging", "--version", "0.3.0"],
        cwd=pipeline.clone,
        env=pipeline.env(publisher=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    created: list[str] = []
    while deploying.poll() is None and len(created) < 40:
        name = f"roll-{len(created)}"
        world.kubectl("create", "namespace", name)
        world.kubectl("label", "namespace", name, "environment=staging")
        created.append(name)
        time.sleep(0.5)
    out, err = deploying.communicate(timeout=600)
    assert deploying.returncode == 0, err
    assert out.startswith("staging: 0.3.0 deployed as revision")
    assert _holder(world) != holder
    for name in created:
        wait_until(lambda name=name: _copy(world, name), timeout=60, what=f"the copy in {name}")  # type: ignore[misc]


def test_a_release_whose_pods_never_become_ready_is_rolled_back(pipeline: Pipeline) -> None:
    pipeline.cut("0.4.0", broken_readiness=True)
    pipeline.tool("release", "0.4.0", RELEASE_PLATFORMS="linux/amd64")
    started = time.monotonic()
    failed = pipeline.tool("deploy", "staging", "--version", "0.4.0", "--timeout", "60s", check=False)
    pipeline.world.figures["failed deploy to rollback (s)"] = time.monotonic() - started
    assert failed.returncode == 2
    assert "staging: the upgrade to 0.4.0 failed and was rolled back" in failed.stderr
    status = pipeline.helm("status", "so-staging", "-n", NAMESPACE)
    assert status["info"]["status"] == "deployed"
    assert status["chart"]["metadata"]["version"] == "0.3.0"
    ready = wait_until(
        lambda: _ready_on(pipeline.world, "0.3.0"), timeout=120, what="0.3.0's Pods Ready again"
    )
    assert ready


# ------------------------------------------------------------------------------ helpers


def _crane(*args: str) -> str:
    done = subprocess.run([str(release_tools().crane), *args, "--insecure"], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"crane {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _cosign(cosign: Path, *args: str) -> str:
    argv = [str(cosign), *args[:-1], "--insecure-ignore-tlog=true", "--allow-http-registry", args[-1]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"cosign {' '.join(args)}: {done.stderr.strip()[-1000:]}")
    return done.stdout


def _image(pipeline: Pipeline, tag: str) -> str:
    return f"{pipeline.world.registry.host}/platform/secrets-operator:{tag}"


def _helm_search(pipeline: Pipeline) -> list[dict[str, Any]]:
    home = pipeline.workdir / "user-helm"
    env = {
        **os.environ,
        "HELM_REPOSITORY_CONFIG": str(home / "repositories.yaml"),
        "HELM_REPOSITORY_CACHE": str(home / "cache"),
    }
    helm = str(binaries().helm)
    reader = pipeline.repository.reader
    subprocess.run(
        [
            helm,
            "repo",
            "add",
            "so",
            pipeline.repository.url,
            "--username",
            reader.user,
            "--password-stdin",
            "--force-update",
        ],
        input=reader.password,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = subprocess.run(
        [helm, "search", "repo", "so/secrets-operator", "--versions", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: list[dict[str, Any]] = json.loads(found.stdout)
    return result


def _copy(world: Shipped, namespace: str) -> dict[str, Any] | None:
    done = world.kubectl("-n", namespace, "get", "secret", "htpasswd", "-o", "json", check=False)
    return json.loads(done) if done else None


def _holder(world: Shipped) -> str:
    lease = world.json("-n", NAMESPACE, "get", "lease", "so-staging-secrets-operator")
    return str(lease["spec"].get("holderIdentity", ""))


def _ready_on(world: Shipped, version: str) -> bool:
    pods = world.json("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/instance=so-staging")["items"]
    ready = [
        pod
        for pod in pods
        if pod["metadata"]["labels"].get("app.kubernetes.io/version") == version
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        and not pod["metadata"].get("deletionTimestamp")
    ]
    return len(ready) == 2 and len(pods) == 2
