"""The release's and the deploy's inputs: every missing or malformed one is a clear line, and the
environment list and the index parsing that refusals rely on say what is really there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.release import deploying, publishing
from tools.release.settings import DeploySettings, ReleaseSettings, SettingsError


@pytest.fixture
def release_env(tmp_path: Path) -> dict[str, str]:
    for name in ("cosign.key", "secring.gpg"):
        (tmp_path / name).write_text("x")
    return {
        "RELEASE_REGISTRY": "127.0.0.1:5000/platform",
        "RELEASE_REGISTRY_INSECURE": "true",
        "CHART_REPO_URL": "http://127.0.0.1:8080/",
        "CHART_REPO_USERNAME": "publisher",
        "CHART_REPO_PASSWORD": "s3cret",
        "COSIGN_KEY": str(tmp_path / "cosign.key"),
        "COSIGN_PASSWORD": "pw",
        "HELM_SIGNING_KEY": "release",
        "HELM_SIGNING_KEYRING": str(tmp_path / "secring.gpg"),
        "RELEASE_BASE_IMAGE_ARM64": "base:arm64",
    }


def test_a_complete_environment_gives_the_release_its_targets(release_env: dict[str, str]) -> None:
    found = ReleaseSettings.from_env(release_env)
    assert found.registry.image == "127.0.0.1:5000/platform/secrets-operator"
    assert found.registry.charts == "oci://127.0.0.1:5000/platform/charts"
    assert found.registry.insecure
    assert found.chart_repo.url == "http://127.0.0.1:8080"
    assert found.platforms == ("linux/amd64", "linux/arm64")
    assert found.base_images == {"linux/arm64": "base:arm64"}
    assert "s3cret" not in repr(found)
    assert "'pw'" not in repr(found)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RELEASE_REGISTRY": ""}, "RELEASE_REGISTRY is not set"),
        ({"RELEASE_REGISTRY": "https://r.example"}, "without a scheme"),
        ({"RELEASE_REGISTRY_INSECURE": "maybe"}, "neither true nor false"),
        ({"CHART_REPO_URL": "ftp://x"}, "not an http"),
        ({"CHART_REPO_URL": "https://u:p@charts.example/x"}, "must not hold credentials"),
        ({"CHART_REPO_PASSWORD": ""}, "CHART_REPO_PASSWORD is not set"),
        ({"COSIGN_KEY": "/nonexistent/cosign.key"}, "COSIGN_KEY=/nonexistent/cosign.key is not a file"),
        ({"HELM_SIGNING_KEY": ""}, "HELM_SIGNING_KEY is not set"),
        ({"RELEASE_PLATFORMS": "linux/s390x"}, "is not linux/amd64 or linux/arm64"),
    ],
)
def test_a_missing_or_malformed_variable_is_named(
    release_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        ReleaseSettings.from_env({**release_env, **change})
    assert "\n" not in str(raised.value)


def test_a_deploy_needs_the_public_keys(release_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="COSIGN_PUBLIC_KEY is not set"):
        DeploySettings.from_env(release_env)
    (tmp_path / "cosign.pub").write_text("x")
    env = {**release_env, "COSIGN_PUBLIC_KEY": str(tmp_path / "cosign.pub")}
    with pytest.raises(SettingsError, match="HELM_VERIFY_KEYRING is not set"):
        DeploySettings.from_env(env)
    (tmp_path / "pubring.gpg").write_text("x")
    found = DeploySettings.from_env({**env, "HELM_VERIFY_KEYRING": str(tmp_path / "pubring.gpg")})
    assert (found.namespace, found.release_name) == ("secrets-operator", "secrets-operator")


def test_an_unknown_environment_lists_the_ones_there_are() -> None:
    assert deploying.environments() == ["production", "staging"]
    with pytest.raises(deploying.DeployError, match="no environment 'qa': deploy/ has production, staging"):
        deploying.values_file("qa")


def test_the_index_lists_every_released_version() -> None:
    index = b"""apiVersion: v1
entries:
  secrets-operator:
  - version: 0.3.0
  - version: 0.2.0
  other:
  - version: 9.9.9
"""
    assert publishing.chart_versions(index) == ["0.3.0", "0.2.0"]
    assert publishing.chart_versions(None) == []
    assert publishing.chart_versions(b"apiVersion: v1\nentries: {}\n") == []


@pytest.mark.parametrize("index", [b"hi\n", b"- a\n- b\n", b"entries: [1]\n", b"a: [\n"])
def test_an_index_that_is_not_a_helm_index_is_refused(index: bytes) -> None:
    with pytest.raises(publishing.ReleaseError, match=r"index\.yaml is not"):
        publishing.chart_versions(index)


@pytest.mark.parametrize(
    ("duration", "expected"), [("180s", 180), ("5m", 300), ("1h30m", 5400), ("2m30s", 150)]
)
def test_helm_durations_become_seconds(duration: str, expected: float) -> None:
    assert deploying.seconds(duration) == expected


@pytest.mark.parametrize("duration", ["", "soon", "10", "5x", "-3s", "0s"])
def test_a_timeout_that_is_not_a_duration_is_refused(duration: str) -> None:
    with pytest.raises(deploying.DeployError, match="is not a duration"):
        deploying.seconds(duration)
