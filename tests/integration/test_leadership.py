"""High availability: every replica watches, one writes, and leadership moves when it must.

Failover figures are printed (run pytest with ``-s`` to see them); benchmarks measure them
properly. The assertions are about behaviour: a released Lease is taken over long before it
could have expired, a killed leader's Lease only once it has.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import signal
import subprocess
import sys
import time

import anyio
from kubernetes_asyncio import client

from secrets_operator.kube.client import Kube
from secrets_operator.kube.leases import LeaderElector, format_microtime
from tests.faults import FaultProxy
from tests.integration.conftest import Scenario, StartProxy
from tools.operator_process import OperatorProcess
from tools.waiting import wait_for

HTPASSWD = {"auth": "bob:$apr1$x$y"}
SHORT_LEASE = {"lease_duration_seconds": "4", "renew_deadline_seconds": "3", "retry_period_seconds": "0.5"}


async def _leader_of(replicas: list[OperatorProcess]) -> OperatorProcess:
    async def one_leader() -> OperatorProcess | None:
        leaders = [replica for replica in replicas if await replica.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    return await wait_for(one_leader, timeout=20, what="exactly one leader")


def _lease_renewals(proxy: FaultProxy) -> list[float]:
    """When the replica behind ``proxy`` wrote the Lease (monotonic start times)."""
    return [write.started for write in proxy.writes if "/leases" in write.path]


async def test_only_the_leader_writes(scenario: Scenario, proxies: StartProxy) -> None:
    """Over more than two lease durations of changing work, the standby sends no write at all:
    no POST, PATCH or DELETE of a copy, an Event or the Lease (it watches the Lease instead)."""
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"t{i}") for i in range(4)]
    leader_proxy, standby_proxy = await proxies("a"), await proxies("b")
    leader = scenario.operator_via(leader_proxy, "a", **SHORT_LEASE)
    await leader.wait_ready()
    await wait_for(leader.is_leader, timeout=20, what="replica a to lead")
    standby = scenario.operator_via(standby_proxy, "b", **SHORT_LEASE)
    await standby.wait_ready()
    since = time.monotonic()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD)

    # Work keeps arriving until the leader has renewed the Lease through more than two lease
    # durations since the standby started: the standby saw all of it, and never its expiry.
    window = 2 * float(SHORT_LEASE["lease_duration_seconds"]) + 1

    def renewed_through_window() -> bool:
        renewals = [at for at in _lease_renewals(leader_proxy) if at > since]
        return bool(renewals) and renewals[-1] - since > window

    data = dict(HTPASSWD)
    # Bounded by time, not by a number of steps: a fast operator must not finish its work before
    # the window has passed and fail a test of the standby for being quick.
    deadline = time.monotonic() + 3 * window + 30
    step = -1
    while not renewed_through_window() and time.monotonic() < deadline:
        step += 1
        if step % 3 == 0:
            targets.append(await scenario.namespace(f"n{step}"))
        elif step % 3 == 1:
            data = {"auth": f"bob:$apr1$x${step}"}
            await scenario.update_blueprint(data)
        else:
            await scenario.core.delete_namespaced_secret(scenario.secret_name, targets[step % len(targets)])
        for namespace in targets:
            await scenario.wait_copy(namespace, data)
    assert renewed_through_window(), f"the leader's Lease renewals did not span {window:g} s"

    assert standby_proxy.requests > 0, "the standby did not talk through its proxy"
    sent = [(write.method, write.path, write.status) for write in standby_proxy.writes]
    assert not sent, f"the standby sent {len(sent)} writes, the first: {sent[:3]}"
    copies = [write for write in leader_proxy.writes if "/secrets" in write.path]
    assert len(copies) >= len(targets), f"the leader wrote only {len(copies)} copies"
    assert await standby.writes() == 0
    assert not await standby.is_leader()
    assert await leader.is_leader()
    lease = await client.CoordinationV1Api(scenario.api).read_namespaced_lease(scenario.prefix, "default")
    assert lease.spec.holder_identity == leader.name
    assert (lease.spec.lease_transitions or 0) == 0, "the Lease changed hands during the window"


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

    lease_api = client.CoordinationV1Api(scenario.api)
    started = time.monotonic()
    leader.send(signal.SIGKILL)
    await leader.wait_exit()
    last = await lease_api.read_namespaced_lease(scenario.prefix, "default")
    assert last.spec.holder_identity == leader.name
    # Lease duration (4 s) + retry period (0.5 s), with room for a loaded machine.
    await wait_for(standby.is_leader, timeout=15, what="the standby to lead after SIGKILL", interval=0.01)
    took = time.monotonic() - started
    print(f"SIGKILL -> standby leads: {took * 1000:.0f} ms")
    # Safety: a killed leader never releases, so nobody may take over before its last renewal
    # has expired. Both replicas stamp the Lease from this machine's clock.
    taken = await lease_api.read_namespaced_lease(scenario.prefix, "default")
    assert taken.spec.holder_identity == standby.name
    expired = last.spec.renew_time + datetime.timedelta(seconds=last.spec.lease_duration_seconds)
    assert taken.spec.acquire_time >= expired, (last.spec, taken.spec)
    namespace = await scenario.namespace("after")
    await scenario.wait_copy(namespace, HTPASSWD)


def _logged_at(
    process: OperatorProcess, message: str, *, after: datetime.datetime
) -> datetime.datetime | None:
    """When ``process`` first logged a line starting with ``message`` at or after ``after``."""
    for line in process.log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and str(entry.get("message", "")).startswith(message):
            at = datetime.datetime.fromisoformat(entry["time"])
            if at >= after:
                return at
    return None


#: How much of the designed gap timing noise may eat: log lines of two processes on a busy machine.
GAP_TOLERANCE = 0.4


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

    # Whole milliseconds, as the log's timestamps are.
    cut_wall = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    proxy_a.blackhole = True
    cut_at = time.monotonic()
    proxy_a.cut_watches()

    # a stops leading on its own once RenewDeadline (3 s) passes without a renewal, while b
    # still waits for the Lease (4 s) to expire: never are both leaders.
    async def a_stepped_down_before_b_leads() -> bool:
        b_leads = await other.is_leader()  # read first: if a still leads after this, both did
        a_leads = await partitioned.is_leader()
        assert not (a_leads and b_leads), "two replicas led at once"
        return not a_leads

    await wait_for(
        a_stepped_down_before_b_leads, timeout=15, what="the partitioned leader to step down", interval=0.02
    )
    stepped_down = time.monotonic() - cut_at
    await wait_for(other.is_leader, timeout=15, what="b to take over", interval=0.02)
    took_over = time.monotonic() - cut_at
    namespace = await scenario.namespace("after")
    await scenario.wait_copy(namespace, HTPASSWD)
    proxy_a.heal()

    # The designed gap: a stops writing at RenewDeadline after its last renewal started, b may
    # only take the Lease LeaseDuration after it saw that renewal. Timed by the replicas' own logs.
    designed = float(SHORT_LEASE["lease_duration_seconds"]) - float(SHORT_LEASE["renew_deadline_seconds"])
    a_stopped = _logged_at(partitioned, "stopped leading", after=cut_wall)
    b_started = _logged_at(other, "started leading", after=cut_wall)
    assert a_stopped is not None, "a never logged that it stopped leading"
    assert b_started is not None, "b never logged that it started leading"
    gap = (b_started - a_stopped).total_seconds()
    print(
        f"partition: leader stepped down after {stepped_down:.2f} s, other led after {took_over:.2f} s;"
        f" logged gap {gap:.3f} s (designed {designed:g} s)"
    )
    assert gap >= designed - GAP_TOLERANCE, (
        f"a stopped leading only {gap:.3f} s before b started (designed: {designed:g} s = LeaseDuration"
        f" - RenewDeadline)"
    )
    renew_deadline = float(SHORT_LEASE["renew_deadline_seconds"])
    assert stepped_down < renew_deadline + 1.0, (
        f"a stepped down {stepped_down:.2f} s after the cut; its RenewDeadline is {renew_deadline:g} s"
    )


async def test_a_leader_whose_last_renewal_went_unanswered_still_releases_the_lease(
    scenario: Scenario,
) -> None:
    """Shutdown can cancel a renewal after the API server applied it but before its answer came
    back; the release then carries an outdated resourceVersion and must not give up on a 409."""
    lease_api = client.CoordinationV1Api(scenario.api)
    kube = await Kube.connect(kubeconfig=str(scenario.cluster.kubeconfig))
    elector = LeaderElector(
        kube,
        namespace="default",
        name=scenario.prefix,
        identity="replica-a",
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
    )
    leading = anyio.Event()

    async def lead() -> None:
        leading.set()
        await anyio.sleep_forever()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(elector.run, lead)
            with anyio.fail_after(10):
                await leading.wait()
            # A renewal of ours that the elector never heard back about: same holder, newer version.
            await lease_api.patch_namespaced_lease(
                scenario.prefix, "default", {"spec": {"leaseDurationSeconds": 16}}
            )
            tasks.cancel_scope.cancel()  # what SIGTERM does
        lease = await lease_api.read_namespaced_lease(scenario.prefix, "default")
        assert not lease.spec.holder_identity, lease.spec
        assert lease.spec.lease_duration_seconds == 1
    finally:
        await kube.close()
        await lease_api.delete_namespaced_lease(scenario.prefix, "default")


def _lease_racer(kubeconfig: str, lease: str, identity: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.integration.lease_racer", kubeconfig, "default", lease, identity]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def test_of_two_processes_racing_for_an_expired_lease_exactly_one_takes_it(scenario: Scenario) -> None:
    """Twenty times: two candidates, each in its own process, read the Lease of a holder that
    stopped renewing, wait out its claim and write at the same moment with the same
    resourceVersion. The API server takes exactly one write; the other candidate is refused (409)
    and does not lead."""
    lease_api = client.CoordinationV1Api(scenario.api)
    name = scenario.prefix
    await lease_api.create_namespaced_lease(
        "default",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1LeaseSpec(holder_identity="gone", lease_duration_seconds=1),
        ),
    )
    racers = {
        identity: _lease_racer(str(scenario.cluster.kubeconfig), name, identity)
        for identity in ("racer-a", "racer-b")
    }

    async def tell_all(word: str) -> dict[str, str]:
        for racer in racers.values():
            assert racer.stdin is not None
            racer.stdin.write(f"{word}\n")
            racer.stdin.flush()
        said = {}
        with anyio.fail_after(30):
            for identity, racer in racers.items():
                assert racer.stdout is not None
                said[identity] = (await anyio.to_thread.run_sync(racer.stdout.readline)).strip()
        return said

    winners = []
    try:
        for round in range(20):
            # The last winner stops renewing: its claim lapses one second after it is read.
            now = format_microtime(datetime.datetime.now(datetime.UTC))
            await lease_api.patch_namespaced_lease(
                name, "default", {"spec": {"holderIdentity": f"gone-{round}", "leaseDurationSeconds": 1,
                                           "renewTime": now}},
            )  # fmt: skip
            assert await tell_all("read") == {"racer-a": "ready", "racer-b": "ready"}
            results = await tell_all("go")
            assert sorted(results.values()) == ["acquired", "failed"], f"round {round}: {results}"
            (winner,) = [identity for identity, result in results.items() if result == "acquired"]
            lease = await lease_api.read_namespaced_lease(name, "default")
            assert lease.spec.holder_identity == winner, f"round {round}"
            winners.append(winner)
    finally:
        for racer in racers.values():
            assert racer.stdin is not None
            racer.stdin.close()
            await anyio.to_thread.run_sync(functools.partial(racer.wait, timeout=30))
        await lease_api.delete_namespaced_lease(name, "default")
    print(f"two-process Lease races: {len(winners)}, won by racer-a {winners.count('racer-a')} times")


async def test_lease_renewals_go_out_on_time_while_writes_wait_for_the_shared_rate_limit(
    scenario: Scenario, proxies: StartProxy
) -> None:
    """At API_QPS=1 a fan-out to 20 namespaces keeps 16 writers queued for tokens for about
    20 s. Renewals must not queue behind them: the leader renews every RetryPeriod throughout,
    and never loses the Lease (a renewal waiting its turn would miss the 3 s renew deadline)."""
    await scenario.blueprint(HTPASSWD)
    targets = [await scenario.namespace(f"q{i}") for i in range(20)]
    proxy = await proxies("a")
    leader = scenario.operator_via(proxy, "a", api_qps="1", api_burst="1", **SHORT_LEASE)
    await wait_for(leader.is_leader, timeout=40, what="replica a to lead")
    since = time.monotonic()
    for namespace in targets:
        await scenario.wait_copy(namespace, HTPASSWD, timeout=60)
    finished = time.monotonic()
    assert finished - since > 10, "the fan-out was not slowed down by the rate limit: nothing proven"

    renewals = [since, *(at for at in _lease_renewals(proxy) if at > since), finished]
    worst = max(later - earlier for earlier, later in itertools.pairwise(renewals))
    print(f"fan-out {finished - since:.1f} s at API_QPS=1; longest gap between Lease renewals {worst:.2f} s")
    metrics = await leader.metrics()
    assert metrics.value("secrets_operator_leadership_changes_total", event="lost") == 0
    # RetryPeriod 0.5 s; the renew deadline is 3 s.
    assert worst < 1.5, f"a Lease renewal waited {worst:.2f} s"
