"""CHANGELOG.md (Keep a Changelog 1.1) as the source of release notes.

A release's notes are its section, ``## [X.Y.Z] - YYYY-MM-DD``, word for word, without the
heading. A release whose section is missing or empty is refused: notes are written before the
tag, in the same review as the change, not made up by the pipeline.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from tools.release.versions import REPO, VersionError, is_release

CHANGELOG = REPO / "CHANGELOG.md"
_HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>[^\n]+?))?[ \t]*$", re.MULTILINE)


def sections(text: str) -> dict[str, tuple[str | None, str]]:
    """Every ``## [name] - date`` section: name → (date or None, body without the heading)."""
    found: dict[str, tuple[str | None, str]] = {}
    headings = list(_HEADING.finditer(text))
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[heading.end() : end]
        # The link reference definitions at the end of the file belong to no section.
        body = re.sub(r"^\[[^\]]+\]: \S+\s*$", "", body, flags=re.MULTILINE)
        name = heading.group("name")
        if name in found:
            raise VersionError(f"CHANGELOG.md has two sections for [{name}]")
        found[name] = (heading.group("date"), body.strip())
    return found


def notes(version: str, text: str) -> str:
    """The release notes of ``version``: its section's body. Refused when missing, empty or undated."""
    if not is_release(version):
        raise VersionError(f"{version} is not a release number X.Y.Z; only releases have notes")
    found = sections(text)
    if version not in found:
        known = ", ".join(name for name in found if name != "Unreleased") or "none"
        raise VersionError(
            f"CHANGELOG.md has no section '## [{version}] - YYYY-MM-DD' (released sections: {known}); "
            "move the Unreleased entries under it before tagging"
        )
    date, body = found[version]
    if date is None:
        raise VersionError(f"CHANGELOG.md's section [{version}] has no date (## [{version}] - YYYY-MM-DD)")
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise VersionError(
            f"CHANGELOG.md's section [{version}] has the date {date!r}, not YYYY-MM-DD"
        ) from None
    if not body:
        raise VersionError(f"CHANGELOG.md's section [{version}] is empty")
    return body + "\n"


def read_notes(version: str, changelog: Path = CHANGELOG) -> str:
    return notes(version, changelog.read_text())
