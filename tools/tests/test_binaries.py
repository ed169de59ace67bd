"""The test tooling's version choice: which Kubernetes and etcd a run builds and starts.

A wrong pin here would make every integration result speak of a version it did not run, so the
wrapper modules and the table in tools/binaries.py are checked against each other.
"""

from __future__ import annotations

import re

import pytest

from tools.binaries import (
    DEFAULT_MINOR,
    ETCD_MINOR,
    KUBERNETES_ENV,
    MINORS,
    WRAPPERS,
    BuildError,
    pinned_version,
    release,
)


def test_the_default_is_the_newest_supported_minor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KUBERNETES_ENV, raising=False)
    newest = max(MINORS, key=lambda m: tuple(map(int, m.split("."))))
    assert newest == DEFAULT_MINOR
    chosen = release()
    assert chosen.minor == DEFAULT_MINOR
    ordered = tuple(sorted(MINORS, key=lambda m: tuple(map(int, m.split(".")))))
    assert ordered == MINORS


@pytest.mark.parametrize("given", ["1.35", "v1.35", " 1.35 "])
def test_a_minor_is_chosen_by_the_environment(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KUBERNETES_ENV, given)
    assert release().minor == "1.35"
    assert release().kubernetes_version.startswith("v1.35.")


def test_the_exact_pinned_version_is_accepted_and_another_patch_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pinned = release("1.36").kubernetes_version
    assert release(pinned).minor == "1.36"
    monkeypatch.setenv(KUBERNETES_ENV, "1.36.0" if pinned != "v1.36.0" else "1.36.1")
    with pytest.raises(BuildError, match=f"this project pins {pinned} for 1.36"):
        release()


@pytest.mark.parametrize("given", ["1.34", "1.38", "latest", "1", "1.35.4.1", ""])
def test_an_unsupported_choice_names_what_is_supported(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KUBERNETES_ENV, given or "nonsense")
    with pytest.raises(BuildError) as refused:
        release()
    assert KUBERNETES_ENV in str(refused.value)
    assert "supported minors: 1.35, 1.36, 1.37" in str(refused.value)


def test_every_wrapper_module_is_a_supported_minor_and_the_reverse() -> None:
    on_disk = {path.name for path in (WRAPPERS / "kubernetes").iterdir() if (path / "go.mod").is_file()}
    assert on_disk == set(MINORS)
    etcd_on_disk = {path.name for path in (WRAPPERS / "etcd").iterdir() if (path / "go.mod").is_file()}
    assert etcd_on_disk == set(ETCD_MINOR.values())


@pytest.mark.parametrize("minor", MINORS)
def test_each_wrapper_pins_its_minor_and_every_staging_module_at_the_same_patch(minor: str) -> None:
    chosen = release(minor)
    version = chosen.kubernetes_version
    assert re.fullmatch(rf"v{re.escape(minor)}\.\d+", version)
    staging = "v0." + version.removeprefix("v1.")
    replaced = re.findall(
        r"^replace (k8s\.io/\S+) => \1 (\S+)$", (chosen.kubernetes_dir / "go.mod").read_text(), re.M
    )
    assert len(replaced) > 25  # every staging module of k8s.io/kubernetes
    assert {target for _, target in replaced} == {staging}
    assert chosen.etcd_version.startswith(f"v{ETCD_MINOR[minor]}.")
    assert pinned_version(chosen.etcd_dir, "go.etcd.io/etcd/server/v3") == chosen.etcd_version


def test_control_plane_and_node_of_one_minor_come_from_one_module() -> None:
    chosen = release()
    assert chosen.controlplane.module_dir == chosen.node.module_dir == chosen.kubernetes_dir
    assert chosen.controlplane.version == chosen.node.version == chosen.kubernetes_version
    assert f"gitVersion={chosen.kubernetes_version}" in " ".join(chosen.controlplane.ldflags)
    others = [release(minor).controlplane.cache_dir for minor in MINORS]
    assert len(set(others)) == len(MINORS)  # cached side by side
