"""Build, cache and locate the upstream binaries of the local test control plane.

The integration tests, the demo and the benchmarks run against a real kube-apiserver
backed by a real etcd. There is no container engine to pull them from, so they are
compiled from their published Go modules through the small wrapper modules under
``tests/controlplane/`` (``go install`` of those commands fails because their own
``go.mod`` files replace staging modules with local paths).

What this module deliberately does not do: download prebuilt binaries from anywhere,
or guess at a binary on ``PATH``. Either it builds exactly the pinned versions, or the
user names a directory of prebuilt ones with ``SECRETS_OPERATOR_CONTROLPLANE_BIN_DIR``.

Run ``python -m tests.binaries`` to build everything ahead of time.
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
WRAPPERS = REPO / "tests" / "controlplane"
CACHE = Path(os.environ.get("SECRETS_OPERATOR_CACHE_DIR", REPO / ".cache"))
BIN_DIR_ENV = "SECRETS_OPERATOR_CONTROLPLANE_BIN_DIR"

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.19.5"


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


def _k8s_ldflags() -> tuple[str, ...]:
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return tuple(flags)


KUBERNETES = Component(
    name="controlplane",
    version=KUBERNETES_VERSION,
    commands={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    },
    ldflags=_k8s_ldflags(),
    module_dir=WRAPPERS / "kubernetes",
)
ETCD = Component(
    name="etcd",
    version=ETCD_VERSION,
    commands={"etcd": "go.etcd.io/etcd/server/v3"},
    ldflags=(),
    module_dir=WRAPPERS / "etcd",
)
HELM = Component(
    name="helm",
    version=HELM_VERSION,
    commands={"helm": "helm.sh/helm/v3/cmd/helm"},
    # As helm's own Makefile links it: the default Kubernetes version of `helm template` and
    # `helm lint` is that of the client-go helm v3.19 is built with (1.34), not the source's 1.20.
    ldflags=(
        f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34",
    ),
    module_dir=None,
)
COMPONENTS = (ETCD, KUBERNETES, HELM)
#: The node of the end-to-end tests, from the same wrapper module (and so the same version).
NODE = Component(
    name="node",
    version=KUBERNETES_VERSION,
    commands={
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    },
    ldflags=_k8s_ldflags(),
    module_dir=WRAPPERS / "kubernetes",
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


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Absolute paths of every binary the control plane and the chart checks use."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path


def _say(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds across processes (pytest and `nox -s cluster` may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
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
    _say(f"building {label} (all binaries from cold: about 5 minutes on 2 cores; later runs reuse them)")
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


def ensure_built(components: Sequence[Component] = COMPONENTS) -> None:
    """Build whatever is missing or stale; instant when everything is cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for component in components:
        if _is_fresh(component):
            continue
        if shutil.which("go") is None:
            raise BuildError(
                f"{component.name} {component.version} is not built and no `go` is on PATH: "
                f"install Go >= 1.25, or set {BIN_DIR_ENV} to a directory of prebuilt binaries"
            )
        with _locked(CACHE / f".{component.name}.lock"):
            if not _is_fresh(component):  # another process may have built it meanwhile
                _build(component)


def binaries() -> Binaries:
    """Locate (building if needed) every binary; honours SECRETS_OPERATOR_CONTROLPLANE_BIN_DIR."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        root = Path(override)
        found = Binaries(
            etcd=root / "etcd",
            kube_apiserver=root / "kube-apiserver",
            kube_controller_manager=root / "kube-controller-manager",
            kubectl=root / "kubectl",
            helm=root / "helm",
        )
        missing = [str(p) for p in dataclasses.astuple(found) if not Path(p).is_file()]
        if missing:
            raise BuildError(f"{BIN_DIR_ENV}={override} lacks: {', '.join(missing)}")
        return found
    ensure_built()
    return Binaries(
        etcd=ETCD.cache_dir / "etcd",
        kube_apiserver=KUBERNETES.cache_dir / "kube-apiserver",
        kube_controller_manager=KUBERNETES.cache_dir / "kube-controller-manager",
        kubectl=KUBERNETES.cache_dir / "kubectl",
        helm=HELM.cache_dir / "helm",
    )


@dataclasses.dataclass(frozen=True)
class NodeBinaries:
    """Absolute paths of the node's Kubernetes binaries (built only for the e2e tests)."""

    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path


def node_binaries() -> NodeBinaries:
    """Locate (building if needed) kubelet, kube-proxy and kube-scheduler."""
    ensure_built([NODE])
    return NodeBinaries(
        kubelet=NODE.cache_dir / "kubelet",
        kube_proxy=NODE.cache_dir / "kube-proxy",
        kube_scheduler=NODE.cache_dir / "kube-scheduler",
    )


def service_monitor_crd() -> Path:
    """prometheus-operator's ServiceMonitor CRD, generated as upstream does from its Go types.

    The version is the one ``tests/controlplane/crds/go.mod`` pins; the result is cached.
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


def main() -> int:
    try:
        found = binaries()
        crd = service_monitor_crd()
    except BuildError as exc:
        _say(str(exc))
        return 1
    for field in dataclasses.fields(found):
        print(f"{field.name}: {getattr(found, field.name)}")
    print(f"servicemonitor_crd: {crd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
