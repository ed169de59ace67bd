"""Where a release goes and with which keys: read from the environment (CI variables and secrets).

Nothing of this is ever in the repository: registry addresses, repository credentials and keys
are the pipeline's. A missing or malformed variable is one clear line naming it.

- ``RELEASE_REGISTRY`` (release, deploy): the OCI registry and path, host[:port][/path]; images
  go to ``<it>/secrets-operator``, charts to ``oci://<it>/charts``.
- ``RELEASE_REGISTRY_INSECURE``: ``true`` when that registry speaks plain HTTP (a test registry).
- ``CHART_REPO_URL``, ``CHART_REPO_USERNAME``, ``CHART_REPO_PASSWORD``: the classic chart
  repository and its basic auth (a publisher for the release, a reader for a deploy).
- ``COSIGN_KEY``, ``COSIGN_PASSWORD`` (release): the cosign private key (a path) and its password.
- ``COSIGN_PUBLIC_KEY`` (deploy): the public key every image must be signed with.
- ``HELM_SIGNING_KEY``, ``HELM_SIGNING_KEYRING``, ``HELM_SIGNING_PASSPHRASE_FILE`` (release): the
  GPG key's name, the secret keyring holding it, its passphrase file (optional).
- ``HELM_VERIFY_KEYRING`` (deploy): the public keyring that checks the chart's ``.prov``.
- ``RELEASE_PLATFORMS`` (release): default ``linux/amd64,linux/arm64``.
- ``RELEASE_BASE_IMAGE_AMD64``, ``RELEASE_BASE_IMAGE_ARM64`` (release): a base image per
  architecture instead of the Dockerfile's default.
- ``DEPLOY_NAMESPACE``, ``DEPLOY_RELEASE_NAME`` (deploy): both default to ``secrets-operator``.
- ``KUBECONFIG`` (deploy): the environment's cluster.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from tools.release.signing import CosignKey, GpgKey


class SettingsError(ValueError):
    """A variable the release or the deploy needs is missing or malformed."""


def _required(env: Mapping[str, str], name: str, why: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set: {why}")
    return value


def _file(env: Mapping[str, str], name: str, why: str) -> Path:
    path = Path(_required(env, name, why))
    if not path.is_file():
        raise SettingsError(f"{name}={path} is not a file: {why}")
    return path


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "false").strip().lower()
    if value not in {"true", "false", "1", "0", ""}:
        raise SettingsError(f"{name}={value!r} is neither true nor false")
    return value in {"true", "1"}


@dataclasses.dataclass(frozen=True)
class Registry:
    """The OCI registry a release is pushed to and a deploy pulls from."""

    address: str  # host[:port][/path]
    insecure: bool

    @property
    def image(self) -> str:
        return f"{self.address}/secrets-operator"

    @property
    def charts(self) -> str:
        return f"oci://{self.address}/charts"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Registry:
        address = _required(
            env, "RELEASE_REGISTRY", "the OCI registry (host[:port][/path]) for images and charts"
        )
        if "://" in address:
            raise SettingsError(f"RELEASE_REGISTRY={address!r} must be host[:port][/path], without a scheme")
        return cls(address=address.rstrip("/"), insecure=_flag(env, "RELEASE_REGISTRY_INSECURE"))


@dataclasses.dataclass(frozen=True)
class ChartRepo:
    url: str
    username: str
    password: str = dataclasses.field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChartRepo:
        url = _required(env, "CHART_REPO_URL", "the chart repository's URL")
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"CHART_REPO_URL={url!r} is not an http(s) URL")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:
            # It would be printed, and written into index.yaml by `helm repo index --url`.
            raise SettingsError("CHART_REPO_URL must not hold credentials: use CHART_REPO_USERNAME/PASSWORD")
        return cls(
            url=url.rstrip("/"),
            username=_required(env, "CHART_REPO_USERNAME", "the chart repository's user"),
            password=_required(env, "CHART_REPO_PASSWORD", "the chart repository's password"),
        )


@dataclasses.dataclass(frozen=True)
class ReleaseSettings:
    registry: Registry
    chart_repo: ChartRepo
    cosign: CosignKey
    gpg: GpgKey
    platforms: tuple[str, ...]
    base_images: dict[str, str]  # platform -> base image, where one is given

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ReleaseSettings:
        platforms = tuple(
            p.strip() for p in env.get("RELEASE_PLATFORMS", "linux/amd64,linux/arm64").split(",") if p.strip()
        )
        for platform in platforms:
            if platform not in {"linux/amd64", "linux/arm64"}:
                raise SettingsError(f"RELEASE_PLATFORMS: {platform!r} is not linux/amd64 or linux/arm64")
        bases = {}
        for platform in platforms:
            base = env.get(f"RELEASE_BASE_IMAGE_{platform.split('/')[1].upper()}", "").strip()
            if base:
                bases[platform] = base
        passphrase = env.get("HELM_SIGNING_PASSPHRASE_FILE", "").strip()
        return cls(
            registry=Registry.from_env(env),
            chart_repo=ChartRepo.from_env(env),
            cosign=CosignKey(
                private=_file(env, "COSIGN_KEY", "the cosign private key that signs the image and the chart"),
                public=Path(env.get("COSIGN_PUBLIC_KEY", "") or "/nonexistent"),
                password=env.get("COSIGN_PASSWORD", ""),
            ),
            gpg=GpgKey(
                name=_required(env, "HELM_SIGNING_KEY", "the GPG key name that signs the chart (.prov)"),
                secring=_file(env, "HELM_SIGNING_KEYRING", "the GPG secret keyring holding HELM_SIGNING_KEY"),
                pubring=Path("/nonexistent"),
                passphrase_file=Path(passphrase) if passphrase else None,
            ),
            platforms=platforms,
            base_images=bases,
        )


@dataclasses.dataclass(frozen=True)
class DeploySettings:
    registry: Registry
    chart_repo: ChartRepo
    cosign_public: Path
    verify_keyring: Path
    namespace: str
    release_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DeploySettings:
        return cls(
            registry=Registry.from_env(env),
            chart_repo=ChartRepo.from_env(env),
            cosign_public=_file(
                env, "COSIGN_PUBLIC_KEY", "the cosign public key that the image must be signed with"
            ),
            verify_keyring=_file(
                env, "HELM_VERIFY_KEYRING", "the GPG public keyring that the chart must be signed with"
            ),
            namespace=env.get("DEPLOY_NAMESPACE", "").strip() or "secrets-operator",
            release_name=env.get("DEPLOY_RELEASE_NAME", "").strip() or "secrets-operator",
        )
