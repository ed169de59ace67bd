"""Every command the project runs: lint, type checks, tests, the local control plane and the demo.

Plain ``nox`` runs the whole test suite (the sessions listed in ``nox.options.sessions``);
``nox -s demo`` runs the operator against a local control plane.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

LINT_DEPS = ["ruff>=0.8"]


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole tree."""
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".[test]", "mypy>=1.13", "nox>=2024.10")
    session.run("mypy", "--strict", "src", "tests", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests; builds (or reuses) the control-plane binaries first."""
    session.install("-e", ".[test]")
    # Build in the foreground so a cold build shows its progress instead of a silent fixture.
    session.run("python", "-m", "tests.binaries")
    session.run("pytest", *session.posargs)


@nox.session
def cluster(session: nox.Session) -> None:
    """Manage a local control plane: `nox -s cluster -- up|down|status` (default: up)."""
    session.install("cryptography>=43")
    command = session.posargs or ["up"]
    session.run("python", "-m", "tests.cluster", *command)


@nox.session
def demo(session: nox.Session) -> None:
    """Run two operator replicas on a private local control plane and narrate what they do."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.binaries")
    session.run("python", "-m", "tests.demo")
