"""A narrated demonstration: ``nox -s demo``.

Starts a private local control plane, creates a blueprint and a few namespaces, runs two
operator replicas, and shows in plain words what happens: copies appear, a blueprint update
reaches every copy, a deleted or edited copy comes back, the leader stops and the other replica
takes over. It ends cleanly when done or on Ctrl-C, and leaves nothing running.
"""

from __future__ import annotations

import base64
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient

from secrets_operator.planning import content_hash
from tools.binaries import release
from tools.cluster import ControlPlane
from tools.operator_process import OperatorProcess
from tools.waiting import read_or_none, wait_for

BLUEPRINT = "htpasswd"
HOME = "auth"


def say(text: str) -> None:
    print(f"\n▶ {text}", flush=True)


def detail(text: str) -> None:
    print(f"    {text}", flush=True)


def htpasswd(user: str) -> dict[str, str]:
    line = f"{user}:$apr1$demo$0123456789abcdefABCDEF\n"
    return {"auth": base64.b64encode(line.encode()).decode()}


class Demo:
    def __init__(self, api: ApiClient, plane: ControlPlane, workdir: Path) -> None:
        self.api, self.plane, self.workdir = api, plane, workdir
        self.core = client.CoreV1Api(api)
        self.replicas: list[OperatorProcess] = []

    async def copies(self) -> dict[str, str]:
        """Each copy's data digest, computed here to compare copies; never printed."""
        listed = await self.core.list_secret_for_all_namespaces(field_selector=f"metadata.name={BLUEPRINT}")
        return {
            item.metadata.namespace: content_hash(item.type or "Opaque", item.data)
            for item in listed.items
            if item.metadata.namespace != HOME
        }

    async def timed(self, what: str, probe: Callable[[], Awaitable[object]]) -> None:
        started = time.monotonic()
        await wait_for(probe, timeout=30, what=what, interval=0.005)
        detail(f"{what}: {(time.monotonic() - started) * 1000:.0f} ms")

    async def copy_hash(self, namespace: str) -> str:
        secret = await read_or_none(self.core.read_namespaced_secret(BLUEPRINT, namespace))
        if secret is None:
            return ""
        return content_hash(secret.type or "Opaque", secret.data)

    async def leader(self) -> OperatorProcess | None:
        for replica in self.replicas:
            if replica.popen is not None and replica.popen.poll() is None and await replica.is_leader():
                return replica
        return None

    async def show_copies(self) -> None:
        blueprint = await self.copy_hash(HOME)
        for namespace, digest in sorted((await self.copies()).items()):
            same = "same data as the blueprint" if digest == blueprint else "differs from the blueprint"
            detail(f"{namespace:<10} {BLUEPRINT}  {same}")

    async def run(self) -> None:
        say(f"Creating the blueprint Secret {HOME}/{BLUEPRINT} (an htpasswd file for ingress basic auth)")
        await self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=HOME)))
        await self.core.create_namespaced_secret(
            HOME, client.V1Secret(metadata=client.V1ObjectMeta(name=BLUEPRINT), data=htpasswd("alice"))
        )
        say("Creating namespaces team-a, team-b and team-c, and an opted-out namespace 'sandbox'")
        for name in ("team-a", "team-b", "team-c"):
            await self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        await self.core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(name="sandbox", labels={"secrets-operator.io/exclude": "true"})
            )
        )

        say("Starting two operator replicas; they elect a leader through a Lease, and only the leader writes")
        env = {
            "SECRETS_OPERATOR_BLUEPRINTS": f"{HOME}/{BLUEPRINT}",
            "SECRETS_OPERATOR_LEASE_NAMESPACE": "default",
            "SECRETS_OPERATOR_LOG_LEVEL": "INFO",
        }
        for name in ("replica-1", "replica-2"):
            replica = OperatorProcess(
                name=name, kubeconfig=self.plane.admin_kubeconfig, env=env, log_dir=self.workdir
            )
            replica.start()
            self.replicas.append(replica)
        for replica in self.replicas:
            await replica.wait_ready()
        leader = await wait_for(self.leader, timeout=30, what="a leader")
        detail(f"{leader.name} holds the Lease default/secrets-operator")
        await self.timed(
            "copies in team-a, team-b and team-c", lambda: self._all_have(("team-a", "team-b", "team-c"))
        )
        await self.show_copies()
        detail("(no copy in 'auth', the blueprint's home, nor in 'sandbox', which opted out)")

        say("Creating namespace team-d: its copy is written as soon as the namespace is observed")
        await self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-d")))
        await self.timed("team-d created -> copy present", lambda: self._all_have(("team-d",)))

        say("Rotating the blueprint (alice -> bob): every existing copy follows")
        old = await self.copy_hash("team-a")
        await self.core.patch_namespaced_secret(BLUEPRINT, HOME, {"data": htpasswd("bob")})
        await self.timed("blueprint updated -> every copy updated", lambda: self._all_changed(old))
        await self.show_copies()

        say("Someone deletes the copy in team-b: it comes back")
        await self.core.delete_namespaced_secret(BLUEPRINT, "team-b")
        await self.timed("copy deleted -> restored", lambda: self._all_have(("team-b",)))

        say("Someone edits the copy in team-c: the edit is undone")
        await self.core.patch_namespaced_secret(BLUEPRINT, "team-c", {"data": htpasswd("mallory")})
        current = await self.copy_hash("team-a")
        await self.timed("copy edited -> restored", lambda: self._data_matches("team-c", "team-a", current))

        say(f"Stopping the leader ({leader.name}) with SIGTERM, as a rolling update would")
        standby = next(replica for replica in self.replicas if replica is not leader)
        started = time.monotonic()
        leader.send(signal.SIGTERM)
        await wait_for(standby.is_leader, timeout=30, what="the standby to lead", interval=0.005)
        took = (time.monotonic() - started) * 1000
        detail(f"{standby.name} leads {took:.0f} ms later (the Lease was released)")
        await leader.wait_exit()
        await self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-e")))
        await self.timed(
            "team-e created -> copy written by the new leader", lambda: self._all_have(("team-e",))
        )

        say("`secrets-operator check` reports every blueprint x namespace pair")
        check = await anyio.run_process(
            [sys.executable, "-m", "secrets_operator", "check"],
            env={**standby.env, "SECRETS_OPERATOR_LOG_LEVEL": "WARNING"},
            check=False,
        )
        for line in check.stdout.decode().splitlines():
            detail(line)
        detail(f"exit status {check.returncode} (0: everything targeted is in sync)")

    async def _all_have(self, namespaces: tuple[str, ...]) -> bool:
        copies = await self.copies()
        return all(name in copies for name in namespaces)

    async def _all_changed(self, old: str) -> bool:
        hashes = [await self.copy_hash(name) for name in ("team-a", "team-b", "team-c", "team-d")]
        return all(digest and digest != old for digest in hashes) and len(set(hashes)) == 1

    async def _data_matches(self, namespace: str, reference: str, digest: str) -> bool:
        first = await read_or_none(self.core.read_namespaced_secret(BLUEPRINT, namespace))
        second = await read_or_none(self.core.read_namespaced_secret(BLUEPRINT, reference))
        return bool(
            first and second and first.data == second.data and await self.copy_hash(namespace) == digest
        )

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


async def main(workdir: Path) -> None:
    say(
        "Starting a local control plane: etcd, kube-apiserver and kube-controller-manager "
        f"{release().kubernetes_version}"
    )
    plane = ControlPlane(workdir / "controlplane")
    plane.start()
    demo: Demo | None = None
    try:
        detail(f"ready at {plane.server} in {plane.startup_seconds:.1f} s")
        api = await config.new_client_from_config(config_file=str(plane.admin_kubeconfig))
        async with api:
            demo = Demo(api, plane, workdir)
            await demo.run()
        say("Done. Stopping the operators and the control plane.")
    finally:
        if demo is not None:
            demo.stop()
        plane.stop()


def run() -> int:
    with tempfile.TemporaryDirectory(prefix="secrets-operator-demo-") as tmp:
        try:
            anyio.run(main, Path(tmp))
        except KeyboardInterrupt:
            print("\nInterrupted; everything started by the demo has been stopped.")
            return 130
    print("Nothing is left running.")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
