"""High availability: every replica watches, one writes, and leadership moves when it must.

Failover figures are printed (run pytest with ``-s`` to see them); benchmarks measure them
properly. The assertions are about behaviour: a released Lease is taken over long before it
could have expired, a killed leader's Lease only once it has.
"""

from __future__ import annotations

import signal
import time

from kubernetes_asyncio import client

from tests.integration.conftest import Scenario, StartProxy
from tests.operator import OperatorProcess
from tests.support import wait_for

HTPASSWD = {"auth": "bob:$apr1$x$y"}
SHORT_LEASE = {"lease_duration_seconds": "4", "renew_deadline_seconds": "3", "retry_period_seconds": "0.5"}


async def _leader_of(replicas: list[OperatorProcess]) -> OperatorProcess:
    async def one_leader() -> OperatorProcess | None:
        leaders = [replica for replica in replicas if await replica.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    return await wait_for(one_leader, timeout=20, what="exactly one leader")


async def test_only_the_leader_writes(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(4)]
    replicas = [scenario.operator("a"), scenario.operator("b")]
    for replica in replicas:
        await replica.wait_ready()
    leader = await _leader_of(replicas)
    standby = next(replica for replica in replicas if replica is not leader)
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)
    more = await scenario.namespace("later")
    await scenario.wait_copy(more, HTPASSWD)
    assert await leader.writes() >= len(targets) + 1
    assert await standby.writes() == 0
    assert not await standby.is_leader()
    lease = await client.CoordinationV1Api(scenario.api).read_namespaced_lease(scenario.prefix, "default")
    assert lease.spec.holder_identity == leader.name


async def test_sigterm_hands_leadership_over_at_once(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    replicas = [scenario.operator("a"), scenario.operator("b")]
    for replica in replicas:
        await replica.wait_ready()
    leader = await _leader_of(replicas)
    standby = next(replica for replica in replicas if replica is not leader)
    lease_api = client.CoordinationV1Api(scenario.api)
    before = await lease_api.read_namespaced_lease(scenario.prefix, "default")

    started = time.monotonic()
    leader.send(signal.SIGTERM)
    # The default Lease lasts 15 s: taking over well before that proves it was released.
    await wait_for(standby.is_leader, timeout=10, what="the standby to lead after SIGTERM", interval=0.01)
    print(f"SIGTERM -> standby leads: {(time.monotonic() - started) * 1000:.0f} ms")
    assert await leader.wait_exit() == 0
    after = await lease_api.read_namespaced_lease(scenario.prefix, "default")
    assert after.spec.holder_identity == standby.name
    assert after.spec.lease_transitions == (before.spec.lease_transitions or 0) + 1
    # The new leader writes: a namespace created now gets its copy.
    namespace = await scenario.namespace("after")
    await scenario.wait_copy(namespace, HTPASSWD)


async def test_sigkill_hands_leadership_over_after_the_lease_expires(scenario: Scenario) -> None:
    await scenario.blueprint(HTPASSWD)
    replicas = [scenario.operator("a", **SHORT_LEASE), scenario.operator("b", **SHORT_LEASE)]
    for replica in replicas:
        await replica.wait_ready()
    leader = await _leader_of(replicas)
    standby = next(replica for replica in replicas if replica is not leader)

    started = time.monotonic()
    leader.send(signal.SIGKILL)
    await leader.wait_exit()
    # Lease duration (4 s) + retry period (0.5 s), with room for a loaded machine.
    await wait_for(standby.is_leader, timeout=15, what="the standby to lead after SIGKILL", interval=0.01)
    took = time.monotonic() - started
    print(f"SIGKILL -> standby leads: {took * 1000:.0f} ms")
    # Safety: a killed leader never releases, so nobody may take over before the Lease expired.
    assert took > 3.0
    namespace = await scenario.namespace("after")
    await scenario.wait_copy(namespace, HTPASSWD)


async def test_leader_that_cannot_renew_stops_writing_before_another_takes_over(
    scenario: Scenario, proxies: StartProxy
) -> None:
    proxy_a = await proxies("a")
    await scenario.blueprint(HTPASSWD)
    partitioned = scenario.operator_via(proxy_a, "a", **SHORT_LEASE)
    await partitioned.wait_ready()
    await wait_for(partitioned.is_leader, timeout=20, what="replica a to lead")
    other = scenario.operator("b", **SHORT_LEASE)
    await other.wait_ready()

    proxy_a.blackhole = True
    cut_at = time.monotonic()
    proxy_a.cut_watches()
    # a stops leading on its own once RenewDeadline (3 s) passes without a renewal...
    await wait_for(
        lambda: _not_leader(partitioned),
        timeout=15,
        what="the partitioned leader to step down",
        interval=0.02,
    )
    stepped_down = time.monotonic() - cut_at
    await wait_for(other.is_leader, timeout=15, what="b to take over", interval=0.02)
    took_over = time.monotonic() - cut_at
    print(f"partition: leader stepped down after {stepped_down:.2f} s, other led after {took_over:.2f} s")
    assert stepped_down < took_over
    namespace = await scenario.namespace("after")
    await scenario.wait_copy(namespace, HTPASSWD)
    proxy_a.heal()


async def _not_leader(replica: OperatorProcess) -> bool:
    return not await replica.is_leader()
