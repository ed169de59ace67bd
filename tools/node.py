"""A real node and a real image pipeline, so the end-to-end tests run the product as it ships.

Why it exists: a subprocess of the operator proves the code, not the product. A user builds the
image from the Dockerfile, pushes it and the chart to a registry, and ``helm install``s it onto
nodes where a kubelet runs its Pods under the chart's security context, probes and RBAC. This
module brings up each of those pieces on this machine, from Debian's packages and the Kubernetes
Go modules, since no image registry can be reached:

- :class:`Docker`: a private dockerd (own data root and socket, no bridge, no iptables) that
  builds the project's Dockerfile; its base image is made here by :func:`build_base_image`
  (mmdebstrap, from Debian's packages, the way Debian's own images are made), and a pause image
  from ``tools/controlplane/pause``.
- :class:`Registry`: an OCI registry (Debian's ``docker-registry``) on loopback; the image and
  the chart (``helm push oci://``) go there, and the kubelet pulls from it.
- :class:`Node`: containerd (its own root, state and socket), CNI ``bridge`` + ``host-local`` on
  a bridge this module creates, kubelet, kube-proxy and kube-scheduler, joined to a
  :class:`~tools.cluster.ControlPlane` started with ``address=NODE_IP, node=True``.

Network rule: every address used is loopback or lives on the bridge created here (``so-br0``,
``10.244.0.1/24``); the Service range is routed nowhere (``unreachable``), IP forwarding stays
off, and a FORWARD rule drops anything leaving the bridge, so no Pod packet can leave the
machine.

What it deliberately does not do: pull anything from an image registry on the internet, or
touch the machine's own docker or containerd (each daemon here has its own socket and state).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tools.binaries import NodeBinaries, node_binaries
from tools.cluster import (
    SERVICE_RANGE,
    ControlPlane,
    ControlPlaneError,
    Process,
    _wait_until,
    free_port,
    kubeconfig,
    read_state,
    start_daemon,
    stop_daemon,
    until_signalled,
)
from tools.images import HOST_CA_BUNDLE, ImageError, apt_install, base_tarball, ensure_emulation
from tools.release import versions

REPO = Path(__file__).resolve().parent.parent
BRIDGE = "so-br0"
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
NODE_NAME = "so-node"
#: Debian packages the pipeline and the node run on (the machine may lack any of them).
PACKAGES = {
    "dockerd": "docker.io",
    "containerd": "containerd",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "docker-registry": "docker-registry",
    "iptables": "iptables",
    "conntrack": "conntrack",
    # The release pipeline (tools/release, tools/chartrepo): chart signing and the chart repository.
    "gpg": "gnupg",
    "nginx": "nginx-light",
    "htpasswd": "apache2-utils",
}
CNI_PLUGINS = Path("/usr/lib/cni")


class NodeError(RuntimeError):
    """A piece of the node or the image pipeline failed; the message says which and why."""


def _say(message: str) -> None:
    print(f"[node] {message}", file=sys.stderr, flush=True)


def _run(*argv: str, what: str, timeout: float = 600, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if done.returncode != 0:
        raise NodeError(f"{what} failed ({' '.join(argv)}):\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def ensure_packages() -> None:
    """Install, from Debian's packages, whatever the node and the pipeline need and lack."""
    missing = [package for command, package in PACKAGES.items() if shutil.which(command) is None]
    if not (CNI_PLUGINS / "bridge").is_file():
        missing.append("containernetworking-plugins")
    if not missing:
        return
    apt_install(*missing)


# ---------------------------------------------------------------------------------- network


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


#: Packets from Pods may reach the node (the API server, the kubelet) and other Pods, nothing else.
_CONFINE = ("FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")


def network_up() -> None:
    """The Pod bridge with the node's address, the Service range routed nowhere, Pods confined."""
    if _ip("link", "show", BRIDGE).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge", what=f"creating bridge {BRIDGE}")
    if NODE_IP not in _ip("-4", "addr", "show", "dev", BRIDGE).stdout:
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE, what=f"addressing {BRIDGE}")
    _run("ip", "link", "set", BRIDGE, "up", what=f"bringing {BRIDGE} up")
    # kube-proxy rewrites Service addresses before routing; anything it does not rewrite must
    # not follow the default route off the machine.
    _run("ip", "route", "replace", "unreachable", SERVICE_RANGE, what="routing the Service range nowhere")
    if _iptables("-C", *_CONFINE).returncode != 0:
        _run("iptables", "-w", "-I", *_CONFINE, what="confining Pod traffic to the node")


