"""Running the project's GitLab pipeline here: gitlab-ci-local, pinned, from the npm registry.

The project this one replaces ran on GitLab CI; ``.gitlab-ci.yml`` is executed for real by
gitlab-ci-local with the shell executor (the e2e tests drive it against the node's registry, a
chart repository and the node). It is installed into the cache, not globally, at the version
that runs on the Node this machine has (4.70.1: later ones need a newer Node), with Debian's
rsync, which it needs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tools.binaries import CACHE, _locked
from tools.images import apt_install

GITLAB_CI_LOCAL = "4.70.1"


class PipelineToolError(RuntimeError):
    """gitlab-ci-local could not be installed; the message says which step failed."""


def gitlab_ci_local() -> Path:
    """The gitlab-ci-local command, installed into the cache on first use."""
    prefix = CACHE / "gitlab-ci-local" / GITLAB_CI_LOCAL
    binary = prefix / "node_modules" / ".bin" / "gitlab-ci-local"
    if binary.is_file():
        return binary
    missing = [
        package for command, package in (("npm", "npm"), ("rsync", "rsync")) if shutil.which(command) is None
    ]
    if missing:
        apt_install(*missing)
    prefix.mkdir(parents=True, exist_ok=True)
    with _locked(prefix.parent / ".install.lock", what="gitlab-ci-local"):
        if not binary.is_file():
            done = subprocess.run(
                ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                 f"gitlab-ci-local@{GITLAB_CI_LOCAL}"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if done.returncode != 0 or not binary.is_file():
                raise PipelineToolError(
                    f"npm install gitlab-ci-local@{GITLAB_CI_LOCAL} failed: {done.stderr[-2000:]}"
                )
    return binary
