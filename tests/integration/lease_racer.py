"""A candidate for the Lease in a process of its own, for the race test in test_leadership.py.

Two of these read the same Lease of a holder that has stopped renewing, then try to take it once
its claim has lapsed, as two replicas of the operator do after a leader dies: on a line ``read``
from stdin it reads the Lease (and answers ``ready``), on ``go`` it makes one acquisition attempt
with what it read and answers ``acquired`` or ``failed``. Both hold the same resourceVersion, so
the API server's optimistic concurrency alone must decide, whatever the order in which the two
writes arrive.

Usage: ``python -m tests.integration.lease_racer KUBECONFIG NAMESPACE LEASE IDENTITY``
"""

from __future__ import annotations

import sys

import anyio

from secrets_operator.kube.client import Kube
from secrets_operator.kube.leases import LeaderElector


async def main(kubeconfig: str, namespace: str, lease: str, identity: str) -> None:
    kube = await Kube.connect(kubeconfig=kubeconfig)
    try:
        for line in sys.stdin:
            elector = LeaderElector(
                kube,
                namespace=namespace,
                name=lease,
                identity=identity,
                lease_duration=15,
                renew_deadline=10,
                retry_period=2,
            )
            if line.strip() == "read":
                elector.observation.observe(await elector._get())
                print("ready", flush=True)
                line = sys.stdin.readline()
            if line.strip() == "go":
                # As the elector's own campaign does: wait until the holder's claim has lapsed
                # on this replica's clock, counted from when it read the Lease.
                await anyio.sleep(elector.observation.expires_in())
                attempt, _ = await elector._attempt()
                print(attempt, flush=True)
    finally:
        await kube.close()


if __name__ == "__main__":
    kubeconfig, namespace, lease, identity = sys.argv[1:5]
    anyio.run(main, kubeconfig, namespace, lease, identity)
