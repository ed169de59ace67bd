"""One version from the git tag: what each artifact is told, and every refusal a release can meet.

The versions are computed in throwaway git repositories made here (real git, the project's own
pyproject.toml), so a tag, a commit after it and a dirty tree are each really what they claim.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.release import changelog, versions
from tools.release.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the project's pyproject.toml and one commit, untagged."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", "pyproject.toml")
    commit(tmp_path, "first")
    return tmp_path


def commit(repo: Path, message: str) -> None:
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message)


@pytest.mark.parametrize(("tag", "release"), [("v0.2.0", "0.2.0"), ("v10.0.13", "10.0.13")])
def test_a_vxyz_tag_gives_its_release_number(tag: str, release: str) -> None:
    assert versions.release_of_tag(tag) == release


@pytest.mark.parametrize(
    "tag", ["0.2.0", "v0.2", "v01.2.3", "v1.2.3-rc1", "v1.2.3.4", "release-1.2.3", "v1.2.3 "]
)
def test_a_tag_that_is_not_vxyz_is_refused_in_one_line(tag: str) -> None:
    with pytest.raises(versions.VersionError, match=r"is not vX\.Y\.Z") as raised:
        versions.release_of_tag(tag)
    assert "\n" not in str(raised.value)


def test_a_tagged_commit_builds_its_release_and_the_next_commit_a_development_version(repo: Path) -> None:
    git(repo, "tag", "v0.2.0")
    assert versions.version(repo) == "0.2.0"
    commit(repo, "after")
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    after = versions.version(repo)
    assert re.fullmatch(rf"0\.2\.1\.dev1\+g{sha}[0-9a-f]*", after), after
    assert not versions.is_release(after)
    assert versions.chart_version(after) == after.replace(".dev1+", "-dev.1+", 1)


def test_an_untagged_tree_never_builds_a_release_number(repo: Path) -> None:
    found = versions.version(repo)
    assert re.fullmatch(r"0\.1\.dev1\+g[0-9a-f]+", found), found
    assert not versions.is_release(found)
    assert versions.chart_version(found).startswith("0.1.0-dev.1+g")


def test_tags_that_are_not_vxyz_are_not_versions(repo: Path) -> None:
    for tag in ("release-9", "v9.9", "v9.9.9-rc1", "v09.9.9"):
        git(repo, "tag", tag)
    assert not versions.is_release(versions.version(repo))


def test_a_dirty_tree_at_a_tag_is_not_the_release(repo: Path) -> None:
    git(repo, "tag", "v0.3.0")
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# edited\n")
    assert versions.version(repo) != "0.3.0"
    assert not versions.is_release(versions.version(repo))


@pytest.mark.parametrize(
    ("version", "semver", "tag"),
    [
        ("0.3.0", "0.3.0", "0.3.0"),
        ("0.3.1.dev2+g1a2b3c4", "0.3.1-dev.2+g1a2b3c4", "0.3.1.dev2_g1a2b3c4"),
        (
            "0.1.dev162+g1c2bff6.d20261207",
            "0.1.0-dev.162+g1c2bff6.d20261207",
            "0.1.dev162_g1c2bff6.d20261207",
        ),
    ],
)
def test_each_artifact_gets_the_version_in_the_form_it_accepts(version: str, semver: str, tag: str) -> None:
    assert versions.chart_version(version) == semver
    assert versions.image_tag(version) == tag


def test_a_version_that_is_neither_release_nor_development_is_refused() -> None:
    with pytest.raises(versions.VersionError, match="neither"):
        versions.chart_version("1.2.3rc1")


def test_build_info_says_the_commit_and_its_time(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    git(repo, "tag", "v1.0.0")
    info = versions.build_info(repo)
    assert info.version == "1.0.0"
    assert info.revision == git(repo, "rev-parse", "HEAD")
    assert info.source_date_epoch == int(git(repo, "log", "-1", "--format=%ct"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info.created)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert versions.build_info(repo).build_args()["CREATED"] == "1970-01-01T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(versions.VersionError, match="SOURCE_DATE_EPOCH"):
        versions.build_info(repo)


def test_hatch_vcs_and_the_tooling_read_one_configuration() -> None:
    options = versions.scm_options()
    assert options["tag_regex"] == versions.TAG.pattern


CHANGES = """# Changelog

