"""The ``secrets-operator`` command: ``run``, ``check`` and ``sync --once``.

Exit codes: 0 success (for ``check``: everything in sync), 1 failure (for ``check``: something is
not in sync, or the cluster could not be read), 2 bad configuration — one line on stderr naming
the variable. Configuration comes from environment variables only; ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
from pydantic_core import PydanticUndefined

from secrets_operator import __version__, logs, metrics, web
from secrets_operator.controller import Controller, WrittenDifferentlyError, leadership_guard
from secrets_operator.kube import leases
from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.kube.leases import LeaderElector
from secrets_operator.model import CopyState
from secrets_operator.settings import ENV_PREFIX, ConfigError, Settings, load

log = logging.getLogger("secrets_operator")

#: An informer loop that has not even retried for this long is stuck (its watch inactivity
#: timeout is 70 s and its longest backoff 45 s).
INFORMER_STUCK_AFTER = 180.0
OK_STATES = (CopyState.IN_SYNC, CopyState.EXCLUDED)


def environment_help() -> str:
    lines = ["environment variables (prefix " + ENV_PREFIX + "):"]
    for name, field in Settings.model_fields.items():
        extra: dict[str, Any] = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "default_text" in extra:
            default = str(extra["default_text"])
        elif field.default is PydanticUndefined and field.default_factory is None:
            default = "required"
        elif isinstance(field.default, tuple):
            default = ",".join(field.default) or "(empty)"
        elif isinstance(field.default, bool):
            default = str(field.default).lower()
        else:
            default = str(field.default)
        lines.append(f"  {ENV_PREFIX}{name.upper()}  [{default}]")
        lines.append(f"      {field.description}")
    lines.append("  KUBECONFIG  [~/.kube/config]")
    lines.append("      Used when not running in a Pod (in-cluster configuration wins).")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    epilog = environment_help()
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="secrets-operator",
        description="Replicates blueprint Secrets and ConfigMaps into selected namespaces and keeps every "
        "copy in sync.",
        epilog=epilog,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the operator (leader election, watches, HTTP endpoints)",
        description="Run the operator until SIGTERM/SIGINT; releases the Lease on the way out.",
        epilog=epilog,
        formatter_class=formatter,
    )
    check = commands.add_parser(
        "check",
        help="read-only report of every blueprint x namespace pair; exit 1 unless all in sync",
        description="Read-only: one row per blueprint x namespace with its state "
        "(in_sync, missing, drifted, conflict, excluded, stale, blueprint_missing, refused, orphaned). "
        "Exit 0 when everything targeted is in sync, 1 otherwise, 2 on bad configuration.",
        epilog=epilog,
        formatter_class=formatter,
    )
    check.add_argument("--output", choices=["table", "json"], default="table", help="output format")
    check.add_argument("--problems-only", action="store_true", help="omit in_sync and excluded rows")
    sync = commands.add_parser(
        "sync",
        help="one reconcile pass without leader election",
        description="One reconcile pass from a fresh LIST, without leader election; prints each write. "
        "Do not run it while replicas of `run` are active unless --dry-run is given.",
        epilog=epilog,
        formatter_class=formatter,
    )
    sync.add_argument(
        "--once", action="store_true", required=True, help="required: make a single pass and exit"
    )
    sync.add_argument("--dry-run", action="store_true", help="print the writes that would be made; make none")
    return parser


# --------------------------------------------------------------------------------- run


async def _serve_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            log.info("stopping", extra={"signal": signal.Signals(received).name})
            scope.cancel()
            return


def assemble(
    settings: Settings, kube: Kube, *, identity: str, lease_kube: Kube | None
) -> tuple[Controller, LeaderElector | None]:
    """The controller ``run`` starts and, given a client for the Lease, the elector its writer obeys.

    Every write the controller makes first asks the elector's ``write_budget`` whether this
    replica still leads (``writing.leadership_guard``): that is what stops a replica that lost the
    Lease from writing. ``run`` and its unit test both build the two here, so the test proves the
    wiring ``run`` uses, not a copy of it.
    """
    controller = Controller(settings, kube, identity=identity)
    if lease_kube is None:
        return controller, None
    elector = LeaderElector(
        lease_kube,
        namespace=settings.resolved_lease_namespace(),
        name=settings.lease_name,
        identity=identity,
        lease_duration=settings.lease_duration_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry_period=settings.retry_period_seconds,
    )
    controller.write_guard = leadership_guard(elector.write_budget)
    return controller, elector


async def run(settings: Settings) -> int:
    identity = settings.resolved_identity()
    # Every informer holds one connection for its watch; writes need their own. Leader election
    # has a client of its own (leases.CLIENT_*): renewals never queue behind a fan-out.
    watches = 1 + len(settings.blueprints) + sum(len(spec.names) for spec in settings.blueprints)
    kube = await Kube.connect(
        qps=settings.api_qps,
        burst=settings.api_burst,
        max_connections=watches + settings.max_concurrent_writes + 8,
    )
    lease_kube: Kube | None = None
    if settings.leader_election:
        lease_kube = await Kube.connect(
            qps=leases.CLIENT_QPS,
            burst=leases.CLIENT_BURST,
            max_connections=leases.CLIENT_CONNECTIONS,
            user_agent=leases.CLIENT_USER_AGENT,
        )
    controller, elector = assemble(settings, kube, identity=identity, lease_kube=lease_kube)
    elector_stuck_after = max(30.0, 10 * settings.retry_period_seconds)

    def ready() -> tuple[bool, str]:
        if controller.synced():
            return True, "ok"
        waiting = [informer.name for informer in controller.informers if not informer.synced.is_set()]
        return False, "caches not synced: " + ", ".join(waiting)

    def healthy() -> tuple[bool, str]:
        stuck = controller.stuck(threshold=INFORMER_STUCK_AFTER)
        if elector is not None and time.monotonic() - elector.heartbeat > elector_stuck_after:
            stuck.append("leader election")
        return (not stuck, "stuck: " + ", ".join(stuck) if stuck else "ok")

    runner, port = await web.start(web.make_app(ready=ready, healthy=healthy), port=settings.http_port)
    log.info(
        "starting",
        extra={
            "version": __version__,
            "identity": identity,
            "blueprints": [
                spec.ref.describe() + (f" as {spec.target}" if spec.target != spec.ref.name else "")
                for spec in settings.blueprints
            ],
            "http_port": port,
            "leader_election": settings.leader_election,
        },
    )
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_serve_signals, tasks.cancel_scope)
            tasks.start_soon(controller.run_informers)
            await controller.wait_synced()
            for ref, blueprint in controller.blueprints().items():
                if blueprint is None:
                    log.warning(
                        "blueprint does not exist yet; waiting for it",
                        extra={"blueprint": str(ref), "kind": str(ref.kind)},
                    )
            log.info("caches synced; ready", extra={"namespaces": len(controller.namespaces.store)})
            _freeze_long_lived()
            if elector is not None:
                tasks.start_soon(elector.run, controller.lead)
            else:
                metrics.LEADER.set(1)
                tasks.start_soon(controller.lead)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
            await kube.close()
            if lease_kube is not None:
                await lease_kube.close()
    log.info("stopped")
    return 0


def _freeze_long_lived() -> None:
    """Exclude what exists now (imported modules, synced caches) from the cyclic GC's scans.

    A full collection walks every tracked object: with kubernetes_asyncio's ~80,000 import-time
    objects that is a 20-50 ms pause, which showed up as the p99 of propagation latency. Nothing
    frozen is leaked: the caches hold no reference cycles, so reference counting still frees
    an entry the moment it is dropped.
    """
    gc.collect()
    gc.freeze()


# ------------------------------------------------------------------------ check and sync


async def _snapshot(settings: Settings) -> tuple[Controller, Kube]:
    kube = await Kube.connect(qps=settings.api_qps, burst=settings.api_burst)
    controller = Controller(settings, kube, identity=settings.resolved_identity())
    try:
        await controller.list_once()
    except BaseException:
        await kube.close()
        raise
    return controller, kube


async def check(settings: Settings, *, output: str, problems_only: bool) -> int:
    controller, kube = await _snapshot(settings)
    await kube.close()
    rows = [row for plan in controller.plan_all() for row in plan.rows]
    shown = [row for row in rows if not problems_only or row.state not in OK_STATES]
    if output == "json":
        print(
            json.dumps(
                [
                    {
                        "blueprint": str(r.blueprint),
                        "kind": str(r.blueprint.kind),
                        "name": r.name,
                        "namespace": r.namespace,
                        "state": str(r.state),
                        **({"rule": r.rule} if r.rule else {}),
                        "detail": r.detail,
                    }
                    for r in shown
                ],
                indent=2,
            )
        )
    else:
        table = [("BLUEPRINT", "KIND", "NAME", "NAMESPACE", "STATE", "DETAIL")]
        table += [
            (str(r.blueprint), str(r.blueprint.kind), r.name, r.namespace, str(r.state), r.detail)
            for r in shown
        ]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for cells in table:
            print(
                "  ".join(cell.ljust(width) for cell, width in zip(cells[:5], widths, strict=True)), cells[5]
            )
    bad = [row for row in rows if row.state not in OK_STATES]
    summary: dict[str, int] = {}
    for row in rows:
        summary[str(row.state)] = summary.get(str(row.state), 0) + 1
    print(
        ", ".join(f"{count} {state}" for state, count in sorted(summary.items())) or "no namespaces",
        file=sys.stderr,
    )
    return 1 if bad else 0


async def sync_once(settings: Settings, *, dry_run: bool) -> int:
    controller, kube = await _snapshot(settings)
    failed = 0
    try:
        plans = controller.plan_all()
        actions = [action for plan in plans for action in plan.actions]
        for action in actions:
            if dry_run:
                print(f"would {action.describe()}")
                continue
            try:
                await controller.apply(action)
            except ApiError as exc:
                failed += 1
                print(f"FAILED {action.describe()}: {controller.describe_error(exc)}")
            except WrittenDifferentlyError:
                failed += 1
                print(
                    f"FAILED {action.describe()}: the API server stored different data (a mutating webhook?)"
                )
            else:
                print(f"done {action.describe()}")
        verb = "planned" if dry_run else "applied"
        print(f"{len(actions) - failed} writes {verb}, {failed} failed", file=sys.stderr)
    finally:
        await kube.close()
    return 1 if failed else 0


# --------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load()
    except ConfigError as exc:
        print(f"secrets-operator: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    _freeze_long_lived()
    try:
        if args.command == "run":
            return anyio.run(run, settings)
        if args.command == "check":
            return anyio.run(lambda: check(settings, output=args.output, problems_only=args.problems_only))
        return anyio.run(lambda: sync_once(settings, dry_run=args.dry_run))
    except ApiError as exc:
        print(f"secrets-operator: cannot read the cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