def network_down() -> None:
    while _iptables("-D", *_CONFINE).returncode == 0:
        pass
    _ip("route", "del", "unreachable", SERVICE_RANGE)
    _ip("link", "del", BRIDGE)


#: Chains the kubelet creates (and never removes) in each table; kube-proxy's go with --cleanup.
_KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
    "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"),
}


def remove_kubelet_chains() -> None:
    """Leave the machine's firewall as it was: the kubelet's jumps and chains, IPv4 and IPv6."""
    for command in ("iptables", "ip6tables"):
        for base in ("INPUT", "OUTPUT"):
            while (
                subprocess.run(
                    [command, "-w", "-D", base, "-j", "KUBE-FIREWALL"], capture_output=True
                ).returncode
                == 0
            ):
                pass
        for table, chains in _KUBELET_CHAINS.items():
            for chain in chains:
                subprocess.run([command, "-w", "-t", table, "-F", chain], capture_output=True)
                subprocess.run([command, "-w", "-t", table, "-X", chain], capture_output=True)


# ---------------------------------------------------------------------------------- registry


class Registry:
    """An OCI registry on loopback (Debian's docker-registry, i.e. distribution), plain HTTP."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: Process | None = None

    def start(self) -> None:
        config = self.workdir / "config.yml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.workdir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.process = Process("registry", ["docker-registry", "serve", str(config)], self.workdir / "log")
        self.process.start()
        _wait_until(
            "the registry",
            lambda: _http_ok(f"http://{self.host}/v2/"),
            timeout=30,
            alive=self.process.check_alive,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# ---------------------------------------------------------------------------------- images


class Docker:
    """A private dockerd: builds and pushes images, runs nothing else, touches no other daemon."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "docker.sock"
        self.process: Process | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            "dockerd",
            [
                "dockerd",
                f"--data-root={self.workdir / 'root'}",
                f"--exec-root={self.workdir / 'exec'}",
                f"--pidfile={self.workdir / 'dockerd.pid'}",
                f"--host=unix://{self.socket}",
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ],
            self.workdir / "dockerd.log",
        )
        self.process.start()
        _wait_until(
            "dockerd",
            lambda: subprocess.run(self.command("version"), capture_output=True).returncode == 0,
            timeout=60,
            alive=self.process.check_alive,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
        unmount_under(self.workdir)

    def command(self, *args: str) -> list[str]:
        # Debian's client (the machine may have another docker on PATH), this daemon only.
        return ["/usr/bin/docker", f"--host=unix://{self.socket}", *args]

    def run(self, *args: str, what: str, timeout: float = 900) -> str:
        return _run(*self.command(*args), what=what, timeout=timeout)

    def has(self, image: str) -> bool:
        return subprocess.run(self.command("image", "inspect", image), capture_output=True).returncode == 0

    def build(
        self,
        context: Path,
        tag: str,
        *,
        build_args: dict[str, str] | None = None,
        platform: str = "",
        no_cache: bool = False,
    ) -> float:
        """``docker build`` of ``context``'s Dockerfile (``no_cache``: every step run again); the
        seconds it took.

        The classic builder, so that no BuildKit front-end image has to be pulled; the host's
        network, since this daemon has no bridge (the build only talks to the package index).
        """
        argv = ["build", "--network=host", "--tag", tag]
        if no_cache:
            argv.append("--no-cache")
        if platform:
            argv += ["--platform", platform]
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        started = time.monotonic()
        _run(
            "env",
            "DOCKER_BUILDKIT=0",
            *self.command(*argv, str(context)),
            what=f"docker build of {tag}",
            timeout=1200,
        )
        return time.monotonic() - started

    def push(self, tag: str) -> None:
        self.run("push", tag, what=f"docker push of {tag}")


def build_base_image(docker: Docker, tag: str, *, arch: str = "amd64") -> None:
    """A Python base image made from Debian's packages, standing in for python:*-slim.

    mmdebstrap builds a minimal Debian (``DEBIAN_SUITE``) root for ``arch`` (arm64 under
    emulation) with python3 and venv; a virtualenv at /opt/python provides ``python`` and ``pip``
    first on PATH, as the official image does. It carries this machine's CA bundle so pip can
    reach the package index through this network. The image is made with ``FROM scratch`` and
    ``--platform``, so it says its architecture. Rebuilt only when the tag is missing from this
    daemon; the root filesystem is cached for a week.
    """
    if docker.has(tag):
        return
    started = time.monotonic()
    context = docker.workdir / f"base-{arch}"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    tarball = base_tarball(arch)
    try:
        os.link(tarball, context / "base.tar")
    except OSError:
        shutil.copyfile(tarball, context / "base.tar")
    (context / "Dockerfile").write_text(
        "FROM scratch\n"
        "ADD base.tar /\n"
        "ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"ENV PIP_CERT={HOST_CA_BUNDLE} SSL_CERT_FILE={HOST_CA_BUNDLE}\n"
        'CMD ["python3"]\n'
    )
    docker.build(context, tag, platform=f"linux/{arch}")
    shutil.rmtree(context)
    _say(f"built base image {tag} ({arch}) in {time.monotonic() - started:.0f} s")


#: The base the project's image is built on here: Debian trixie's python3 (``build_base_image``).
BASE_IMAGE = "secrets-operator-base:trixie"


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """The project's image, built and pushed: where it went and what it was told."""

    reference: str  # <registry>/secrets-operator:<tag>
    build: versions.BuildInfo
    seconds: float  # the `docker build` alone


def build_operator_image(
    docker: Docker, registry: str, *, tag: str = "", no_cache: bool = False
) -> BuiltImage:
    """The Dockerfile built with the version git gives (tools/release) on ``BASE_IMAGE``, pushed
    to ``registry`` (under ``tag``, by default the version's): what ``nox -s node -- image`` and
    the end-to-end tests both run."""
    build_base_image(docker, BASE_IMAGE)
    build = versions.build_info()
    reference = f"{registry}/secrets-operator:{tag or versions.image_tag(build.version)}"
    host = versions.platform_build_args(versions.HOST_PLATFORM, {versions.HOST_PLATFORM: BASE_IMAGE})
    seconds = docker.build(REPO, reference, build_args={**build.build_args(), **host}, no_cache=no_cache)
    docker.push(reference)
    return BuiltImage(reference=reference, build=build, seconds=seconds)


def build_pause_image(docker: Docker, tag: str) -> None:
    """The Pod sandbox image (registry.k8s.io cannot be reached): tools/controlplane/pause, from scratch."""
    if docker.has(tag):
        return
    source = REPO / "tools" / "controlplane" / "pause"
    context = docker.workdir / "pause-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    _run(
        "env",
        "CGO_ENABLED=0",
        "go",
        "build",
        "-trimpath",
        "-ldflags=-s -w",
        "-o",
        str(context / "pause"),
        ".",
        what="building the pause binary",
        cwd=source,
    )
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
    )
    docker.build(context, tag)