## [Unreleased]

### Added
- something new

## [0.3.0] - 2026-12-01

### Fixed
- a bug

## [0.2.0] - 2026-11-01

### Added
- the first thing

[0.3.0]: https://example.invalid/compare/v0.2.0...v0.3.0
"""


def test_a_releases_notes_are_its_changelog_section() -> None:
    assert changelog.notes("0.3.0", CHANGES) == "### Fixed\n- a bug\n"
    assert changelog.notes("0.2.0", CHANGES) == "### Added\n- the first thing\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            CHANGES.replace("## [0.3.0] - 2026-12-01", "## [0.3.1] - 2026-12-01"),
            r"no section .*0\.3\.1, 0\.2\.0",
        ),
        (CHANGES.replace("## [0.3.0] - 2026-12-01", "## [0.3.0]"), "has no date"),
        (CHANGES.replace("2026-12-01", "1 Dec 2026"), "not YYYY-MM-DD"),
        (CHANGES.replace("### Fixed\n- a bug\n", ""), "is empty"),
        (CHANGES + "\n## [0.3.0] - 2026-12-02\n- again\n", "two sections"),
    ],
)
def test_a_release_without_proper_notes_is_refused(text: str, message: str) -> None:
    with pytest.raises(versions.VersionError, match=message):
        changelog.notes("0.3.0", text)


def test_the_projects_changelog_parses() -> None:
    found = changelog.sections(changelog.CHANGELOG.read_text())
    assert "Unreleased" in found


def test_the_command_refuses_a_bad_tag_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-tag", "v1.2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: tag 'v1.2' is not vX.Y.Z")
    assert err.count("\n") == 1
    assert main(["check-tag", "v1.2.3"]) == 0
    assert capsys.readouterr().out == "1.2.3\n"


def test_the_build_stage_runs_on_this_machine_unless_only_the_target_has_a_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(versions, "HOST_PLATFORM", "linux/amd64")
    official = versions.platform_build_args("linux/arm64", {})
    assert official == {
        "TARGETPLATFORM": "linux/arm64",
        "TARGETARCH": "arm64",
        "BUILDPLATFORM": "linux/amd64",
    }
    bases = {"linux/amd64": "base:amd64", "linux/arm64": "base:arm64"}
    both = versions.platform_build_args("linux/arm64", bases)
    assert both["BUILDPLATFORM"] == "linux/amd64"
    assert (both["PYTHON_IMAGE"], both["BUILD_PYTHON_IMAGE"]) == ("base:arm64", "base:amd64")
    target_only = versions.platform_build_args("linux/arm64", {"linux/arm64": "base:arm64"})
    assert target_only["BUILDPLATFORM"] == "linux/arm64"  # the single-platform base, emulated
    assert target_only["BUILD_PYTHON_IMAGE"] == "base:arm64"


def test_build_args_name_the_platforms_for_the_classic_builder_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """BuildKit sets the platform arguments itself, from --platform; printed for it, they would
    override a cross-build's target with this machine's."""
    monkeypatch.setattr(versions, "HOST_PLATFORM", "linux/amd64")
    assert main(["build-args"]) == 0
    plain = dict(line.removeprefix("--build-arg=").split("=", 1) for line in capsys.readouterr().out.split())
    assert sorted(plain) == ["CREATED", "REVISION", "SOURCE_DATE_EPOCH", "VERSION"]
    assert main(["build-args", "--classic"]) == 0
    classic = dict(
        line.removeprefix("--build-arg=").split("=", 1) for line in capsys.readouterr().out.split()
    )
    assert classic == {
        **plain,
        "TARGETPLATFORM": "linux/amd64",
        "TARGETARCH": "amd64",
        "BUILDPLATFORM": "linux/amd64",
    }
