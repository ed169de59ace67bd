"""``python -m tools.release``: the version of this tree, its image build arguments, a release's notes.

    python -m tools.release version            # 0.3.0 at tag v0.3.0, else 0.3.1.dev2+g1a2b3c4
    python -m tools.release chart-version      # the same as SemVer, for Helm
    python -m tools.release build-args         # --build-arg lines for `docker build` (--classic: no BuildKit)
    python -m tools.release notes 0.3.0        # CHANGELOG.md's section for 0.3.0
    python -m tools.release check-tag v0.3.0   # refuses anything but vX.Y.Z
    python -m tools.release release 0.3.0      # build, sign, publish (nox -s release -- 0.3.0)
    python -m tools.release deploy staging [--version 0.3.0]   # (nox -s deploy -- staging)
    python -m tools.release rollback staging   # helm rollback, when a deploy left it failed
    python -m tools.release repo-check         # an authenticated GET of the chart repository's index

Where a release goes and with which keys comes from the environment (tools/release/settings.py,
docs/releasing.md). Errors are one line on stderr and exit 2; a refused release or deploy has
changed nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tools.release import changelog, versions

if TYPE_CHECKING:
    from tools.release.publishing import Tools


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="the version of this tree (from git)")
    commands.add_parser("chart-version", help="the version as the SemVer a chart carries")
    build_args = commands.add_parser(
        "build-args", help="docker build arguments: VERSION, REVISION, CREATED, SOURCE_DATE_EPOCH"
    )
    build_args.add_argument(
        "--classic",
        action="store_true",
        help="also this machine's BUILDPLATFORM, TARGETPLATFORM and TARGETARCH, which Docker's classic "
        "builder does not set (BuildKit does: given to it, they would override a --platform)",
    )
    notes = commands.add_parser("notes", help="CHANGELOG.md's section for a release")
    notes.add_argument("version")
    tag = commands.add_parser("check-tag", help="the release number of a vX.Y.Z tag, or a refusal")
    tag.add_argument("tag")
    publish = commands.add_parser("release", help="build, sign and publish a version (HEAD must be its tag)")
    publish.add_argument("version")
    publish.add_argument("--workdir", type=Path, default=versions.REPO / "dist" / "release")
    publish.add_argument("--json", type=Path, help="also write the artifacts as JSON here")
    to = commands.add_parser("deploy", help="verify and install a released version into an environment")
    to.add_argument("environment")
    to.add_argument("--version", help="default: what the environment runs now, else the newest release")
    to.add_argument("--timeout", default="180s", help="how long helm waits for Ready Pods (default 180s)")
    to.add_argument("--workdir", type=Path, default=versions.REPO / "dist" / "deploy")
    back = commands.add_parser("rollback", help="helm rollback of an environment whose deploy failed")
    back.add_argument("environment")
    back.add_argument("--workdir", type=Path, default=versions.REPO / "dist" / "deploy")
    commands.add_parser("repo-check", help="read the chart repository's index.yaml with its credentials")
    args = parser.parse_args(argv)
    try:
        if args.command in {"release", "deploy", "rollback", "repo-check"}:
            return _publishing(args)
        if args.command == "version":
            print(versions.version())
        elif args.command == "chart-version":
            print(versions.chart_version(versions.version()))
        elif args.command == "build-args":
            given = versions.build_info().build_args()
            if args.classic:
                given |= versions.platform_build_args(versions.HOST_PLATFORM, {})
            for key, value in given.items():
                print(f"--build-arg={key}={value}")
        elif args.command == "notes":
            sys.stdout.write(changelog.read_notes(args.version))
        else:
            print(versions.release_of_tag(args.tag))
    except versions.VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def tools() -> Tools:
    from tools.binaries import binaries, release_tools
    from tools.release import publishing

    found = release_tools()
    docker = "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else "docker"
    return publishing.Tools(
        docker=[docker], helm=binaries().helm, cosign=found.cosign, syft=found.syft, crane=found.crane
    )


def _publishing(args: argparse.Namespace) -> int:
    # Imported here: `version`, `notes` and `check-tag` need nothing beyond the standard library
    # and setuptools-scm (the `image` session runs them with no PyYAML installed).
    from tools.binaries import BuildError
    from tools.release import deploying, publishing, settings

    def say(message: str) -> None:
        print(f"[{args.command}] {message}", file=sys.stderr, flush=True)

    try:
        if args.command == "release":
            release_settings = settings.ReleaseSettings.from_env()
            artifacts = publishing.release(
                args.version, release_settings, tools(), root=versions.REPO, workdir=args.workdir, say=say
            )
            print(publishing.report(artifacts))
            if args.json:
                args.json.write_text(publishing.as_json(artifacts))
        elif args.command == "deploy":
            deployed = deploying.deploy(
                args.environment,
                settings.DeploySettings.from_env(),
                tools(),
                workdir=args.workdir,
                version=args.version,
                timeout=args.timeout,
                say=say,
            )
            print(
                f"{deployed.environment}: {deployed.version} deployed as revision {deployed.revision} "
                f"({deployed.image}) in {deployed.seconds:.0f} s"
            )
        elif args.command == "repo-check":
            repo = settings.ChartRepo.from_env(os.environ)
            released = publishing.chart_versions(publishing.repo_request(repo, "index.yaml"))
            listed = ", ".join(released) or "none"
            print(f"{repo.url}: index.yaml read as {repo.username!r}; released: {listed}")
        else:
            deploying.values_file(args.environment)
            print(deploying.rollback(settings.DeploySettings.from_env(), tools(), workdir=args.workdir))
    except (
        publishing.ReleaseError,
        deploying.DeployError,
        settings.SettingsError,
        versions.VersionError,
        BuildError,
        LookupError,
        OSError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
