"""Build, cache and locate the upstream binaries of the local test control plane.

The integration tests, the demo and the benchmarks run against a real kube-apiserver
backed by a real etcd. There is no container engine to pull them from, so they are
compiled from their published Go modules through the small wrapper modules under
``tools/controlplane/`` (``go install`` of those commands fails because their own
``go.mod`` files replace staging modules with local paths).

What this module deliberately does not do: download prebuilt binaries from anywhere,
or guess at a binary on ``PATH``. Either it builds exactly the pinned versions, or the
user names a directory of prebuilt ones with ``SECRETS_OPERATOR_CONTROLPLANE_BIN_DIR``.

Run ``python -m tools.binaries`` to build everything ahead of time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WRAPPERS = REPO / "tools" / "controlplane"
CACHE = Path(os.environ.get("SECRETS_OPERATOR_CACHE_DIR", REPO / ".cache"))
BIN_DIR_ENV = "SECRETS_OPERATOR_CONTROLPLANE_BIN_DIR"

#: The supported Kubernetes minors, oldest first, each with the etcd minor upstream pairs it with
#: (``build/dependencies.yaml`` of each release: 1.35 -> 3.6.6, 1.36 -> 3.6.8, 1.37 -> 3.7.0).
#: The exact versions (the newest patch of each) are pinned by the wrapper modules'
#: ``go.mod`` files under ``tools/controlplane/kubernetes/<minor>`` and ``tools/controlplane/etcd/<minor>``.
ETCD_MINOR = {"1.35": "3.6", "1.36": "3.6", "1.37": "3.7"}
MINORS = tuple(ETCD_MINOR)
#: The default for the tests, the demo and the benchmarks: the newest supported minor.
DEFAULT_MINOR = MINORS[-1]
#: Choose another supported minor: ``SECRETS_OPERATOR_KUBERNETES=1.35 nox -s tests``.
KUBERNETES_ENV = "SECRETS_OPERATOR_KUBERNETES"

HELM3_VERSION = "v3.19.5"
HELM4_VERSION = "v4.3.1"


class BuildError(RuntimeError):
    """A binary could not be built; the message says which module or step failed."""


@dataclasses.dataclass(frozen=True)
class Component:
    """One cached build: a set of commands compiled together from one wrapper module."""

    name: str
    version: str
    commands: dict[str, str]  # binary name -> Go package path
    ldflags: tuple[str, ...]
    module_dir: Path | None  # wrapper module; None means `go install pkg@version`

    @property
    def cache_dir(self) -> Path:
        return CACHE / self.name / self.version

    def stamp(self) -> str:
        """Everything that changes the output: flags, and the wrapper's go.mod/go.sum."""
        digest = hashlib.sha256()
        digest.update(repr((self.version, sorted(self.commands.items()), self.ldflags)).encode())
        if self.module_dir is not None:
            for name in ("go.mod", "go.sum"):
                digest.update((self.module_dir / name).read_bytes())
        return digest.hexdigest()


