"""The HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics``.

- ``/readyz`` answers 200 once every cache has synced, whether this replica leads or not: a
  standby with warm caches is ready to take over.
- ``/healthz`` answers 500 when a loop is stuck — an informer or the elector that has made no
  progress, not even a retry, for longer than it ever should. An unreachable API server does
  *not* fail liveness (restarting would not help); it shows in metrics and logs instead.
- ``/metrics`` is the Prometheus text format of ``metrics.REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from secrets_operator.metrics import REGISTRY

Probe = Callable[[], tuple[bool, str]]


def make_app(*, ready: Probe, healthy: Probe) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        ok, detail = healthy()
        return web.Response(status=200 if ok else 500, text=detail + "\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, detail = ready()
        return web.Response(status=200 if ok else 503, text=detail + "\n")

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start(app: web.Application, *, port: int, host: str = "0.0.0.0") -> tuple[web.AppRunner, int]:  # noqa: S104
    """Serve ``app``; returns the runner (to clean up) and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound sockets only here
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound
