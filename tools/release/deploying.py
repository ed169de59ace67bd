"""``nox -s deploy -- <environment>``: install or upgrade one environment from the chart repository.

The way the original project deployed, with the checks it lacked, each before anything changes:
the repository is added with credentials from the environment (a wrong password is one line);
the version must exist there (else the versions that do are listed); the chart is pulled with
``--verify`` against the release's GPG keyring (``.prov``) and the image's digest must carry a
cosign signature by the release key, so an unsigned or tampered artifact is refused; the values
file must pass the chart's schema. Then ``helm upgrade --install`` of the verified archive, with
the image pinned to the verified digest, ``--atomic --wait``: a release whose Pods never become
Ready is rolled back by Helm, and the pipeline says so.

The version is the one given; without one, the one the environment runs now (a changed values
file redeploys the same version), or, for a first install, the newest released.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tools.release import versions
from tools.release.publishing import ReleaseError, Tools, oci_digest
from tools.release.settings import DeploySettings
from tools.release.signing import SignatureError, run, verify_oci

DEPLOY_DIR = versions.REPO / "deploy"
REPO_NAME = "secrets-operator-releases"


class DeployError(RuntimeError):
    """The deploy was refused or failed; the message says which step and why."""


def environments(deploy_dir: Path = DEPLOY_DIR) -> list[str]:
    return sorted(
        path.name.removeprefix("values-").removesuffix(".yaml") for path in deploy_dir.glob("values-*.yaml")
    )


def values_file(environment: str, deploy_dir: Path = DEPLOY_DIR) -> Path:
    path = deploy_dir / f"values-{environment}.yaml"
    if not path.is_file():
        raise DeployError(
            f"no environment {environment!r}: deploy/ has {', '.join(environments(deploy_dir)) or 'none'}"
        )
    return path


@dataclasses.dataclass(frozen=True)
class Deployed:
    environment: str
    version: str
    image: str
    revision: int
    seconds: float


class Helm:
    """Helm with a repository configuration of its own (never the user's ~/.config/helm)."""

    def __init__(self, helm: Path, workdir: Path, kubeconfig: str | None) -> None:
        self.helm = helm
        self.env = {
            "HELM_REPOSITORY_CONFIG": str(workdir / "repositories.yaml"),
            "HELM_REPOSITORY_CACHE": str(workdir / "repository-cache"),
            "HELM_REGISTRY_CONFIG": str(workdir / "registry.json"),
        }
        self.kube = ["--kubeconfig", kubeconfig] if kubeconfig else []

    def __call__(
        self, *args: str | Path, what: str, stdin: str = "", cluster: bool = False, timeout: float = 600
    ) -> str:
        argv = [self.helm, *args, *(self.kube if cluster else [])]
        try:
            return run(argv, what=what, env=self.env, stdin=stdin, timeout=timeout)
        except SignatureError as exc:
            raise DeployError(str(exc)) from None


def deploy(
    environment: str,
    settings: DeploySettings,
    tools: Tools,
    *,
    workdir: Path,
    version: str | None = None,
    deploy_dir: Path = DEPLOY_DIR,
    timeout: str = "180s",
    say: Callable[[str], None] = print,
) -> Deployed:
    values = values_file(environment, deploy_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Helm's repository configuration holds the reader's password: it lives only as long as this.
    with tempfile.TemporaryDirectory(dir=workdir, prefix="deploy-") as scratch:
        return _deploy(environment, values, settings, tools, Path(scratch), version, timeout, say)


def _deploy(
    environment: str,
    values: Path,
    settings: DeploySettings,
    tools: Tools,
    workdir: Path,
    version: str | None,
    timeout: str,
    say: Callable[[str], None],
) -> Deployed:
    started = time.monotonic()
    wait = seconds(timeout)  # a malformed --timeout is refused before anything is read or changed
    helm = Helm(tools.helm, workdir, os.environ.get("KUBECONFIG"))
    repo = settings.chart_repo
    helm(
        "repo",
        "add",
        REPO_NAME,
        repo.url,
        "--username",
        repo.username,
        "--password-stdin",
        "--force-update",
        what=f"the chart repository {repo.url} refused user {repo.username!r} or cannot be read",
        stdin=repo.password,
    )
    found = json.loads(
        helm(
            "search",
            "repo",
            f"{REPO_NAME}/secrets-operator",
            "--versions",
            "-o",
            "json",
            what="helm search repo",
        )
    )
    released = [entry["version"] for entry in found]
    if not released:
        raise DeployError(f"the chart repository {repo.url} has no release of secrets-operator")
    if version is None:
        version = current_version(helm, settings) or released[0]
    if version not in released:
        raise DeployError(f"version {version} does not exist in {repo.url}; released: {', '.join(released)}")

    say(f"{environment}: verifying chart {version} (GPG) and its image (cosign)")
    pulled = workdir / "pulled"
    pulled.mkdir(exist_ok=True)
    helm(
        "pull",
        f"{REPO_NAME}/secrets-operator",
        "--version",
        version,
        "--destination",
        pulled,
        "--verify",
        "--keyring",
        settings.verify_keyring,
        what=f"chart {version} does not verify against {settings.verify_keyring}",
    )
    archive = pulled / f"secrets-operator-{version}.tgz"
    image = f"{settings.registry.image}:{versions.image_tag(version)}"
    try:
        digest = oci_digest(tools, settings.registry, image)
    except ReleaseError as exc:
        raise DeployError(str(exc)) from None
    if digest is None:
        raise DeployError(f"image {image} does not exist")
    try:
        verify_oci(
            f"{settings.registry.image}@{digest}",
            settings.cosign_public,
            cosign=tools.cosign,
            insecure=settings.registry.insecure,
            annotations={"version": version},  # signed for this version, not only signed
        )
    except SignatureError as exc:
        raise DeployError(f"image {image} ({digest}) is refused: {exc}") from None

    pinned = ["--set", f"image.repository={settings.registry.image}", "--set", f"image.digest={digest}"]
    helm(
        "template",
        settings.release_name,
        archive,
        "--namespace",
        settings.namespace,
        "--values",
        values,
        *pinned,
        what=f"{values.name} is refused by the chart {version}",
    )
    say(f"{environment}: helm upgrade --install {settings.release_name} {version} ({digest})")
    helm(
        "upgrade",
        "--install",
        settings.release_name,
        archive,
        "--namespace",
        settings.namespace,
        "--create-namespace",
        "--values",
        values,
        *pinned,
        "--atomic",
        "--wait",
        "--timeout",
        timeout,
        what=f"{environment}: the upgrade to {version} failed and was rolled back",
        cluster=True,
        timeout=wait + 300,  # helm rolls back after its own timeout; never cut that short
    )
    status = json.loads(
        helm(
            "status",
            settings.release_name,
            "--namespace",
            settings.namespace,
            "-o",
            "json",
            what="helm status",
            cluster=True,
        )
    )
    return Deployed(
        environment,
        version,
        f"{settings.registry.image}@{digest}",
        int(status["version"]),
        time.monotonic() - started,
    )


def seconds(duration: str) -> float:
    """A Helm duration (``180s``, ``5m``, ``1h30m``) in seconds; refused when it is none."""
    total, number = 0.0, ""
    for char in duration.strip():
        if char.isdigit() or char == ".":
            number += char
        elif char in "hms" and number:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
        else:
            raise DeployError(f"--timeout {duration!r} is not a duration such as 180s or 5m")
    if number or total <= 0:
        raise DeployError(f"--timeout {duration!r} is not a duration such as 180s or 5m")
    return total


def current_version(helm: Helm, settings: DeploySettings) -> str | None:
    """The chart version the environment runs now; None when it has no release yet. A release in
    any other state than deployed (a failed upgrade that was not rolled back) is refused: a
    values change must not quietly deploy the newest release, nor the failed one again."""
    try:
        history = json.loads(
            helm(
                "history",
                settings.release_name,
                "--namespace",
                settings.namespace,
                "--max",
                "1",
                "-o",
                "json",
                what="helm history",
                cluster=True,
            )
        )
    except DeployError as exc:
        if "not found" in str(exc):
            return None
        raise
    (latest,) = history
    chart = str(latest.get("chart", ""))
    if latest.get("status") != "deployed":
        raise DeployError(
            f"{settings.release_name} is {latest.get('status')} at {chart}: "
            "give --version, or roll back first"
        )
    return chart.removeprefix("secrets-operator-")


def rollback(settings: DeploySettings, tools: Tools, *, workdir: Path) -> str:
    """``helm rollback`` to the previous revision: the pipeline's answer to a failed deploy."""
    helm = Helm(tools.helm, workdir, os.environ.get("KUBECONFIG"))
    history = json.loads(
        helm(
            "history",
            settings.release_name,
            "--namespace",
            settings.namespace,
            "-o",
            "json",
            what="helm history",
            cluster=True,
        )
    )
    if history and history[-1].get("status") == "deployed":
        return (
            f"{settings.release_name} is deployed at revision {history[-1]['revision']}; nothing to roll back"
        )
    helm(
        "rollback",
        settings.release_name,
        "--namespace",
        settings.namespace,
        "--wait",
        what="helm rollback",
        cluster=True,
    )
    return f"{settings.release_name} rolled back"
