"""The GitLab pipeline, executed by gitlab-ci-local on the real node: release, deploy, refuse, roll back.

A clone of this repository (with an ``origin`` to push to) is tagged and edited the way a
maintainer does it, and ``.gitlab-ci.yml`` runs as GitLab would run it for that push, with the
shell executor and CI/CD variables (``.gitlab-ci-local-variables.yml``, environment-scoped where
GitLab scopes them) pointing at the node's OCI registry, a classic chart repository (nginx behind
basic auth) and keys made for the run. ``staging`` and ``production`` are two namespaces of the
node. Between pipelines, ``python -m tools.release`` (what the jobs run) is also called directly
to show every refusal. The tests run in order and share that world, as successive pipelines do.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import re
import secrets
import subprocess
import sys
import threading
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
from tools.pipelines import gitlab_ci_local
from tools.release.signing import CosignKey, GpgKey, make_cosign_key, make_gpg_key

pytestmark = pytest.mark.pipeline

ARM64_BASE = "secrets-operator-base:trixie-arm64"
NAMESPACE = "so-staging"
PRODUCTION = "so-production"
#: What the push pipeline's `tests` job runs besides the unit suite: an integration file, so that
#: the job is seen to build and start its control plane.
PUSH_TESTS_INTEGRATION = "tests/integration/test_control_plane.py"
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
    last_pipeline: str = ""

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

    def gitlab(self, *, tag: str = "", platforms: str = "linux/amd64", **extra: str) -> dict[str, str]:
        """Run the pipeline GitLab would run for a push of the clone's HEAD (of ``tag``, if given),
        with ``extra`` as pipeline variables: each job's PASS or FAIL, as gitlab-ci-local sums them up."""
        variables = {**self.ci_variables, "RELEASE_PLATFORMS": platforms, "DEPLOY_TIMEOUT": "60s"}
        (self.clone / ".gitlab-ci-local-variables.yml").write_text(yaml.safe_dump(variables))
        argv = [str(gitlab_ci_local())]
        for name, value in extra.items():
            argv += ["--variable", f"{name}={value}"]
        if tag:  # GitLab's tag pipelines have a tag and no branch
            argv += ["--variable", f"CI_COMMIT_TAG={tag}", "--variable", "CI_COMMIT_BRANCH="]
            argv += ["--ignore-predefined-vars", "CI_COMMIT_BRANCH"]
        started = time.monotonic()
        done = subprocess.run(argv, cwd=self.clone, capture_output=True, text=True, timeout=3600,
                              env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
        self.world.figures[f"pipeline {tag or 'push'} (s)"] = time.monotonic() - started
        jobs = {job: result for result, job in re.findall(r"^ (PASS|FAIL)  (\S+)", done.stdout, re.MULTILINE)}
        assert jobs, f"gitlab-ci-local ran no job:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        self.last_pipeline = done.stdout
        return jobs

    @property
    def ci_variables(self) -> dict[str, Any]:
        """The project's CI/CD variables: what GitLab's settings would hold."""
        env = self.env()
        names = ("SECRETS_OPERATOR_CACHE_DIR", "DOCKER_HOST", "RELEASE_REGISTRY", "RELEASE_REGISTRY_INSECURE",
                 "RELEASE_BASE_IMAGE_AMD64", "RELEASE_BASE_IMAGE_ARM64", "CHART_REPO_URL", "COSIGN_KEY",
                 "COSIGN_PASSWORD", "COSIGN_PUBLIC_KEY", "HELM_SIGNING_KEY", "HELM_SIGNING_KEYRING",
                 "HELM_VERIFY_KEYRING", "KUBECONFIG")  # fmt: skip
        variables: dict[str, Any] = {name: env[name] for name in names}
        # A directory, not a file variable (gitlab-ci-local takes a plain path value for a file).
        variables["SECRETS_OPERATOR_CACHE_DIR"] = {
            "type": "variable",
            "values": {"*": env["SECRETS_OPERATOR_CACHE_DIR"]},
        }
        variables |= {
            "CHART_REPO_READER": self.repository.reader.user,
            "CHART_REPO_READER_PASSWORD": self.repository.reader.password,
            "CHART_REPO_PUBLISHER": self.repository.publisher.user,
            "CHART_REPO_PUBLISHER_PASSWORD": self.repository.publisher.password,
            "DEPLOY_NAMESPACE": {"values": {"staging": NAMESPACE, "production": PRODUCTION}},
            "DEPLOY_RELEASE_NAME": {"values": {"staging": "so-staging", "production": "so-production"}},
        }
        return variables

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

    def cut(self, version: str, *, broken_readiness: bool = False, push: bool = True) -> None:
        """Note a change under Unreleased, move the entries under ``version``, commit and tag, as
        a maintainer does (and push, unless not ``push``)."""
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
        if push:
            self.git("push", "-q", "origin", "main", f"v{version}")

    def uncut(self, version: str) -> None:
        """Take back an unpushed ``cut``: its tag and its commit."""
        self.git("tag", "-d", f"v{version}")
        self.git("reset", "-q", "--hard", "HEAD~1")

    def published(self) -> tuple[dict[str, bytes], str, str]:
        """Everything a release writes: every file of the chart repository (index, packages,
        provenance), and the tags of the image and of the OCI chart (cosign's signatures and
        attestations are tags too)."""
        host = self.world.registry.host
        charts = self.repository.workdir / "charts"
        return (
            {
                str(path.relative_to(charts)): path.read_bytes()
                for path in sorted(charts.rglob("*"))
                if path.is_file()
            },
            _crane("ls", f"{host}/platform/secrets-operator"),
            _crane("ls", f"{host}/platform/charts/secrets-operator"),
        )

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
    # An origin to push to, whose main is what gitlab-ci-local diffs a push against (rules: changes).
    origin, clone = workdir / "origin.git", workdir / "clone"
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(["git", "clone", "-q", "--bare", "--branch", "main", str(repo), str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    subprocess.run(["git", "remote", "set-head", "origin", "main"], cwd=clone, check=True)
    reader = Credentials("reader", secrets.token_urlsafe(12))
    publisher = Credentials("publisher", secrets.token_urlsafe(12))
    with chart_repository(workdir / "charts", reader=reader, publisher=publisher) as repository:
        shipped.kubectl("create", "namespace", NAMESPACE)
        shipped.kubectl("create", "namespace", PRODUCTION)
        # The blueprint both environments copy (deploy/values-*.yaml), unless an earlier module made it.
        if not shipped.kubectl("get", "namespace", "auth", "--ignore-not-found"):
            shipped.kubectl("create", "namespace", "auth")
        if not shipped.kubectl("-n", "auth", "get", "secret", "htpasswd", "--ignore-not-found"):
            shipped.kubectl(
                "-n", "auth", "create", "secret", "generic", "htpasswd", "--from-literal=auth=pipeline:x"
            )
        yield Pipeline(shipped, clone, repository, cosign, gpg, workdir)


def test_tag_v0_2_0_releases_signed_multi_arch_artifacts_then_deploys_staging_then_production(
    pipeline: Pipeline,
) -> None:
    world = pipeline.world
    for environment in ("staging", "production"):
        world.kubectl("create", "namespace", f"app-{environment}")
        world.kubectl("label", "namespace", f"app-{environment}", f"environment={environment}")
    pipeline.cut("0.2.0")
    jobs = pipeline.gitlab(tag="v0.2.0", platforms="linux/amd64,linux/arm64")
    assert jobs == {"release": "PASS", "deploy-staging": "PASS", "deploy-production": "PASS"}, (
        pipeline.last_pipeline
    )

    image = f"{world.registry.host}/platform/secrets-operator"
    index = json.loads(_crane("manifest", f"{image}:0.2.0"))
    by_arch = {m["platform"]["architecture"]: f"{image}@{m['digest']}" for m in index["manifests"]}
    assert sorted(by_arch) == ["amd64", "arm64"]
    run = ("run", "--rm", "--network=none", "--platform=linux/arm64", by_arch["arm64"])
    said = world.docker.run(*run, "--version", what="the arm64 image under emulation")
    assert said.split() == ["secrets-operator", "0.2.0"]
    assert world.docker.run(*run, "check", "--help", what="check --help").startswith(
        "usage: secrets-operator check"
    )

    cosign, public = release_tools().cosign, str(pipeline.cosign.public)
    # Each signature carries the version it was signed for: the index's, each image's (signed
    # recursively) and the OCI chart's.
    signed_for = ("-a", "version=0.2.0")
    for reference in (f"{image}:0.2.0", *by_arch.values()):
        _cosign(cosign, "verify", "--key", public, *signed_for, reference)
    for reference in by_arch.values():
        verified = _cosign(cosign, "verify-attestation", "--type", "spdxjson", "--key", public, reference)
        statement = json.loads(base64.b64decode(json.loads(verified.splitlines()[0])["payload"]))
        assert statement["predicateType"] == "https://spdx.dev/Document"
        assert statement["predicate"]["spdxVersion"].startswith("SPDX-")
    chart = f"{world.registry.host}/platform/charts/secrets-operator"
    _cosign(cosign, "verify", "--key", public, *signed_for, f"{chart}@{_crane('digest', f'{chart}:0.2.0')}")

    # As a user of the original: helm repo add with credentials, then every released version.
    assert [entry["version"] for entry in _helm_search(pipeline)] == ["0.2.0"]
    prov = pipeline.repository_file("secrets-operator-0.2.0.tgz.prov")
    assert prov.startswith(b"-----BEGIN PGP SIGNED MESSAGE")

    for environment, namespace in (("staging", NAMESPACE), ("production", PRODUCTION)):
        assert _release(pipeline, f"so-{environment}", namespace) == ("deployed", "0.2.0")
        deployment = world.json("-n", namespace, "get", "deployment", f"so-{environment}-secrets-operator")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{image}@{_crane('digest', f'{image}:0.2.0')}"
        copied = functools.partial(_copy, world, f"app-{environment}")
        wait_until(copied, timeout=60, what=f"the copy in app-{environment}")


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


def test_a_new_version_with_a_wrong_cosign_password_or_gpg_key_is_refused_after_building_pushing_nothing(
    pipeline: Pipeline,
) -> None:
    before = pipeline.published()
    pipeline.cut("0.2.1", push=False)
    try:
        wrong = pipeline.tool("release", "0.2.1", check=False, COSIGN_PASSWORD="wrong")
        assert wrong.returncode == 2, wrong.stderr
        assert "[release] building " in wrong.stderr  # refused after the build, before the first push
        assert "error: the cosign key does not sign (wrong COSIGN_PASSWORD?)" in wrong.stderr
        assert pipeline.published() == before
        no_key = pipeline.tool("release", "0.2.1", check=False, HELM_SIGNING_KEY="Nobody <nobody@x.invalid>")
        assert no_key.returncode == 2, no_key.stderr
        assert "error: helm package --sign: Error: private key not found" in no_key.stderr
        assert pipeline.published() == before
    finally:
        pipeline.uncut("0.2.1")


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


def test_tag_v0_3_0_rolls_staging_with_a_handover_and_no_namespace_misses_its_copy(
    pipeline: Pipeline,
) -> None:
    world = pipeline.world
    pipeline.cut("0.3.0")
    holder = _holder(world)
    jobs: dict[str, str] = {}
    running = threading.Thread(target=lambda: jobs.update(pipeline.gitlab(tag="v0.3.0")))
    running.start()
    created: list[str] = []
    while running.is_alive():
        # New namespaces all through the pipeline, so some land while staging rolls.
        name = f"staging-roll-{len(created)}"
        world.kubectl("create", "namespace", name)
        world.kubectl("label", "namespace", name, "environment=staging")
        created.append(name)
        running.join(timeout=2)
    assert jobs == {"release": "PASS", "deploy-staging": "PASS", "deploy-production": "PASS"}, (
        pipeline.last_pipeline
    )
    assert _release(pipeline, "so-staging", NAMESPACE) == ("deployed", "0.3.0")
    assert _holder(world) != holder
    for name in created:
        wait_until(functools.partial(_copy, world, name), timeout=60, what=f"the copy in {name}")

    # 0.2.0's image, signed, pushed under 0.3.0's tag: signed, but not as 0.3.0.
    released = _crane("digest", _image(pipeline, "0.3.0"))
    _crane("copy", _image(pipeline, "0.2.0"), _image(pipeline, "0.3.0"))
    try:
        older = pipeline.tool("deploy", "staging", "--version", "0.3.0", check=False)
    finally:
        image = f"{world.registry.host}/platform/secrets-operator"
        _crane("copy", f"{image}@{released}", _image(pipeline, "0.3.0"))
    assert older.returncode == 2, older.stderr
    assert "is refused: the signature of" in older.stderr
    assert "missing or incorrect annotation" in older.stderr


def test_an_edit_of_values_staging_on_main_redeploys_staging_only(pipeline: Pipeline) -> None:
    staging = len(pipeline.helm("history", "so-staging", "-n", NAMESPACE))
    production = pipeline.helm("history", "so-production", "-n", PRODUCTION)
    values = pipeline.clone / "deploy" / "values-staging.yaml"
    values.write_text(values.read_text().replace("logLevel: DEBUG", "logLevel: INFO"))
    pipeline.git("commit", "-qam", "Staging logs at INFO")
    # A push to main, not yet on origin: its changes are that file. Its `tests` job runs `nox -s
    # tests` over the unit suite and one integration file (pytest reads PYTEST_ADDOPTS, as a
    # pipeline variable can set it): the whole suite has run as `nox -s tests` on this commit
    # already, and running it here again would add eight minutes to every CI run and prove no more.
    jobs = pipeline.gitlab(PYTEST_ADDOPTS=f"tests/unit {PUSH_TESTS_INTEGRATION}")
    pipeline.git("push", "-q", "origin", "main")
    checks = {"lint", "typecheck", "tests", "chart-lint", "chart-repository"}
    assert jobs == {job: "PASS" for job in (*checks, "deploy-staging")}, pipeline.last_pipeline
    # The tests job ran pytest over both selections (gitlab-ci-local keeps each job's log).
    log = (pipeline.clone / ".gitlab-ci-local" / "output" / "tests.log").read_text()
    assert re.search(r"=+ \d+ passed\b", log), log[-3000:]
    assert "tests/unit/test_controller.py" in log, log[-3000:]
    assert PUSH_TESTS_INTEGRATION in log, log[-3000:]
    history = pipeline.helm("history", "so-staging", "-n", NAMESPACE)
    assert len(history) == staging + 1
    assert history[-1]["chart"] == "secrets-operator-0.3.0"
    deployment = pipeline.world.json("-n", NAMESPACE, "get", "deployment", "so-staging-secrets-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "SECRETS_OPERATOR_LOG_LEVEL", "value": "INFO"} in container["env"]
    assert pipeline.helm("history", "so-production", "-n", PRODUCTION) == production


def test_tag_v0_4_0_whose_pods_never_become_ready_is_rolled_back_and_stops_before_production(
    pipeline: Pipeline,
) -> None:
    pipeline.cut("0.4.0", broken_readiness=True)
    jobs = pipeline.gitlab(tag="v0.4.0")
    assert jobs == {"release": "PASS", "deploy-staging": "FAIL", "rollback-staging": "PASS"}, (
        pipeline.last_pipeline
    )
    assert "staging: the upgrade to 0.4.0 failed and was rolled back" in pipeline.last_pipeline
    for name, namespace in (("so-staging", NAMESPACE), ("so-production", PRODUCTION)):
        assert _release(pipeline, name, namespace) == ("deployed", "0.3.0")
    assert wait_until(lambda: _ready_on(pipeline.world, "0.3.0"), timeout=120, what="0.3.0's Pods Ready")


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


def _release(pipeline: Pipeline, name: str, namespace: str) -> tuple[str, str]:
    """The Helm release's status and chart version, as `helm list` shows them."""
    (found,) = [entry for entry in pipeline.helm("list", "-n", namespace) if entry["name"] == name]
    return str(found["status"]), str(found["chart"]).removeprefix("secrets-operator-")


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
