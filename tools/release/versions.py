"""Every version string of a build, derived from git: the tag ``vX.Y.Z`` is the only source.

The Python package gets its version from hatch-vcs at build time; this module asks
setuptools-scm (what hatch-vcs runs) with the very options ``pyproject.toml`` gives hatch-vcs, so
the package, ``secrets-operator --version``, the image tag, its OCI labels and the chart's
``version``/``appVersion`` can never disagree. A commit at a tag builds ``X.Y.Z``; any other tree
builds a development version (``X.Y.Z.devN+g<sha>``, PEP 440), never a release number.

Deliberately not here: writing a version into a file of the tree, or trusting an environment
variable over git (a Docker build has no ``.git``, so it is *given* the version this module
computes, as a build argument).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform as _platform
import re
import subprocess
import tomllib
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: A release tag: ``v`` and three numbers without leading zeros (SemVer's core, PEP 440's release).
TAG = re.compile(r"^v(?P<version>(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*))$")
_RELEASE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
#: What setuptools-scm builds between tags: X.Y[.Z].devN with an optional local part.
_DEVELOPMENT = re.compile(
    r"^(?P<release>\d+(?:\.\d+){1,2})\.dev(?P<distance>\d+)(?:\+(?P<local>[a-z0-9.]+))?$"
)


class VersionError(ValueError):
    """A tag or a version that a release cannot be made from; the message says which and why."""


def release_of_tag(tag: str) -> str:
    """``v1.2.3`` → ``1.2.3``; anything else is refused with a one-line reason."""
    match = TAG.match(tag)
    if match is None:
        raise VersionError(f"tag {tag!r} is not vX.Y.Z (three numbers without leading zeros, e.g. v0.2.0)")
    return match.group("version")


def is_release(version: str) -> bool:
    """Whether ``version`` is a release number (X.Y.Z), not a development version."""
    return _RELEASE.match(version) is not None


def scm_options(pyproject: Path = REPO / "pyproject.toml") -> dict[str, Any]:
    """The setuptools-scm options that pyproject.toml gives hatch-vcs: one configuration for both."""
    data = tomllib.loads(pyproject.read_text())
    options = data["tool"]["hatch"]["version"]["raw-options"]
    assert isinstance(options, dict)
    return dict(options)


def version(root: Path = REPO) -> str:
    """The version of the tree at ``root``, as the package built from it will carry it."""
    from setuptools_scm import get_version  # a tools-only dependency (the `test` extra)

    options = scm_options(root / "pyproject.toml")
    with warnings.catch_warnings():
        # `tag_regex` is deprecated in setuptools-scm's own API but is the key hatch-vcs reads.
        warnings.filterwarnings("ignore", message=".*'tag_regex' is deprecated", category=DeprecationWarning)
        found = get_version(root=str(root), **options)
    assert isinstance(found, str)
    return found


def image_tag(version: str) -> str:
    """An OCI tag for ``version``: ``+`` is not allowed in a tag, so it becomes ``_`` (as Helm does)."""
    tag = version.replace("+", "_")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise VersionError(f"version {version!r} gives no valid OCI tag")
    return tag


def chart_version(version: str) -> str:
    """``version`` as the SemVer 2 that Helm requires of a chart.

    A release is its own SemVer; a development version ``X.Y[.Z].devN+local`` becomes
    ``X.Y.Z-dev.N+local``, which SemVer orders before the release X.Y.Z, as PEP 440 does.
    """
    if is_release(version):
        return version
    match = _DEVELOPMENT.match(version)
    if match is None:
        raise VersionError(f"version {version!r} is neither X.Y.Z nor a development version X.Y.Z.devN")
    parts = [*match.group("release").split("."), "0"][:3]
    semver = f"{'.'.join(parts)}-dev.{match.group('distance')}"
    if match.group("local"):
        semver += f"+{match.group('local')}"
    return semver


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise VersionError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """What an image build is told about its source: the Dockerfile's build arguments."""

    version: str
    revision: str
    source_date_epoch: int

    @property
    def created(self) -> str:
        """RFC 3339 UTC of ``source_date_epoch``: the same for every build of one commit."""
        moment = datetime.datetime.fromtimestamp(self.source_date_epoch, tz=datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def build_args(self) -> dict[str, str]:
        return {
            "VERSION": self.version,
            "REVISION": self.revision,
            "CREATED": self.created,
            "SOURCE_DATE_EPOCH": str(self.source_date_epoch),
        }


def build_info(root: Path = REPO) -> BuildInfo:
    """The version, the commit, and ``SOURCE_DATE_EPOCH`` (from the environment, else the commit's time)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or _git(root, "log", "-1", "--format=%ct")
    if not epoch.isdigit():
        raise VersionError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds")
    return BuildInfo(
        version=version(root), revision=_git(root, "rev-parse", "HEAD"), source_date_epoch=int(epoch)
    )


#: The platform of this machine, as Docker names it.
HOST_PLATFORM = "linux/" + {"x86_64": "amd64", "aarch64": "arm64"}.get(
    _platform.machine(), _platform.machine()
)


def platform_build_args(target: str, base_images: dict[str, str]) -> dict[str, str]:
    """The Dockerfile's platform arguments for the classic builder, which does not set them (and is
    given no ``--platform``: it cannot copy files into a stage of another platform than that).

    The build stage runs on this machine's platform and unpacks the target's wheels, so only the
    final stage runs under emulation. A base image given for the target alone (a single-platform
    image, not an index) is also the build stage's: that build runs wholly under emulation.
    """
    args = {"TARGETPLATFORM": target, "TARGETARCH": target.split("/")[1], "BUILDPLATFORM": HOST_PLATFORM}
    if target in base_images:
        args["PYTHON_IMAGE"] = base_images[target]
        args["BUILD_PYTHON_IMAGE"] = base_images.get(HOST_PLATFORM, base_images[target])
        if HOST_PLATFORM not in base_images:
            args["BUILDPLATFORM"] = target
    return args
