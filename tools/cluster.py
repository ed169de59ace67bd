"""A real, local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

Why it exists: everything the operator does depends on API-server semantics (resourceVersion
conflicts, list+watch, 410 Gone, field selectors, RBAC with resourceNames, Lease updates) that
in-memory fakes get wrong. The tests, the demo and the benchmarks therefore run against the real
upstream binaries (see ``tools/binaries.py``), started here on loopback in a few seconds:

- etcd on free loopback ports with a throw-away data directory and ``--unsafe-no-fsync``;
- kube-apiserver on 127.0.0.1 with a self-signed serving certificate, client-certificate
  authentication from a throw-away CA, ``--authorization-mode=RBAC``, and service-account
  token signing, so ServiceAccount identities and RBAC behave as in any cluster, and an audit
  log of every request made by a ServiceAccount (Metadata level: never a body), in which a test
  can find any request of the operator's that the API server refused;
- kube-controller-manager running the namespace, garbage-collector, serviceaccount and token
  controllers, so deleted namespaces really terminate.

There is no kubelet and no scheduler: Pods are admitted but never run.

Every child runs in its own process group and is killed by the kernel if its parent dies
(``PR_SET_PDEATHSIG``), so a crashed test session leaves no orphan processes.

Command line (used by ``nox -s cluster``)::

    python -m tools.cluster up      # start in the background (or reuse); writes .cluster/kubeconfig
    python -m tools.cluster down    # stop it
    python -m tools.cluster status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tools.binaries import Binaries, BuildError, binaries

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO / ".cluster"
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
#: What a plane with a node also needs: Deployments roll, PodDisruptionBudgets count, Services
#: get endpoints (kube-proxy routes the ``kubernetes`` Service and the chart's metrics Service).
NODE_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "disruption-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "node-lifecycle-controller",  # lifts the not-ready taint a new node registers with
)
SERVICE_RANGE = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: the first address of the range


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message carries the failing component's log tail."""


