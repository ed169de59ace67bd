"""Chaos: the operator under broken watches, 410s, throttling, errors, latency, restarts of the
control plane, partitions, kills and pauses — and with awkward Secrets.

Each replica talks to the API server through its own fault proxy (tests/faults.py). Every fault
must demonstrably hit (the proxy counts what it served); after it is healed, every selected
namespace must converge to the exact copy, also for changes made after healing, no operator
process may have crashed, and nothing the operator does not own may have been touched. With
several replicas, the proxies' logs of writes must never show two writers at once, and the
writer may only change when the Lease changes hands; a partition of the Lease alone leaves a
deposed leader its Secrets, so a write after losing the Lease would show.

These run in ``nox -s faults`` on the newest minor, and in ``nox -s integration`` (part of plain
``nox``) on every supported minor.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import signal
import time
from collections.abc import Callable

import anyio
import pytest
from kubernetes_asyncio import client

from tests.conftest import Cluster
from tests.faults import FaultProxy, Write
from tests.integration.conftest import Scenario, StartProxy, b64
from tools.operator_process import OperatorProcess
from tools.waiting import wait_for

pytestmark = pytest.mark.faults

SHORT_LEASE = {"lease_duration_seconds": "4", "renew_deadline_seconds": "3", "retry_period_seconds": "0.5"}
RENEW_DEADLINE = float(SHORT_LEASE["renew_deadline_seconds"])
#: A write the operator checked just before its deadline reaches its proxy a little later than
#: that check, while a renewal reaches the proxy after the moment the operator counts it from:
#: both skews favour the operator, by the time a request takes over loopback.
IN_FLIGHT_SLACK = 0.05
#: Between two blueprint updates while a Lease partition is on: the deposed leader keeps being
#: given work right up to, and past, its renew deadline.
WORK_INTERVAL = 0.2
#: The least a fault lasts; it lasts longer (up to FAULT_HIT_TIMEOUT) until it has hit what it must.
FAULT_SECONDS = 6.0
FAULT_HIT_TIMEOUT = 45.0
#: Between two changes of the world while a fault is on.
CHANGE_INTERVAL = 0.7


async def _cut_at_random(proxy: FaultProxy) -> None:
    while True:
        await anyio.sleep(random.uniform(0.2, 1.0))
        proxy.cut_watches()


def _apply_fault(proxy: FaultProxy, fault: str) -> None:
    if fault in ("gone", "all"):
        proxy.gone_path = ""
        proxy.gone_next_watches = 10_000
    if fault in ("throttle", "all"):
        proxy.throttle_ratio = 0.3
    if fault in ("errors", "all"):
        proxy.fail_ratio = 0.1
    if fault in ("latency", "all"):
        proxy.latency = 0.15


def _missing_hits(proxy: FaultProxy, fault: str) -> list[str]:
    """What the fault has not hit yet; empty once it has demonstrably taken effect.

    A fault that hit nothing proves nothing: with 10 % errors, a short window often fails no
    write at all. Every fault must have reached the requests it is about (a copy write, a watch).
    """
    missing = []
    if fault in ("cut-watches", "all") and proxy.watches_cut < 3:
        missing.append(f"3 watch streams cut (cut {proxy.watches_cut})")
    if fault in ("gone", "all") and proxy.injected_count("410", path="/api/v1/secrets") < 1:
        missing.append(f"a 410 to the copies' watch ({proxy.gone_served} 410s served in all)")
    for name, code in (("throttle", "429"), ("errors", "5xx"), ("latency", "latency")):
        if fault in (name, "all") and proxy.injected_count(code, writes_only=True, path="/secrets") < 1:
            missing.append(f"a {code} on a write to a copy ({proxy.injected_count(code)} on any request)")
    return missing


async def _exact_everywhere(
    scenario: Scenario, namespaces: list[str], data: dict[str, str], timeout: float
) -> None:
    for namespace in namespaces:
        await scenario.wait_copy(namespace, data, timeout=timeout)


async def _change_the_world(scenario: Scenario, targets: list[str], step: int, data: dict[str, str]) -> None:
    """One change that needs a write: a new namespace, a blueprint update, a deleted or drifted copy."""
    kind = step % 4
    if kind == 0:
        targets.append(await scenario.namespace(f"n{step}"))
    elif kind == 1:
        await scenario.update_blueprint(data)
    elif kind == 2:
        victim = targets[step % len(targets)]
        if await scenario.copy(victim) is not None:
            await scenario.core.delete_namespaced_secret(scenario.secret_name, victim)
    else:
        victim = targets[step % len(targets)]
        if await scenario.copy(victim) is not None:
            await scenario.core.patch_namespaced_secret(
                scenario.secret_name, victim, {"data": {"auth": b64("bad")}}
            )


@pytest.mark.parametrize("fault", ["cut-watches", "gone", "throttle", "errors", "latency", "all"])
async def test_converges_after_each_fault_and_touches_nothing_else(
    fault: str, scenario: Scenario, proxies: StartProxy
) -> None:
    await scenario.blueprint({"auth": "v1"})
    targets = [await scenario.namespace(f"t{i}") for i in range(4)]
    twin_ns = await scenario.namespace("twin")
    twin = await scenario.core.create_namespaced_secret(
        twin_ns,
        client.V1Secret(metadata=client.V1ObjectMeta(name=scenario.secret_name), string_data={"x": "mine"}),
    )
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, "a", **SHORT_LEASE)
    await operator.wait_ready()
    await _exact_everywhere(scenario, targets, {"auth": "v1"}, timeout=20)

    # The world keeps changing all through the fault, which lasts until it has hit what it is about.
    started = time.monotonic()
    _apply_fault(proxy, fault)
    missing: list[str] = []
    async with anyio.create_task_group() as chaos:
        if fault in ("cut-watches", "gone", "all"):
            chaos.start_soon(_cut_at_random, proxy)
        for step in itertools.count():
            elapsed = time.monotonic() - started
            missing = _missing_hits(proxy, fault)
            if (elapsed >= FAULT_SECONDS and not missing) or elapsed >= FAULT_HIT_TIMEOUT:
                break
            await _change_the_world(scenario, targets, step, {"auth": f"v2-{step}", "new": "key"})
            await anyio.sleep(CHANGE_INTERVAL)
        chaos.cancel_scope.cancel()
    assert not missing, f"{fault}: after {FAULT_HIT_TIMEOUT:.0f} s the fault still had not hit {missing}"
    data = {"auth": "v2-last", "new": "key"}
    await scenario.update_blueprint(data)
    proxy.heal()
    await _exact_everywhere(scenario, targets, data, timeout=60)

    # Healed: every informer must have resumed. Change the world again, through every watch.
    healed_writes = len(proxy.writes)
    data = {"auth": "v3", "after": "heal"}
    await scenario.update_blueprint(data)  # the blueprint's watch
    targets.append(await scenario.namespace("after"))  # the namespaces' watch
    await _exact_everywhere(scenario, targets, data, timeout=30)
    await scenario.core.delete_namespaced_secret(scenario.secret_name, targets[0])  # the copies' watch
    await scenario.core.patch_namespaced_secret(
        scenario.secret_name, targets[1], {"data": {"auth": b64("x")}}
    )
    await _exact_everywhere(scenario, targets, data, timeout=30)
    assert len(proxy.writes) > healed_writes, "the changes after healing were not written through the proxy"

    assert operator.popen is not None
    assert operator.popen.poll() is None, "the operator crashed"
    untouched = await scenario.core.read_namespaced_secret(scenario.secret_name, twin_ns)
    assert untouched.metadata.resource_version == twin.metadata.resource_version
    hits = {code: proxy.injected_count(code) for code in ("410", "429", "5xx", "latency")}
    print(
        f"{fault}: {time.monotonic() - started:.1f} s, {proxy.requests} requests, {len(proxy.writes)} writes,"
        f" {proxy.watches_cut} watches cut, faults served {hits}"
    )


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
async def test_operator_recovers_when_a_control_plane_component_restarts(
    component: str, scenario: Scenario, cluster: Cluster
) -> None:
    if cluster.plane is None:
        pytest.skip(f"restarting {component} needs the local control plane")
    await scenario.blueprint({"auth": "e1"})
    operator = scenario.operator()
    await operator.wait_ready()
    before = await scenario.namespace("before")
    await scenario.wait_copy(before, {"auth": "e1"})

    # On this thread, not a worker thread: children die with the thread that started them.
    if component == "etcd":
        cluster.plane.restart_etcd()
    else:
        cluster.plane.restart_apiserver()

    async def api_back() -> bool:
        try:
            await scenario.core.list_namespace(limit=1)
        except Exception:  # any failure means "not yet"
            return False
        return True

    await wait_for(api_back, timeout=60, what=f"the API server to serve again after {component} restarted")
    after = await scenario.namespace("after")
    await scenario.update_blueprint({"auth": "e2"})
    await _exact_everywhere(scenario, [before, after], {"auth": "e2"}, timeout=90)
    await scenario.core.delete_namespaced_secret(scenario.secret_name, before)
    await scenario.wait_copy(before, {"auth": "e2"})
    assert operator.popen is not None
    assert operator.popen.poll() is None, "the operator had to be restarted"


# ----------------------------------------------------------------- many disruptions, one writer


def _secret_writes(proxy: FaultProxy) -> list[Write]:
    return _secret_writes_of(proxy.writes)


def _renewals(proxy_writes: list[Write]) -> list[Write]:
    """The Lease writes (acquire, renew) the API server accepted."""
    return [write for write in proxy_writes if "/leases" in write.path and write.status in (200, 201)]


def _writes_after_deadline(
    proxy_writes: list[Write], *, cut: float, healed: float, renew_deadline: float = RENEW_DEADLINE
) -> tuple[list[Write], float]:
    """The Secret writes a replica cut off from the Lease alone (from ``cut`` to ``healed``) started
    after it had to stop: later than the start of its last accepted Lease write plus RenewDeadline.

    Returns those writes and that deadline. Both come from the replica's own proxy, which logs
    every request's start on one clock; the Lease writes go through the same proxy.
    """
    renewed = [write.started for write in _renewals(proxy_writes) if write.started < healed]
    deadline = (max(renewed) if renewed else cut) + renew_deadline
    late = [
        write
        for write in _secret_writes_of(proxy_writes)
        if cut <= write.started < healed and write.started > deadline + IN_FLIGHT_SLACK
    ]
    return late, deadline


def _secret_writes_of(proxy_writes: list[Write]) -> list[Write]:
    return [write for write in proxy_writes if "/secrets" in write.path]


def _check_single_writer(logs: dict[str, list[Write]], transitions: int) -> int:
    """No two replicas' writes overlap in time, and the writer only changes with the Lease."""
    writes = sorted((write.started, write.finished, who) for who, found in logs.items() for write in found)
    switches = 0
    for (_, end_a, who_a), (start_b, _, who_b) in itertools.pairwise(writes):
        if who_a != who_b:
            switches += 1
            assert end_a <= start_b, f"{who_a} was still writing when {who_b} started"
    assert switches <= transitions, (
        f"the writer changed {switches} times but the Lease only {transitions} times"
    )
    # Overlaps between non-adjacent writes of different replicas.
    for i, (_, end, who) in enumerate(writes):
        for other_start, _, other in writes[i + 1 :]:
            if other_start >= end:
                break
            assert other == who, f"{who} and {other} wrote at the same time"
    return switches


