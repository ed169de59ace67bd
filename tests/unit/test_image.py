"""The `image` nox session can only vouch for the Dockerfile if both install the same way."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_and_image_session_pin_the_same_wheel_builder() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    noxfile = (ROOT / "noxfile.py").read_text()
    pinned = re.search(r'BUILD_REQUIREMENT = "([^"]+)"', noxfile)
    assert pinned is not None
    assert f"pip install --no-cache-dir {pinned.group(1)}" in dockerfile


def test_image_runs_as_the_numeric_user_the_chart_expects() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = (ROOT / "chart" / "secrets-operator" / "values.yaml").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user is not None
    assert f"runAsUser: {user.group(1)}" in values
    assert 'ENTRYPOINT ["secrets-operator"]' in dockerfile
    assert 'CMD ["run"]' in dockerfile