# --------------------------------------------------------------------------------------- PKI


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """A throw-away CA with a serving certificate, an admin client certificate and an SA key.

    ``addresses`` are the IPs the API server is reached at besides loopback; the serving
    certificate also names the first address of the Service range (the ``kubernetes`` Service,
    which is how Pods reach the API server).
    """

    def __init__(self, directory: Path, *, addresses: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.addresses = addresses
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        self._not_before = now - datetime.timedelta(hours=1)
        self._not_after = now + datetime.timedelta(days=30)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secrets-operator-test-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self._ca, self._ca_key = ca, ca_key
        self.ca_cert = self._write("ca.crt", _pem_cert(ca))

        self.serving_cert, self.serving_key = self.issue(
            "apiserver",
            common_name="kube-apiserver",
            organizations=(),
            server=True,
            ips=("127.0.0.1", SERVICE_IP, *addresses),
        )
        self.admin_cert, self.admin_key = self.issue(
            "admin",
            common_name="secrets-operator-test-admin",
            organizations=("system:masters",),
            server=False,
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = self._write("sa.key", _pem_key(sa_key))
        self.sa_pub = self._write(
            "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def issue(
        self,
        name: str,
        *,
        common_name: str,
        organizations: tuple[str, ...],
        server: bool,
        ips: tuple[str, ...] = ("127.0.0.1",),
    ) -> tuple[Path, Path]:
        """A key and a certificate signed by the CA: a client one, or a server one for ``ips``."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default.svc"),
                        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)),
                    ]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH]), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return self._write(f"{name}.crt", _pem_cert(cert)), self._write(f"{name}.key", _pem_key(key))


def kubeconfig(*, server: str, ca_cert: Path, user: dict[str, str], name: str = "local") -> str:
    """A self-contained kubeconfig (JSON is valid YAML) with every credential embedded."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return json.dumps(config, indent=2) + "\n"


# ---------------------------------------------------------------------------------- processes


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGKILL this child when the process that started it dies."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Process:
    """One supervised component: its own process group, its log file, a clean stop."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        self._log_handle: IO[bytes] | None = None
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ControlPlaneError(
                f"{self.name} exited with status {self.popen.returncode}; last lines of {self.log}:\n"
                f"{_tail(self.log)}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def _wait_until(what: str, ready: Callable[[], bool], *, timeout: float, alive: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        if ready():
            return
        time.sleep(0.1)
    raise ControlPlaneError(f"{what} was not ready within {timeout:.0f} s")


# ------------------------------------------------------------------------------ control plane


#: Requests by ServiceAccounts (the operator under test always is one), at Metadata level: who,
#: what, and the response code; never a request or response body, so never Secret data.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``workdir``; see the module docstring."""

    def __init__(
        self, workdir: Path, *, bins: Binaries | None = None, address: str = "127.0.0.1", node: bool = False
    ) -> None:
        """``address``: where the API server listens and what it advertises (loopback unless a
        node's Pods must reach it); ``node``: run what a plane with a kubelet needs as well
        (the Node authorizer, and the controllers in NODE_CONTROLLERS)."""
        self.workdir = workdir
        self.address, self.node = address, node
        self.loopback = ipaddress.ip_address(address).is_loopback
        self.bins = bins or binaries()
        self.logs_dir = workdir / "logs"
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.controller_manager_port = free_port()
        self.server = f"https://{address}:{self.apiserver_port}"
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        #: Every request by a ServiceAccount (JSON lines, Metadata level): the RBAC proof reads it
        #: to find any request of the operator's that the API server refused.
        self.audit_log = workdir / "audit" / "audit.log"
        self.processes: dict[str, Process] = {}
        self.pki: PKI | None = None

    # -- life cycle

    def start(self, *, timeout: float = 90.0) -> None:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = PKI(self.workdir / "pki", addresses=(self.address,))
        self.admin_kubeconfig.write_text(
            kubeconfig(
                server=self.server,
                ca_cert=self.pki.ca_cert,
                user={
                    "client-certificate-data": base64.b64encode(self.pki.admin_cert.read_bytes()).decode(),
                    "client-key-data": base64.b64encode(self.pki.admin_key.read_bytes()).decode(),
                },
            )
        )
        self.admin_kubeconfig.chmod(0o600)
        try:
            self.start_etcd(timeout=timeout)
            self.start_apiserver(timeout=timeout)
            self.start_controller_manager(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.get(name)
            if process is not None:
                process.stop()

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- components (separately restartable, for fault tests)

    def start_etcd(self, *, timeout: float = 30.0) -> None:
        data = self.workdir / "etcd-data"
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        process = Process(
            "etcd",
            [
                str(self.bins.etcd),
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
            self.logs_dir / "etcd.log",
        )
        self.processes["etcd"] = process
        process.start()
        _wait_until(
            "etcd",
            lambda: _http_ok(f"{client}/health", context=None),
            timeout=timeout,
            alive=process.check_alive,
        )

    def start_apiserver(self, *, timeout: float = 60.0) -> None:
        assert self.pki is not None
        pki = self.pki
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        audit_policy = self.audit_log.parent / "policy.yaml"
        audit_policy.write_text(AUDIT_POLICY)
        process = Process(
            "kube-apiserver",
            [
                str(self.bins.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                # From 1.37 the API server refuses to advertise a loopback address into the
                # `kubernetes` Service's endpoints; nothing on a plane without a node reads them.
                *(["--endpoint-reconciler-type=none"] if self.loopback else []),
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.workdir / 'apiserver'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC" if self.node else "--authorization-mode=RBAC",
                f"--kubelet-client-certificate={pki.admin_cert}",
                f"--kubelet-client-key={pki.admin_key}",
                # `kubectl logs` and `exec` reach the kubelet at its InternalIP (on the node's own
                # bridge), never by looking its name up in the machine's DNS.
                "--kubelet-preferred-address-types=InternalIP",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--profiling=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=512",
            ],
            self.logs_dir / "kube-apiserver.log",
        )
        self.processes["kube-apiserver"] = process
        process.start()
        _wait_until(
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{self.server}/readyz", context=self.admin_ssl_context()),
            timeout=timeout,
            alive=process.check_alive,
        )

    def start_controller_manager(self, *, timeout: float = 60.0) -> None:
        assert self.pki is not None
        process = Process(
            "kube-controller-manager",
            [
                str(self.bins.kube_controller_manager),
                f"--kubeconfig={self.admin_kubeconfig}",
                f"--authentication-kubeconfig={self.admin_kubeconfig}",
                f"--authorization-kubeconfig={self.admin_kubeconfig}",
                "--authentication-skip-lookup=true",
                f"--controllers={','.join(CONTROLLERS + (NODE_CONTROLLERS if self.node else ()))}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.workdir / 'controller-manager'}",
                "--profiling=false",
            ],
            self.logs_dir / "kube-controller-manager.log",
        )
        self.processes["kube-controller-manager"] = process
        process.start()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # self-signed by the controller-manager itself
        _wait_until(
            "kube-controller-manager /healthz",
            lambda: _http_ok(f"https://127.0.0.1:{self.controller_manager_port}/healthz", context=insecure),
            timeout=timeout,
            alive=process.check_alive,
        )

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port (etcd keeps the data).

        Call it from the thread that started the plane: PR_SET_PDEATHSIG kills a child when
        the *thread* that started it exits, so a child started from a pool thread dies early.
        """
        self.processes["kube-apiserver"].stop()
        self.start_apiserver()

    def restart_etcd(self) -> None:
        """Stop and start etcd on the same ports and data directory (same thread rule as above)."""
        self.processes["etcd"].stop()
        self.start_etcd()

    # -- helpers

    def admin_ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def check_alive(self) -> None:
        for process in self.processes.values():
            process.check_alive()

    def log_files(self) -> list[Path]:
        return sorted(self.logs_dir.glob("*.log"))

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component, from /proc."""
        sizes = {}
        for name, process in self.processes.items():
            if process.popen is None or not process.running:
                continue
            for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[name] = int(line.split()[1]) * 1024
        return sizes


def _http_ok(url: str, *, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def print_logs(paths: list[Path], *, lines: int = 60, out: IO[str] = sys.stderr) -> None:
    """Print the tail of each component's log (used when a test session fails)."""
    for path in paths:
        print(f"\n----- last {lines} lines of {path} -----", file=out)
        print(_tail(path, lines), file=out)


# ------------------------------------------------------------------------ background daemon


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(_state_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state


def until_signalled() -> Callable[[], bool]:
    """Catch SIGTERM and SIGINT from now on; the function returned says whether one came."""
    arrived: list[int] = []

    def _note(signum: int, frame: object) -> None:
        arrived.append(signum)

    signal.signal(signal.SIGTERM, _note)
    signal.signal(signal.SIGINT, _note)
    return lambda: bool(arrived)


def _serve(state_dir: Path) -> int:
    """Run the control plane in the foreground until SIGTERM/SIGINT (the daemon's body)."""
    workdir = state_dir / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    plane = ControlPlane(workdir)
    signalled = until_signalled()
    try:
        plane.start()
    except (ControlPlaneError, BuildError) as exc:
        print(f"control plane failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    kubeconfig_path = state_dir / "kubeconfig"
    kubeconfig_path.write_text(plane.admin_kubeconfig.read_text())
    kubeconfig_path.chmod(0o600)
    _state_path(state_dir).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "server": plane.server,
                "kubeconfig": str(kubeconfig_path),
                "logs": str(plane.logs_dir),
                "startup_seconds": round(plane.startup_seconds, 2),
            }
        )
    )
    print(f"control plane ready at {plane.server} in {plane.startup_seconds:.1f} s", flush=True)
    try:
        while not signalled():
            plane.check_alive()
            time.sleep(0.5)
    except ControlPlaneError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    finally:
        plane.stop()
        _state_path(state_dir).unlink(missing_ok=True)
    return 0


def start_daemon(module: str, state_dir: Path, *, timeout: float, what: str) -> dict[str, Any] | None:
    """Run ``python -m <module> serve --dir <state_dir>`` detached; its state once it is ready.

    The daemon writes ``state.json`` (with its pid) when ready and removes it when it stops; on
    failure, its log's tail is printed and None returned.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    _state_path(state_dir).unlink(missing_ok=True)
    log = state_dir / "supervisor.log"
    with log.open("w") as handle:
        daemon = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--dir", str(state_dir)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state is not None:
            return state
        if daemon.poll() is not None:
            print(f"{what} failed to start; {log}:\n{_tail(log)}", file=sys.stderr)
            return None
        time.sleep(0.2)
    daemon.terminate()
    print(f"{what} did not start within {timeout:.0f} s; see {log}", file=sys.stderr)
    return None


def stop_daemon(state_dir: Path, *, timeout: float, what: str) -> int:
    """SIGTERM the daemon of ``state_dir`` and wait for it; SIGKILL its group after ``timeout``."""
    state = read_state(state_dir)
    if state is None:
        print(f"no {what} is running")
        return 0
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"{what} stopped")
            return 0
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    print(f"{what} did not stop in time and was killed", file=sys.stderr)
    return 1


def up(state_dir: Path, *, timeout: float = 120.0) -> int:
    state = read_state(state_dir)
    if state is not None:
        print(f"control plane already running at {state['server']} (kubeconfig: {state['kubeconfig']})")
        return 0
    try:
        found = binaries()
        found.controlplane()  # build in the foreground, with progress, before detaching
    except BuildError as exc:
        print(f"cannot start the control plane: {exc}", file=sys.stderr)
        return 2
    state = start_daemon("tools.cluster", state_dir, timeout=timeout, what="control plane")
    if state is None:
        return 1
    version, started = found.release.kubernetes_version, state["startup_seconds"]
    print(f"control plane (Kubernetes {version}) running at {state['server']} (started in {started} s)")
    print(f"kubeconfig: {state['kubeconfig']}")
    print(f"  kubectl --kubeconfig {os.path.relpath(state['kubeconfig'])} get namespaces")
    return 0


def down(state_dir: Path, *, timeout: float = 30.0) -> int:
    return stop_daemon(state_dir, timeout=timeout, what="control plane")


def status(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        print("no control plane is running")
        return 1
    print(json.dumps(state, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "serve"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_STATE_DIR, help="state directory (default .cluster)"
    )
    args = parser.parse_args(argv)
    state_dir: Path = args.dir.resolve()
    if args.command == "up":
        return up(state_dir)
    if args.command == "down":
        return down(state_dir)
    if args.command == "status":
        return status(state_dir)
    return _serve(state_dir)


if __name__ == "__main__":
    raise SystemExit(main())