async def test_one_writer_through_twenty_partitions_kills_and_pauses(
    scenario: Scenario, proxies: StartProxy
) -> None:
    await scenario.blueprint({"auth": "r0"})
    fleet: dict[str, tuple[OperatorProcess, FaultProxy]] = {}
    every_proxy: dict[str, FaultProxy] = {}
    counter = 0

    async def add_replica() -> None:
        nonlocal counter
        counter += 1
        name = f"r{counter}"
        proxy = every_proxy[name] = await proxies(name)
        fleet[name] = (scenario.operator_via(proxy, name, **SHORT_LEASE), proxy)
        await fleet[name][0].wait_ready()

    for _ in range(2):
        await add_replica()

    async def leader() -> str | None:
        leading = []
        for name, (process, _) in fleet.items():
            if process.popen is not None and process.popen.poll() is None and await process.is_leader():
                leading.append(name)
        return leading[0] if len(leading) == 1 else None

    # A Lease partition cuts only the leader's requests to the Lease: it keeps reaching its
    # Secrets, so a deposed leader that went on writing would show in its proxy's log. In the
    # other disruptions it cannot (dropped, killed or frozen), so they only catch a standby that
    # writes without a Lease transition. In both Lease partitions, no Secret write of the deposed
    # leader may start after its last renewal's start plus RenewDeadline (from its proxy's log).
    # In "lease-partition" work keeps arriving all through the partition, so it is busy when the
    # deadline passes. In "lease-partition-paused" it is frozen (idle) just before its deadline
    # and woken just after, before anyone else may lead, to work that arrived meanwhile. Either
    # way two things stop it on time: the elector cancels its workers at the deadline, and every
    # write checks may_write() first; this catches a write that both let through (a guard broken
    # alone is not caught, as the cancellation comes first, also on waking from a freeze).
    disruptions = ["partition", "sigstop", "sigkill", "lease-partition", "lease-partition-paused"]
    namespaces: list[str] = []

    async def work_arrives(iteration: int) -> None:
        namespaces.append(await scenario.namespace(f"i{iteration}"))
        await scenario.update_blueprint({"auth": f"r{iteration + 1}"})

    async def keep_working(iteration: int) -> None:
        for step in itertools.count():
            await scenario.update_blueprint({"auth": f"r{iteration}-{step}"})
            await anyio.sleep(WORK_INTERVAL)

    async def work_through(scope: anyio.CancelScope, iteration: int) -> None:
        with scope:
            await keep_working(iteration)

    # (replica, disruption, its proxy, when its Lease was cut off, when that was healed)
    lease_cuts: list[tuple[str, str, FaultProxy, float, float]] = []

    async with anyio.create_task_group() as background:
        for iteration in range(20):
            kind = disruptions[iteration % len(disruptions)]
            current = await wait_for(leader, timeout=30, what="one leader", interval=0.05)
            process, proxy = fleet[current]
            # Disrupt a leader with nothing left to do. One frozen between its leadership check and
            # sending a write would send it when it wakes: a Lease cannot fence that (operations.md).
            await _exact_everywhere(scenario, namespaces, {"auth": f"r{iteration}"}, timeout=30)

            async def idle(process: OperatorProcess = process) -> bool:
                metrics = await process.metrics()
                return (
                    metrics.only("secrets_operator_queue_depth") == 0
                    and metrics.only("secrets_operator_queue_in_progress") == 0
                )

            await wait_for(idle, timeout=30, what=f"{current} to have nothing queued")
            working = None
            lease_only = kind.startswith("lease-partition")
            if kind == "lease-partition":
                # Work keeps arriving through the whole partition, before and after the renew
                # deadline: only the write guard (may_write) can stop the deposed leader's writes
                # between that deadline and the moment its workers are cancelled.
                working = anyio.CancelScope()
                background.start_soon(work_through, working, iteration)
                await anyio.sleep(3 * WORK_INTERVAL)  # the leader is busy when the cut comes
            cut = time.monotonic()
            if kind == "partition":
                proxy.blackhole = True
                proxy.cut_watches()
            elif lease_only:
                proxy.blackhole_path = "/leases"
                proxy.blackhole = True
                proxy.cut_watches("/leases")
                if kind == "lease-partition-paused":
                    working = anyio.CancelScope()
                    start = functools.partial(background.start_soon, work_through, working, iteration)
                    await _pause_across_the_deadline(process, proxy, cut, start)
            elif kind == "sigstop":
                process.send(signal.SIGSTOP)
            else:
                process.send(signal.SIGKILL)
            if not lease_only:
                # Work arrives while the leader is gone; a standby must take over and do it.
                await work_arrives(iteration)
            await wait_for(
                lambda current=current: _other_leads(fleet, current),  # type: ignore[misc]
                timeout=30,
                what=f"another replica to lead ({kind})",
                interval=0.05,
            )
            if lease_only:
                # Work arrives once another leads, seen by the deposed leader's informers as well.
                assert proxy.open_watches("/secrets") >= 1, f"{current} lost its Secret watches too"
                await anyio.sleep(1.0)  # still more work while the deposed leader sees it
                assert working is not None
                working.cancel()
                await work_arrives(iteration)
            await scenario.wait_copy(namespaces[-1], {"auth": f"r{iteration + 1}"}, timeout=30)
            if kind == "partition" or lease_only:
                proxy.heal()
                if lease_only:
                    lease_cuts.append((current, kind, proxy, cut, time.monotonic()))
            elif kind == "sigstop":
                process.send(signal.SIGCONT)
            else:
                await process.wait_exit()
                del fleet[current]
                await add_replica()
            print(f"iteration {iteration}: {kind} of {current} survived")

    await _exact_everywhere(scenario, namespaces, {"auth": "r20"}, timeout=30)
    lease = await client.CoordinationV1Api(scenario.api).read_namespaced_lease(scenario.prefix, "default")
    # Every replica that ever ran, killed ones included, each seen through its own proxy.
    logs = {name: _secret_writes(proxy) for name, proxy in every_proxy.items()}
    # A replica cut off from the Lease alone still reaches its Secrets, and had work all along:
    # none of its writes may start after its renew deadline.
    for name, kind, proxy, cut, healed in lease_cuts:
        late, deadline = _writes_after_deadline(proxy.writes, cut=cut, healed=healed)
        assert not late, (
            f"{name} started {len(late)} Secret writes after its renew deadline (cut off from the"
            f" Lease at {cut:.3f}, deadline {deadline:.3f}): "
            + ", ".join(
                f"{w.method} {w.path} at {w.started:.3f} ({w.started - deadline:+.3f} s)" for w in late[:3]
            )
        )
        before = [w for w in _secret_writes_of(proxy.writes) if cut <= w.started <= deadline]
        if kind == "lease-partition":  # the paused one is idle until it is frozen
            assert before, (
                f"{name} wrote no Secret between the Lease cut and its deadline: no work reached it"
            )
        print(f"{kind} of {name}: {len(before)} Secret writes between the cut and its deadline, none after")
    switches = _check_single_writer(logs, lease.spec.lease_transitions or 0)
    print(f"20 disruptions: {switches} writer switches, {lease.spec.lease_transitions} lease transitions")
    for name, (process, _) in fleet.items():
        assert process.popen is not None
        assert process.popen.poll() is None, f"replica {name} crashed"