# ---------------------------------------------------------------------------------- the node


class Node:
    """containerd, CNI, kubelet, kube-proxy and kube-scheduler, joined to ``plane``."""

    def __init__(self, workdir: Path, plane: ControlPlane, *, registry: Registry, pause_image: str) -> None:
        if plane.address != NODE_IP or not plane.node:
            raise NodeError(f"the control plane must be started with address={NODE_IP!r} and node=True")
        self.workdir, self.plane, self.registry, self.pause_image = workdir, plane, registry, pause_image
        self.bins: NodeBinaries = node_binaries()
        self.processes: dict[str, Process] = {}
        self.containerd_socket = workdir / "containerd" / "containerd.sock"
        self.kubelet_port = free_port()

    # -- configuration

    def _credentials(self, name: str, *, user: str, groups: tuple[str, ...] = ()) -> Path:
        pki = self.plane.pki
        assert pki is not None
        cert, key = pki.issue(name, common_name=user, organizations=groups, server=False)
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(
            kubeconfig(
                server=self.plane.server,
                ca_cert=pki.ca_cert,
                user={"client-certificate": str(cert), "client-key": str(key)},
            )
        )
        path.chmod(0o600)
        return path

    def _containerd_config(self) -> Path:
        base = self.workdir / "containerd"
        cni_conf = base / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-pods.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "so-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(base / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        config = base / "config.toml"
        registry = self.registry.host
        config.write_text(
            f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
oom_score = 0

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.pause_image}"
  # This sandbox refuses lowering oom_score_adj; runc then fails to start containers.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"""
        )
        return config

    def _kubelet_config(self) -> Path:
        pki = self.plane.pki
        assert pki is not None
        serving_cert, serving_key = pki.issue(
            "kubelet-serving", common_name=NODE_NAME, organizations=(), server=True, ips=(NODE_IP,)
        )
        root = self.workdir / "kubelet"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1 controllers only (cgroup2 is mounted beside them, empty).
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "address": NODE_IP,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca_cert)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(root / "pod-logs"),
            "clusterDomain": "cluster.local",
            "resolvConf": "",
            "failSwapOn": False,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {"memory.available": "100Mi"},
            "registerNode": True,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(json.dumps(config, indent=2))
        return path

    def _kube_proxy_config(self, credentials: Path) -> Path:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(credentials)},
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the machine's conntrack limits alone (this sandbox may refuse changing them).
            "conntrack": {"maxPerCore": 0, "min": 0},
            "iptables": {"masqueradeAll": False, "localhostNodePorts": False},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(json.dumps(config, indent=2))
        return path

    # -- life cycle

    def _start(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.workdir / "logs" / f"{name}.log")
        self.processes[name] = process
        process.start()
        return process

    def start(self, *, timeout: float = 120) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        network_up()
        try:
            containerd = self._start("containerd", ["containerd", f"--config={self._containerd_config()}"])
            _wait_until("containerd", self.containerd_socket.exists, timeout=30, alive=containerd.check_alive)
            kubelet_credentials = self._credentials(
                "kubelet", user=f"system:node:{NODE_NAME}", groups=("system:nodes",)
            )
            self._start(
                "kubelet",
                [
                    str(self.bins.kubelet),
                    f"--config={self._kubelet_config()}",
                    f"--kubeconfig={kubelet_credentials}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_IP}",
                    f"--root-dir={self.workdir / 'kubelet'}",
                    f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
                    "--v=1",
                ],
            )
            proxy_credentials = self._credentials("kube-proxy", user="system:kube-proxy")
            self._start(
                "kube-proxy",
                [str(self.bins.kube_proxy), f"--config={self._kube_proxy_config(proxy_credentials)}"],
            )
            scheduler_credentials = self._credentials("kube-scheduler", user="system:kube-scheduler")
            self._start(
                "kube-scheduler",
                [
                    str(self.bins.kube_scheduler),
                    f"--kubeconfig={scheduler_credentials}",
                    f"--authentication-kubeconfig={scheduler_credentials}",
                    f"--authorization-kubeconfig={scheduler_credentials}",
                    "--authentication-skip-lookup=true",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                ],
            )
            _wait_until("the node to be Ready", self._ready, timeout=timeout, alive=self.check_alive)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        done = subprocess.run(
            [
                str(self.plane.bins.kubectl),
                "--kubeconfig",
                str(self.plane.admin_kubeconfig),
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() == "True"

    def check_alive(self) -> None:
        for process in self.processes.values():
            process.check_alive()

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-proxy", "kubelet"):
            if name in self.processes:
                self.processes[name].stop()
        if "kube-proxy" in self.processes:  # its iptables rules outlive it
            subprocess.run([str(self.bins.kube_proxy), "--cleanup"], capture_output=True, timeout=60)
        if "kubelet" in self.processes:
            remove_kubelet_chains()
        self._remove_pods()
        if "containerd" in self.processes:
            self.processes["containerd"].stop(timeout=30)
        self._unmount()
        network_down()

    def _remove_pods(self) -> None:
        """Stop every sandbox and container (they outlive the kubelet) before containerd goes."""
        if not self.containerd_socket.exists() or not self.processes.get("containerd", None):
            return
        crictl = shutil.which("crictl")
        if crictl is None:
            self._kill_shims()
            return
        endpoint = f"--runtime-endpoint=unix://{self.containerd_socket}"
        subprocess.run([crictl, endpoint, "rmp", "--all", "--force"], capture_output=True, timeout=60)

    def _kill_shims(self) -> None:
        """Without crictl: the shims of this containerd (found by its socket) and their children."""
        marker = str(self.containerd_socket)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    subprocess.run(["pkill", "-KILL", "-g", proc.name], capture_output=True)
                    subprocess.run(["kill", "-KILL", proc.name], capture_output=True)

    def _unmount(self) -> None:
        unmount_under(self.workdir)


def unmount_under(directory: Path) -> None:
    """Unmount whatever a runtime left mounted under ``directory`` (deepest first)."""
    prefix = str(directory.resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


#: One node per machine: the bridge, its address and the routes are machine-wide.
NODE_LOCK = Path("/run/secrets-operator-node.lock")


@contextlib.contextmanager
def _the_only_node() -> Iterator[None]:
    NODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with NODE_LOCK.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeError(
                "another node is running on this machine (`nox -s node -- down` stops a developer's one)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean(workdir: Path) -> None:
    """Remove what an earlier run killed before its cleanup left: mounts, then the files."""
    if not workdir.exists():
        return
    unmount_under(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[tuple[ControlPlane, Registry, Docker, Node]]:  # pragma: no cover
    """Everything, started in order and stopped in reverse (used by the e2e tests and the CLI)."""
    ensure_packages()
    node_binaries()  # build before starting anything that could time out meanwhile
    stack = contextlib.ExitStack()
    with stack:
        stack.enter_context(_the_only_node())
        docker = Docker(workdir / "docker")
        docker.start()
        stack.callback(docker.stop)
        registry = Registry(workdir / "registry")
        registry.start()
        stack.callback(registry.stop)
        pause = f"{registry.host}/pause:3.10"
        build_pause_image(docker, pause)
        docker.push(pause)
        network_up()
        stack.callback(network_down)
        plane = ControlPlane(workdir / "controlplane", address=NODE_IP, node=True)
        plane.start()
        stack.callback(plane.stop)
        node = Node(workdir / "node", plane, registry=registry, pause_image=pause)
        node.start()
        stack.callback(node.stop)
        yield plane, registry, docker, node


# ---------------------------------------------------------------------------------- command line

DEFAULT_STATE_DIR = REPO / ".node"


def _serve(state_dir: Path) -> int:
    """Run everything in the foreground until SIGTERM/SIGINT (the body of `up`)."""
    workdir = state_dir / "run"
    clean(workdir)
    signalled = until_signalled()
    state = state_dir / "state.json"
    try:
        with running(workdir) as (plane, registry, _docker, node):
            kubeconfig_path = state_dir / "kubeconfig"
            kubeconfig_path.write_text(plane.admin_kubeconfig.read_text())
            kubeconfig_path.chmod(0o600)
            state.write_text(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "server": plane.server,
                        "kubeconfig": str(kubeconfig_path),
                        "registry": registry.host,
                        "docker": f"unix://{_docker.socket}",
                        "node": NODE_NAME,
                    }
                )
            )
            print(f"node {NODE_NAME} ready; registry {registry.host}", flush=True)
            while not signalled():
                plane.check_alive()
                node.check_alive()
                time.sleep(0.5)
    except (ControlPlaneError, NodeError, ImageError) as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    finally:
        state.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a developer's command
    parser = argparse.ArgumentParser(
        prog="python -m tools.node",
        description="prepare: install packages and build binaries; up/down: a control plane with a "
        "node, a registry and a docker daemon, in the background (state in .node/); image: build "
        "this tree's image on the running node's docker and push it to its registry",
    )
    parser.add_argument("command", choices=["prepare", "up", "down", "status", "serve", "image"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_STATE_DIR, help="state directory (default .node)")
    args = parser.parse_args(argv)
    state_dir: Path = args.dir.resolve()
    if args.command == "prepare":
        ensure_packages()
        ensure_emulation()
        node_binaries()
        return 0
    if args.command == "serve":
        return _serve(state_dir)
    found = read_state(state_dir)
    if args.command == "status":
        print(json.dumps(found, indent=2) if found else "no node is running")
        return 0 if found else 1
    if args.command == "down":
        return stop_daemon(state_dir, timeout=120, what="node")
    if args.command == "image":
        if found is None:
            print("no node is running: start one with `nox -s node -- up`", file=sys.stderr)
            return 1
        try:
            built = build_operator_image(Docker(state_dir / "run" / "docker"), found["registry"])
        except (NodeError, ImageError, versions.VersionError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        repository, tag = built.reference.rsplit(":", 1)
        print(f"built and pushed {built.reference} ({built.build.version}) in {built.seconds:.0f} s")
        kubeconfig = found["kubeconfig"]
        print(f"install: helm install secrets-operator chart/secrets-operator --kubeconfig {kubeconfig} \\")
        print(f"  --set image.repository={repository} --set image.tag={tag} ...")
        return 0
    if found is not None:
        print(f"node already running: {json.dumps(found)}")
        return 0
    ensure_packages()
    node_binaries()
    found = start_daemon("tools.node", state_dir, timeout=300, what="node")
    if found is None:
        return 1
    print(f"node {found['node']} ready; kubeconfig: {found['kubeconfig']}")
    print(f"registry: {found['registry']} (plain HTTP); docker: DOCKER_HOST={found['docker']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
