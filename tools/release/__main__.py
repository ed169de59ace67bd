"""``python -m tools.release``: the version of this tree, its image build arguments, a release's notes.

    python -m tools.release version            # 0.3.0 at tag v0.3.0, else 0.3.1.dev2+g1a2b3c4
    python -m tools.release chart-version      # the same as SemVer, for Helm
    python -m tools.release build-args         # --build-arg lines for `docker build`
    python -m tools.release notes 0.3.0        # CHANGELOG.md's section for 0.3.0
    python -m tools.release check-tag v0.3.0   # refuses anything but vX.Y.Z

Errors are one line on stderr and exit 2; nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tools.release import changelog, versions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="the version of this tree (from git)")
    commands.add_parser("chart-version", help="the version as the SemVer a chart carries")
    commands.add_parser(
        "build-args", help="docker build arguments: VERSION, REVISION, CREATED, SOURCE_DATE_EPOCH"
    )
    notes = commands.add_parser("notes", help="CHANGELOG.md's section for a release")
    notes.add_argument("version")
    tag = commands.add_parser("check-tag", help="the release number of a vX.Y.Z tag, or a refusal")
    tag.add_argument("tag")
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            print(versions.version())
        elif args.command == "chart-version":
            print(versions.chart_version(versions.version()))
        elif args.command == "build-args":
            for key, value in versions.build_info().build_args().items():
                print(f"--build-arg={key}={value}")
        elif args.command == "notes":
            sys.stdout.write(changelog.read_notes(args.version))
        else:
            print(versions.release_of_tag(args.tag))
    except versions.VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