async def _pause_across_the_deadline(
    process: OperatorProcess, proxy: FaultProxy, cut: float, start_work: Callable[[], object]
) -> None:
    """Freeze a replica cut off from the Lease (and idle) just before its renew deadline and wake
    it just after, while its Lease cannot yet have expired for anyone else (LeaseDuration >
    RenewDeadline): it wakes to work that arrived meanwhile, with no one else writing it yet.

    Frozen while idle, it cannot be caught between its leadership check and sending a write.
    """
    renewed = [write.started for write in _renewals(proxy.writes)]
    deadline = (max(renewed) if renewed else cut) + RENEW_DEADLINE
    await anyio.sleep(max(0.0, deadline - 0.2 - time.monotonic()))
    process.send(signal.SIGSTOP)
    start_work()  # work arrives while it is frozen
    # Wake it in the middle of the second
    # between its renew deadline and the earliest moment another replica may take the Lease.
    await anyio.sleep(max(0.0, deadline + 0.4 - time.monotonic()))
    process.send(signal.SIGCONT)


async def _other_leads(fleet: dict[str, tuple[OperatorProcess, FaultProxy]], current: str) -> bool:
    for name, (process, _) in fleet.items():
        if name != current and process.popen and process.popen.poll() is None and await process.is_leader():
            return True
    return False


