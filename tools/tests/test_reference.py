"""docs/configuration.md must describe exactly the settings the code reads."""

from __future__ import annotations

from tools.reference import DOC, render


def test_configuration_doc_matches_the_settings_class() -> None:
    assert DOC.read_text() == render(), "docs/configuration.md is stale: run `python -m tools.reference`"