def pinned_version(module_dir: Path, module: str) -> str:
    """The version of ``module`` that a wrapper's go.mod requires (the single place it is pinned)."""
    for line in (module_dir / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[-2] == module and words[0] in ("require", module):
            return words[-1]
    raise BuildError(f"{module_dir / 'go.mod'} does not require {module}")


def _k8s_ldflags(version: str) -> tuple[str, ...]:
    major, minor, _ = version.lstrip("v").split(".")
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return tuple(flags)


@dataclasses.dataclass(frozen=True)
class Release:
    """One supported Kubernetes minor: its control plane, node and matching etcd builds."""

    minor: str

    @property
    def kubernetes_dir(self) -> Path:
        return WRAPPERS / "kubernetes" / self.minor

    @property
    def etcd_dir(self) -> Path:
        return WRAPPERS / "etcd" / ETCD_MINOR[self.minor]

    @property
    def kubernetes_version(self) -> str:
        return pinned_version(self.kubernetes_dir, "k8s.io/kubernetes")

    @property
    def etcd_version(self) -> str:
        return pinned_version(self.etcd_dir, "go.etcd.io/etcd/server/v3")

    def _kubernetes(self, name: str, *commands: str) -> Component:
        """Commands of k8s.io/kubernetes, built from this minor's wrapper module."""
        return Component(
            name=name,
            version=self.kubernetes_version,
            commands={command: f"k8s.io/kubernetes/cmd/{command}" for command in commands},
            ldflags=_k8s_ldflags(self.kubernetes_version),
            module_dir=self.kubernetes_dir,
        )

    @property
    def controlplane(self) -> Component:
        return self._kubernetes("controlplane", "kube-apiserver", "kube-controller-manager", "kubectl")

    @property
    def etcd(self) -> Component:
        return Component(
            name="etcd",
            version=self.etcd_version,
            commands={"etcd": "go.etcd.io/etcd/server/v3"},
            ldflags=(),
            module_dir=self.etcd_dir,
        )

    @property
    def node(self) -> Component:
        """The node of the end-to-end tests, from the same wrapper module (so the same version)."""
        return self._kubernetes("node", "kubelet", "kube-proxy", "kube-scheduler")


def release(minor: str | None = None) -> Release:
    """The release to use: ``minor``, else ``$SECRETS_OPERATOR_KUBERNETES``, else the newest.

    Accepts a minor (``1.36``) or the exact pinned version (``v1.36.3``); anything else is refused
    with the list of what is supported.
    """
    wanted = (minor or os.environ.get(KUBERNETES_ENV) or DEFAULT_MINOR).strip().lstrip("v")
    parts = wanted.split(".")
    chosen = ".".join(parts[:2])
    if chosen not in ETCD_MINOR or len(parts) not in (2, 3):
        raise BuildError(
            f"{KUBERNETES_ENV}={wanted}: not a supported Kubernetes version; "
            f"supported minors: {', '.join(MINORS)} (default {DEFAULT_MINOR})"
        )
    found = Release(chosen)
    if len(parts) == 3 and found.kubernetes_version != f"v{wanted}":
        raise BuildError(
            f"{KUBERNETES_ENV}={wanted}: this project pins {found.kubernetes_version} for {chosen}"
        )
    return found


HELM3 = Component(
    name="helm",
    version=HELM3_VERSION,
    commands={"helm": "helm.sh/helm/v3/cmd/helm"},
    # As helm's own Makefile links it: the default Kubernetes version of `helm template` and
    # `helm lint` is that of the client-go helm v3.19 is built with (1.34), not the source's 1.20.
    ldflags=(
        f"-X helm.sh/helm/v3/internal/version.version={HELM3_VERSION}",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34",
    ),
    module_dir=None,
)
HELM4 = Component(
    name="helm",
    version=HELM4_VERSION,
    commands={"helm": "helm.sh/helm/v4/cmd/helm"},
    # Helm 4 reads its default Kubernetes version from client-go's module version in the build
    # info, which `go install pkg@version` keeps; only the version string is linked in.
    ldflags=(f"-X helm.sh/helm/v4/internal/version.version={HELM4_VERSION}",),
    module_dir=None,
)
#: controller-gen and prometheus-operator's API types (both pinned in the wrapper's go.mod), from
#: which the chart tests generate the real ServiceMonitor CRD to validate the chart's object.
CRDS = Component(
    name="controller-gen",
    version="v0.23.0",
    commands={"controller-gen": "sigs.k8s.io/controller-tools/cmd/controller-gen"},
    ldflags=(),
    module_dir=WRAPPERS / "crds",
)
MONITORING_TYPES = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"


#: The release tools (tools/release), each `go install`ed from its module at the pinned version:
#: cosign signs and verifies the image and the chart and attests the SBOM, syft makes the SBOM,
#: crane assembles the multi-architecture index and copies between registries, actionlint checks
#: the GitHub workflows.
COSIGN = Component(
    name="cosign",
    version="v3.1.3",
    commands={"cosign": "github.com/sigstore/cosign/v3/cmd/cosign"},
    ldflags=("-X sigs.k8s.io/release-utils/version.gitVersion=v3.1.3",),
    module_dir=None,
)
SYFT = Component(
    name="syft",
    version="v1.57.2",
    commands={"syft": "github.com/anchore/syft/cmd/syft"},
    ldflags=("-X main.version=1.57.2",),
    module_dir=None,
)
CRANE = Component(
    name="crane",
    version="v0.22.1",
    commands={"crane": "github.com/google/go-containerregistry/cmd/crane"},
    ldflags=(),
    module_dir=None,
)
ACTIONLINT = Component(
    name="actionlint",
    version="v1.7.12",
    commands={"actionlint": "github.com/rhysd/actionlint/cmd/actionlint"},
    ldflags=(),
    module_dir=None,
)
RELEASE_TOOLS = (COSIGN, SYFT, CRANE, ACTIONLINT)


@dataclasses.dataclass(frozen=True)
class ReleaseTools:
    """Absolute paths of the release tools (built only for the release sessions and their tests)."""

    cosign: Path
    syft: Path
    crane: Path
    actionlint: Path


def release_tools() -> ReleaseTools:
    """Locate (building if needed) cosign, syft, crane and actionlint; ``BIN_DIR_ENV`` may hold them."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return ReleaseTools(**{tool.name: Path(override) / tool.name for tool in RELEASE_TOOLS})
    ensure_built(RELEASE_TOOLS)
    return ReleaseTools(**{tool.name: tool.cache_dir / tool.name for tool in RELEASE_TOOLS})


class Binaries:
    """Absolute paths of the binaries of one release; each is built the first time it is asked for.

    So a session builds only what it uses: the unit and integration tests never build helm, the
    compatibility run never builds a node.
    """

    def __init__(self, chosen: Release, *, override: Path | None = None) -> None:
        self.release = chosen
        self.override = override

    def _path(self, component: Component, binary: str, *, override_name: str = "") -> Path:
        if self.override is not None:
            path = self.override / (override_name or binary)
            if not path.is_file():
                raise BuildError(f"{BIN_DIR_ENV}={self.override} lacks {path.name}")
            return path
        ensure_built([component])
        return component.cache_dir / binary

    @property
    def etcd(self) -> Path:
        return self._path(self.release.etcd, "etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self._path(self.release.controlplane, "kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self._path(self.release.controlplane, "kube-controller-manager")

    @property
    def kubectl(self) -> Path:
        return self._path(self.release.controlplane, "kubectl")

    @property
    def helm3(self) -> Path:
        return self._path(HELM3, "helm", override_name="helm3")

    @property
    def helm4(self) -> Path:
        return self._path(HELM4, "helm", override_name="helm")

    def helm_of(self, major: int) -> Path:
        """Helm 3 or Helm 4 (the chart is checked with both)."""
        return {3: self.helm3, 4: self.helm4}[major]

    @property
    def helm(self) -> Path:
        """The Helm of the tests that are not about Helm itself: the current major, 4."""
        return self.helm4

    def controlplane(self) -> tuple[Path, ...]:
        """Build (if needed) what the control plane runs, before anything starts that could time out."""
        return (self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kubectl)


def _say(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path, *, what: str = "") -> Iterator[None]:
    """Serialise builds across processes (pytest, `nox -s cluster` and CI's background build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"waiting for another process that is building {what or path.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.update(extra)
    return env


def _run(cmd: Sequence[str], *, cwd: Path | None, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(cmd)}):\n{proc.stderr.strip()[-4000:]}")


def _count_packages(component: Component) -> int:
    if component.module_dir is None:
        return 0
    proc = subprocess.run(
        ["go", "list", "-deps", *component.commands.values()],
        cwd=component.module_dir,
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    return len(proc.stdout.split()) if proc.returncode == 0 else 0


def _build_with_progress(
    cmd: Sequence[str], *, cwd: Path | None, total: int, label: str, env: dict[str, str]
) -> None:
    """Run `go build -v`, turning its package lines into a progress line every few seconds."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    done, last_report = 0, 0.0
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-39:], line]
        # `go build -v` names each package it compiles on a line of its own.
        if line and " " not in line and not line.startswith("#"):
            done += 1
        now = time.monotonic()
        if now - last_report > 15:
            last_report = now
            of = f"/{total}" if total else ""
            _say(f"{label}: compiled {done}{of} packages")
    if proc.wait() != 0:
        raise BuildError(f"building {label} failed:\n" + "\n".join(tail))


def _build(component: Component) -> None:
    label = f"{component.name} {component.version}"
    started = time.monotonic()
    _say(f"building {label} (from cold: minutes, see the README; later runs reuse it)")
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        out = Path(tmp)
        ldflags = " ".join(("-s", "-w", *component.ldflags))
        if component.module_dir is not None:
            # Fail fast, naming the module, if the proxy does not serve something.
            _run(["go", "mod", "download"], cwd=component.module_dir, what=f"go mod download for {label}")
            total = _count_packages(component)
            for binary, package in component.commands.items():
                # One command at a time, each named explicitly: `go build -o dir/` would call
                # go.etcd.io/etcd/server/v3 "server". Compiled packages are shared through Go's cache.
                cmd = [
                    "go",
                    "build",
                    "-v",
                    "-trimpath",
                    f"-ldflags={ldflags}",
                    "-o",
                    str(out / binary),
                    package,
                ]
                _build_with_progress(cmd, cwd=component.module_dir, total=total, label=label, env=_go_env())
        else:
            ((_, package),) = component.commands.items()
            cmd = [
                "go",
                "install",
                "-v",
                "-trimpath",
                f"-ldflags={ldflags}",
                f"{package}@{component.version}",
            ]
            _build_with_progress(cmd, cwd=CACHE, total=0, label=label, env=_go_env(GOBIN=str(out)))
        for binary in component.commands:
            if not (out / binary).is_file():
                raise BuildError(f"building {label} produced no {binary}")
        (out / ".stamp").write_text(component.stamp())
        if component.cache_dir.exists():
            shutil.rmtree(component.cache_dir)
        component.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        out.rename(component.cache_dir)
        # TemporaryDirectory's cleanup must not fail now that the directory moved.
        out.mkdir()
    _say(f"built {label} in {time.monotonic() - started:.0f} s -> {component.cache_dir}")


def _is_fresh(component: Component) -> bool:
    stamp = component.cache_dir / ".stamp"
    if not stamp.is_file() or stamp.read_text() != component.stamp():
        return False
    return all((component.cache_dir / binary).is_file() for binary in component.commands)


def ensure_built(components: Sequence[Component]) -> None:
    """Build whatever is missing or stale; instant when everything is cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for component in components:
        if _is_fresh(component):
            continue
        if shutil.which("go") is None:
            raise BuildError(
                f"{component.name} {component.version} is not built and no `go` is on PATH: "
                f"install Go >= 1.26, or set {BIN_DIR_ENV} to a directory of prebuilt binaries"
            )
        # One lock per build, so that another version can be built meanwhile (CI builds the older
        # minors in the background while the sessions on the newest run).
        lock = CACHE / f".{component.name}-{component.version}.lock"
        with _locked(lock, what=f"{component.name} {component.version}"):
            if not _is_fresh(component):  # another process may have built it meanwhile
                _build(component)


def binaries(minor: str | None = None) -> Binaries:
    """The binaries of the chosen release (see :func:`release`); honours ``BIN_DIR_ENV``."""
    override = os.environ.get(BIN_DIR_ENV)
    return Binaries(release(minor), override=Path(override) if override else None)


@dataclasses.dataclass(frozen=True)
class NodeBinaries:
    """Absolute paths of the node's Kubernetes binaries (built only for the e2e tests)."""

    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path


def node_binaries(minor: str | None = None) -> NodeBinaries:
    """Locate (building if needed) kubelet, kube-proxy and kube-scheduler of the chosen release."""
    node = release(minor).node
    ensure_built([node])
    return NodeBinaries(
        kubelet=node.cache_dir / "kubelet",
        kube_proxy=node.cache_dir / "kube-proxy",
        kube_scheduler=node.cache_dir / "kube-scheduler",
    )


def service_monitor_crd() -> Path:
    """prometheus-operator's ServiceMonitor CRD, generated as upstream does from its Go types.

    The version is the one ``tools/controlplane/crds/go.mod`` pins; the result is cached.
    """
    ensure_built([CRDS])
    out = CACHE / "crds" / CRDS.stamp()[:16]
    crd = out / "monitoring.coreos.com_servicemonitors.yaml"
    with _locked(CACHE / ".crds.lock"):
        if not crd.is_file():
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                command = [
                    str(CRDS.cache_dir / "controller-gen"),
                    "crd:crdVersions=v1,maxDescLen=0",
                    f"paths={MONITORING_TYPES}",
                    f"output:crd:dir={tmp}",
                ]
                _run(command, cwd=CRDS.module_dir, what="generating prometheus-operator's CRDs")
                out.parent.mkdir(parents=True, exist_ok=True)
                if out.exists():
                    shutil.rmtree(out)
                Path(tmp).rename(out)
                Path(tmp).mkdir()  # TemporaryDirectory's cleanup must find its directory
    if not crd.is_file():
        raise BuildError(f"controller-gen produced no {crd.name}")
    return crd


PARTS = ("controlplane", "helm", "crds", "node", "release")


def _build_parts(parts: Sequence[str], minor: str | None) -> dict[str, Path]:
    found = binaries(minor)
    chosen = found.release
    _say(f"Kubernetes {chosen.kubernetes_version}, etcd {chosen.etcd_version}")
    paths: dict[str, Path] = {}
    if "controlplane" in parts:
        names = ("etcd", "kube_apiserver", "kube_controller_manager", "kubectl")
        paths.update(zip(names, found.controlplane(), strict=True))
    if "helm" in parts:
        paths.update(helm3=found.helm3, helm4=found.helm4)
    if "crds" in parts:
        paths["servicemonitor_crd"] = service_monitor_crd()
    if "node" in parts:
        paths.update(dataclasses.asdict(node_binaries(minor)))
    if "release" in parts:
        paths.update(dataclasses.asdict(release_tools()))
    return paths


def main(argv: Sequence[str] = ()) -> int:
    """``python -m tools.binaries [--older] [PART...]``: build ahead of time, with progress.

    Parts: controlplane (etcd, kube-apiserver, kube-controller-manager, kubectl), helm (3 and 4),
    crds (the ServiceMonitor CRD), node (kubelet, kube-proxy, kube-scheduler), release (cosign,
    syft, crane, actionlint). Default: all but node and release. The release is
    ``$SECRETS_OPERATOR_KUBERNETES`` (default: the newest supported minor);
    ``--older`` builds the parts for every supported minor but the newest instead (which ``nox -s
    integration`` runs besides the newest), so that CI can build them ahead, at low priority.
    """
    args = list(argv)
    older = "--older" in args
    parts = [arg for arg in args if arg != "--older"] or ["controlplane", "helm", "crds"]
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        _say(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
        return 2
    try:
        paths: dict[str, Path] = {}
        for minor in [m for m in MINORS if m != DEFAULT_MINOR] if older else [None]:
            paths.update({f"{minor} {k}" if minor else k: v for k, v in _build_parts(parts, minor).items()})
    except BuildError as exc:
        _say(str(exc))
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