# ------------------------------------------------------------------------ awkward Secrets


async def test_large_binary_and_many_key_blueprints_are_copied_exactly(scenario: Scenario) -> None:
    big = os.urandom(1024 * 1024)  # exactly the API server's limit for a Secret's data (1 MiB)
    binary = bytes(range(256)) * 4  # every byte value, NUL included
    many = {f"key-{i:04d}": f"value {i}" for i in range(400)}
    await scenario.namespace("home")
    for name, data in (
        ("big", {"blob": big}),
        ("binary", {"raw": binary}),
        ("many", {k: v.encode() for k, v in many.items()}),
    ):
        await scenario.core.create_namespaced_secret(
            scenario.home,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=f"{scenario.prefix}-{name}"),
                data={key: _b64bytes(value) for key, value in data.items()},
            ),
        )
    targets = [await scenario.namespace(f"t{i}") for i in range(3)]
    refs = ",".join(f"{scenario.home}/{scenario.prefix}-{name}" for name in ("big", "binary", "many"))
    operator = scenario.operator(blueprints=refs)
    await operator.wait_ready()
    for namespace in targets:
        for name, expected in (("big", {"blob": big}), ("binary", {"raw": binary})):
            await _wait_bytes(scenario, namespace, f"{scenario.prefix}-{name}", expected)
        await _wait_bytes(
            scenario, namespace, f"{scenario.prefix}-many", {k: v.encode() for k, v in many.items()}
        )
    # A change to the big one reaches every copy too.
    bigger = os.urandom(1024 * 1024)
    await scenario.core.patch_namespaced_secret(
        f"{scenario.prefix}-big", scenario.home, {"data": {"blob": _b64bytes(bigger)}}
    )
    for namespace in targets:
        await _wait_bytes(scenario, namespace, f"{scenario.prefix}-big", {"blob": bigger})


