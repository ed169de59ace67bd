"""The image installs exactly what is locked, the way the `image` nox session repeats it.

The `image` session can only vouch for the Dockerfile if both install the same way, and the
lock can only pin what pyproject.toml asks for if every runtime dependency is in it, inside its
range, with hashes.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_and_image_session_pin_the_same_wheel_builder() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    noxfile = (ROOT / "noxfile.py").read_text()
    pinned = re.search(r'BUILD_REQUIREMENT = "([^"]+)"', noxfile)
    assert pinned is not None
    assert f"pip install {pinned.group(1)}\n" in dockerfile


def locked() -> dict[NormalizedName, tuple[Version, list[str]]]:
    """requirements.lock as name → (pinned version, hashes)."""
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    found: dict[NormalizedName, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        assert version, f"requirements.lock: {requirement} is not pinned with =="
        hashes = [option.removeprefix("--hash=") for option in options if option.startswith("--hash=")]
        found[canonicalize_name(name)] = (Version(version), hashes)
    return found


def test_every_runtime_dependency_is_locked_inside_its_range_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        wanted = canonicalize_name(requirement.name)
        assert wanted in pins, f"{wanted} is a dependency but not in requirements.lock: run `nox -s lock`"
        assert requirement.specifier.contains(pins[wanted][0]), (
            f"{wanted}=={pins[wanted][0]} is outside {dependency}"
        )
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no hash in requirements.lock"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", digest) for digest in hashes), name


def test_the_image_installs_the_lock_with_hashes_and_wheels_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "COPY requirements.lock ./" in dockerfile
    # The one pip command that reads the lock (continuation lines joined): every flag, on it.
    (install,) = [
        command
        for command in dockerfile.replace("\\\n", " ").splitlines()
        if "pip install" in command and "-r requirements.lock" in command
    ]
    for flag in ("--require-hashes", "--only-binary=:all:", "--no-deps"):
        assert f" {flag} " in install, f"the lock is installed without {flag}"
    assert '"--require-hashes", "--only-binary=:all:", "-r", LOCK_FILE' in noxfile
    # The package alone (its dependencies are the lock's), compiled afterwards like them.
    joined = dockerfile.replace("\\\n", " ")
    assert re.search(r"install --no-deps --no-compile\s+/dist/secrets_operator-\*\.whl", joined)
    assert re.search(
        r"compileall -q --invalidation-mode checked-hash .*/secrets_operator\"$", joined, re.MULTILINE
    )


def test_the_base_image_is_pinned_by_digest() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.\d+-slim-[a-z]+@sha256:[0-9a-f]{64}", base.group(1))


def test_image_runs_as_the_numeric_user_the_chart_expects() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = (ROOT / "chart" / "secrets-operator" / "values.yaml").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user is not None
    assert f"runAsUser: {user.group(1)}" in values
    assert 'ENTRYPOINT ["secrets-operator"]' in dockerfile
    assert 'CMD ["run"]' in dockerfile
