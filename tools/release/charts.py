"""The chart packaged with the tree's version: ``helm package --version --app-version``.

``chart/secrets-operator/Chart.yaml`` holds ``0.0.0`` for both, a placeholder that no release
carries: the chart's ``version`` is the git version as SemVer, its ``appVersion`` the image tag
that the Deployment falls back to (``image.tag`` defaults to it), so a packaged chart pulls the
image built from the same commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tools.release.versions import REPO, VersionError, chart_version, image_tag

CHART = REPO / "chart" / "secrets-operator"
#: What the tree's Chart.yaml says for version and appVersion: never a real release.
PLACEHOLDER = "0.0.0"


def package(helm: Path, destination: Path, version: str, *, chart: Path = CHART) -> Path:
    """Package ``chart`` as ``version`` into ``destination``; the archive's path."""
    argv = [str(helm), "package", str(chart), "--destination", str(destination)]
    argv += ["--version", chart_version(version), "--app-version", image_tag(version)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise VersionError(f"helm package failed: {(done.stdout + done.stderr).strip()[-2000:]}")
    archive = Path(done.stdout.strip().rsplit(": ", 1)[-1])
    if not archive.is_file():
        raise VersionError(f"helm package said {done.stdout.strip()!r}, and no archive is there")
    return archive