def _b64bytes(value: bytes) -> str:
    import base64

    return base64.b64encode(value).decode()


async def _wait_bytes(scenario: Scenario, namespace: str, name: str, expected: dict[str, bytes]) -> None:
    wanted = {key: _b64bytes(value) for key, value in expected.items()}

    async def exact() -> bool:
        copy = await scenario.copy(namespace, name)
        return copy is not None and (copy.data or {}) == wanted

    await wait_for(exact, timeout=30, what=f"an exact copy of {name} in {namespace}", interval=0.2)


def _error_lines(log: str) -> list[str]:
    """ERROR and CRITICAL entries of an operator's JSON log, and anything that is not JSON at all
    (a traceback printed by the interpreter itself never goes through the formatter)."""
    found = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            found.append(line)
            continue
        if not isinstance(entry, dict) or entry.get("level") in ("ERROR", "CRITICAL"):
            found.append(line)
    return found


async def test_namespaces_deleted_while_their_copies_are_written_are_handled(
    scenario: Scenario, proxies: StartProxy
) -> None:
    await scenario.blueprint({"auth": "d1"})
    proxy = await proxies("p")
    operator = scenario.operator_via(proxy, "a")
    await operator.wait_ready()
    doomed, kept, held = [], [], []
    for i in range(15):
        name = f"{scenario.prefix}-doomed{i}"
        if i % 3 == 0:
            # Surely a race: the operator's create is held in the proxy until the namespace is
            # being deleted.
            proxy.hold_writes_path, proxy.hold_writes = f"/namespaces/{name}/", True
            before = proxy.held_writes

            async def create_held(before: int = before) -> bool:
                return proxy.held_writes > before

            doomed.append(await scenario.namespace(f"doomed{i}"))
            await wait_for(create_held, timeout=20, what=f"the operator's write into {name}")
            await scenario.core.delete_namespace(name)
            proxy.release_writes()
            held.append(name)
        else:
            doomed.append(await scenario.namespace(f"doomed{i}"))
            await scenario.core.delete_namespace(name)  # races the operator's create
        kept.append(await scenario.namespace(f"kept{i}"))
    await _exact_everywhere(scenario, kept, {"auth": "d1"}, timeout=30)

    async def all_gone() -> bool:
        names = {ns.metadata.name for ns in (await scenario.core.list_namespace()).items}
        return not names & set(doomed)

    await wait_for(all_gone, timeout=90, what="the deleted namespaces to disappear", interval=0.5)
    assert operator.popen is not None
    assert operator.popen.poll() is None
    await scenario.update_blueprint({"auth": "d2"})
    await _exact_everywhere(scenario, kept, {"auth": "d2"}, timeout=30)

    # The race happened: writes into namespaces being deleted were refused (403 "being
    # terminated", 404 once gone, 409), and the operator counted them as skipped, not found or
    # conflicts.
    refused = [
        write
        for write in proxy.writes
        if any(f"/namespaces/{name}/" in write.path for name in held) and write.status in (403, 404, 409)
    ]
    assert len(refused) >= len(held), (
        f"only {len(refused)} refused writes into the {len(held)} namespaces deleted mid-write:"
        f" {[(w.method, w.path, w.status) for w in proxy.writes if 'doomed' in w.path]}"
    )
    metrics = await operator.metrics()
    answered = sum(
        metrics.value("secrets_operator_writes_total", result=result)
        for result in ("skipped", "conflict", "not_found")
    )
    assert answered >= len(held), f"the operator counted {answered} skipped, missing or conflicting writes"
    errors = _error_lines(operator.log)
    assert not errors, f"the operator logged {len(errors)} errors, the first: {errors[0]}"


