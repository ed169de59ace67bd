"""A reverse proxy between one operator replica and the API server that tests can make misbehave.

The operator talks plain HTTP to the proxy (on loopback); the proxy talks TLS to the real
kube-apiserver with the admin credentials. Tests flip its switches to produce exactly the
failures the operator must survive:

- ``cut_watches(path)``: close every open watch stream (whose path contains ``path``) now;
- ``gone_next_watches``: answer the next N watch requests (whose path contains ``gone_path``)
  with an ERROR event carrying 410 Gone (what kube-apiserver does when the requested
  resourceVersion is too old);
- ``hold_watches``: keep new watch requests (whose path contains ``hold_path``) waiting until
  released;
- ``fail_ratio`` / ``throttle_ratio``: answer that share of non-watch requests with 500/503, or
  429 with ``Retry-After``;
- ``latency``: delay every request;
- ``blackhole``: accept requests and never answer (a network partition of this replica); with
  ``blackhole_path`` set, only requests whose path contains it (``/leases``: the replica loses
  the Lease but keeps reaching its Secrets);
- ``mutate_secrets``: add a ``nonce`` data key, different every time, to every Secret that is
  created or patched (with ``mutate_path`` in its path): what a mutating admission webhook that
  stamps a timestamp does, as seen by the operator (the API server stores other data than
  written, and the watch reports a change after every write);
- ``hold_writes``: keep writes (POST/PUT/PATCH/DELETE, whose path contains ``hold_writes_path``)
  waiting until ``release_writes()``; ``held_writes`` counts those that were held.

Every request is logged in ``seen`` (method, path and query string, in arrival order), so tests
can check how the operator asks (e.g. which resourceVersion its LISTs carry). Every write that
reaches the API server is logged with its time and outcome, so tests can
check who wrote when. Every fault served is counted in ``injected`` (and cut watch streams in
``watches_cut``), so a test can assert that a fault actually hit what it meant to hit.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import ssl
import time
from typing import Any

import aiohttp
import anyio
from aiohttp import web

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "host",
}


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclasses.dataclass(frozen=True)
class Injected:
    """One request the proxy answered with a fault (or delayed) instead of passing it on as is."""

    fault: str  # "410", "429", "5xx" or "latency"
    method: str
    path: str

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


@dataclasses.dataclass(frozen=True)
class Write:
    """One write that went through the proxy."""

    started: float  # monotonic
    finished: float
    method: str
    path: str
    status: int


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class FaultProxy:
    """See the module docstring. ``async with FaultProxy(...) as proxy:`` serves on ``proxy.url``."""

    def __init__(
        self, upstream: str, ssl_context: ssl.SSLContext, *, authorization: str = "", name: str = "proxy"
    ) -> None:
        self.upstream, self.ssl_context, self.name = upstream.rstrip("/"), ssl_context, name
        self.authorization = authorization
        self.port = 0  # bound on entry
        self.gone_next_watches = 0
        self.gone_path = ""
        self.gone_served = 0
        self.fail_ratio = 0.0
        self.throttle_ratio = 0.0
        self.latency = 0.0
        self.blackhole = False
        self.blackhole_path = ""
        self.hold_watches = False
        self.hold_path = ""
        self.hold_writes = False
        self.hold_writes_path = ""
        self.mutate_secrets = False
        self.mutate_path = ""
        self.mutated = 0
        self.held_writes = 0
        self.writes: list[Write] = []
        self.injected: list[Injected] = []
        self.requests = 0
        self.seen: list[tuple[str, str]] = []  # (method, path with query string) of every request
        self.watches_served = 0
        self.watches_cut = 0
        self._watch_responses: dict[web.StreamResponse, str] = {}  # open stream -> request path
        self._released = anyio.Event()
        self._writes_released = anyio.Event()
        self._healed = anyio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self) -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": self.url}}],
            "users": [{"name": self.name, "user": {}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name}}],
            "current-context": self.name,
        }
        return json.dumps(config)

    def heal(self) -> None:
        """Turn every fault off."""
        self.gone_next_watches = 0
        self.fail_ratio = self.throttle_ratio = self.latency = 0.0
        self.blackhole = False
        self.blackhole_path = ""
        self._healed.set()
        self._healed = anyio.Event()
        self.release_watches()
        self.release_writes()

    def injected_count(self, fault: str, *, writes_only: bool = False, path: str = "") -> int:
        """How many requests (writes only, if asked; whose path contains ``path``) got ``fault``."""
        return sum(
            hit.fault == fault and (hit.is_write or not writes_only) and path in hit.path
            for hit in self.injected
        )

    def release_watches(self) -> None:
        self.hold_watches = False
        self._released.set()
        self._released = anyio.Event()

    def release_writes(self) -> None:
        self.hold_writes = False
        self._writes_released.set()
        self._writes_released = anyio.Event()

    def open_watches(self, path: str = "") -> int:
        """How many watch streams whose path contains ``path`` are open now."""
        return sum(path in request_path for request_path in self._watch_responses.values())

    def cut_watches(self, path: str = "") -> int:
        """Close every open watch stream whose path contains ``path``; returns how many were cut."""
        cut = 0
        for response, request_path in list(self._watch_responses.items()):
            if path not in request_path:
                continue
            # Forget it now: its handler only notices once upstream sends the next chunk.
            del self._watch_responses[response]
            transport = response._req.transport if response._req is not None else None
            if transport is not None:
                transport.close()
                cut += 1
        self.watches_cut += cut
        return cut

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.heal()
        self.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.seen.append((request.method, request.path_qs))
        is_watch = request.query.get("watch") in ("true", "1")
        if self.blackhole and self.blackhole_path in request.path:
            # Never answer; once healed, drop the connection the way a partition's connections
            # eventually die, so the client has to reconnect.
            await self._healed.wait()
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("partition healed")
        if self.latency:
            self.injected.append(Injected("latency", request.method, request.path))
            await anyio.sleep(self.latency)
        if is_watch:
            return await self._watch(request)
        if request.method in WRITE_METHODS:
            held = False
            while self.hold_writes and self.hold_writes_path in request.path:
                if not held:
                    held = True
                    self.held_writes += 1
                await self._writes_released.wait()
        roll = random.random()
        if roll < self.throttle_ratio:
            self.injected.append(Injected("429", request.method, request.path))
            return web.json_response(
                _status(429, "TooManyRequests", "injected throttle"), status=429, headers={"Retry-After": "1"}
            )
        if roll < self.throttle_ratio + self.fail_ratio:
            code = random.choice((500, 503))
            self.injected.append(Injected("5xx", request.method, request.path))
            return web.json_response(_status(code, "InternalError", "injected failure"), status=code)
        started = time.monotonic()
        body = await request.read()
        if self.mutate_secrets and request.method in ("POST", "PATCH", "PUT") and body:
            body = self._mutate(request.path, body)
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=self._forward_headers(request),
            data=body or None,
        ) as upstream:
            payload = await upstream.read()
            if request.method in WRITE_METHODS:
                self.writes.append(
                    Write(started, time.monotonic(), request.method, request.path, upstream.status)
                )
            return web.Response(body=payload, status=upstream.status, headers=self._back_headers(upstream))

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        while self.hold_watches and self.hold_path in request.path:
            await self._released.wait()
        if self.gone_next_watches > 0 and self.gone_path in request.path:
            self.gone_next_watches -= 1
            self.gone_served += 1
            self.injected.append(Injected("410", request.method, request.path))
            event = {
                "type": "ERROR",
                "object": _status(410, "Expired", "too old resource version (injected)"),
            }
            return web.Response(body=json.dumps(event).encode() + b"\n", content_type="application/json")
        assert self._session is not None
        self.watches_served += 1
        async with self._session.get(
            self.upstream + request.path_qs, headers=self._forward_headers(request)
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, headers=self._back_headers(upstream))
            await response.prepare(request)
            self._watch_responses[response] = request.path
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (ConnectionResetError, aiohttp.ClientError):
                pass
            finally:
                self._watch_responses.pop(response, None)
            return response

    def _mutate(self, path: str, body: bytes) -> bytes:
        if "/secrets" not in path or self.mutate_path not in path:
            return body
        secret = json.loads(body)
        if not isinstance(secret.get("data"), dict):
            return body  # a patch of metadata only: the stored data stays as it is
        self.mutated += 1
        secret["data"]["nonce"] = base64.b64encode(str(time.time_ns()).encode()).decode()
        return json.dumps(secret).encode()

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP | {"authorization"}
        }
        if self.authorization:
            headers["Authorization"] = self.authorization
        return headers

    @staticmethod
    def _back_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
        return {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
