"""The release tooling: one version from the git tag, and the artifacts that carry it.

``versions`` derives every version string (package, image tag, chart) and the image's build
arguments from git alone; ``changelog`` turns CHANGELOG.md's section for a version into release
notes. ``python -m tools.release`` is the command line. Nothing here writes a version into a
file of the tree: a tag ``vX.Y.Z`` is the only place a version is written.
"""