def test_single_writer_check_catches_split_brain() -> None:
    """The checker above must be able to fail, or the twenty-disruption test proves nothing."""

    def write(start: float, end: float) -> Write:
        return Write(
            started=start, finished=end, method="PATCH", path="/api/v1/namespaces/x/secrets/y", status=200
        )

    clean = {"a": [write(0, 1), write(2, 3)], "b": [write(4, 5)]}
    assert _check_single_writer(clean, transitions=1) == 1
    with pytest.raises(AssertionError, match=r"at the same time|still writing"):
        _check_single_writer({"a": [write(0, 3)], "b": [write(1, 2)]}, transitions=5)
    with pytest.raises(AssertionError, match="the Lease only"):
        _check_single_writer({"a": [write(0, 1), write(4, 5)], "b": [write(2, 3)]}, transitions=1)


def test_deadline_check_catches_a_write_after_the_renew_deadline() -> None:
    """The check of Lease partitions above must be able to fail, too."""

    def write(path: str, start: float, status: int = 200) -> Write:
        return Write(started=start, finished=start + 0.01, method="PATCH", path=path, status=status)

    lease = "/apis/coordination.k8s.io/v1/namespaces/default/leases/x"
    secret = "/api/v1/namespaces/a/secrets/y"
    writes = [write(lease, 10.0), write(lease, 10.5), write(lease, 11.0, status=0), write(secret, 13.4)]
    assert _writes_after_deadline(writes, cut=10.6, healed=20.0) == ([], 13.5)
    late, deadline = _writes_after_deadline([*writes, write(secret, 13.6)], cut=10.6, healed=20.0)
    assert [w.started for w in late] == [13.6]
    assert deadline == 13.5
    # Writes before the cut or after the heal are not the deposed leader's.
    assert _writes_after_deadline([*writes, write(secret, 21.0)], cut=10.6, healed=20.0)[0] == []
