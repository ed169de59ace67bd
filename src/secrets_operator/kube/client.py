"""A lean JSON client over kubernetes_asyncio's ApiClient: rate limit, timeouts, clean errors.

kubernetes_asyncio supplies connection configuration (in-cluster service account or kubeconfig,
token refresh, TLS). Requests go through its ``call_api`` with ``_preload_content=False`` so that
responses are plain JSON dicts: deserialising into generated model objects costs memory and CPU
the caches do not need, and the generated code has no read timeout on watches.

What it adds:
- an optional token-bucket rate limit (``API_QPS``/``API_BURST``, off by default) on every
  request (one token per watch opened);
- a timeout on every request, and an inactivity timeout on watch streams;
- :class:`ApiError` carrying status, reason and the server's message — never a request or
  response body, which for Secrets would contain data. (kubernetes_asyncio's own ``rest`` logger
  prints response bodies at DEBUG; ``logs.py`` pins it to WARNING.)

It knows nothing of blueprints: it is generic plumbing.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration

from secrets_operator import metrics

JSON = dict[str, Any]
Query = Sequence[tuple[str, str]]


class ApiError(Exception):
    """The API server refused a request, or it could not be reached (``status`` 0).

    ``message`` is the server's whole message; ``str()`` cuts it to ``MESSAGE_LIMIT``. Code that
    may see a message quoting Secret data (an admission webhook refusing a write) redacts
    ``describe()`` first and cuts afterwards, so no fragment of a value survives the cut.
    """

    MESSAGE_LIMIT = 300

    def __init__(
        self, *, method: str, path: str, status: int, reason: str, message: str = "", retry_after: float = 0
    ):
        self.method, self.path, self.status = method, path, status
        self.reason, self.message, self.retry_after = reason, message, retry_after
        super().__init__(self.describe(limit=self.MESSAGE_LIMIT))

    def describe(self, *, limit: int | None = None) -> str:
        message = self.message if limit is None else self.message[:limit]
        return f"{self.method} {self.path}: {self.status} {self.reason}" + (f": {message}" if message else "")

    @property
    def is_gone(self) -> bool:
        return self.status == 410 or self.reason == "Expired"


class ContinueExpiredError(ApiError):
    """A paginated LIST's ``continue`` token expired (410) after its first page.

    The server no longer holds the snapshot the pages were cut from: the pages already received
    are no consistent list any more, and the caller must list again from the start.
    """


def resource_version_unavailable(exc: ApiError) -> bool:
    """Whether a LIST failed because of the resourceVersion it asked for, not the server's health.

    410 Expired: older than the server (or etcd) still holds. 504 "Too large resource version":
    newer than the server's watch cache, which did not catch up within its wait. client-go's
    reflector answers both by listing again with no resourceVersion (a consistent read).
    """
    return exc.is_gone or (exc.status == 504 and "too large resource version" in exc.message.lower())


class RateLimiter:
    """Token bucket: ``burst`` requests at once, refilled at ``qps`` per second; no limit at all
    when ``qps`` is 0 (the API server's Priority and Fairness then decides, with 429s)."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.burst = qps, burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.qps)
            self._updated = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.qps
                await anyio.sleep(wait)
                self._tokens = 1.0
                self._updated = time.monotonic()
            self._tokens -= 1


#: The longest Retry-After honoured: a proxy that asks for a day (or `inf`) gets this instead.
MAX_RETRY_AFTER = 300.0


def _retry_after(headers: Mapping[str, str]) -> float:
    """Seconds to wait as the server asked, within [0, MAX_RETRY_AFTER]; 1 s if unreadable."""
    try:
        asked = float(headers.get("Retry-After", "0"))
    except ValueError:
        return 1.0
    if math.isnan(asked):
        return 1.0
    return min(max(0.0, asked), MAX_RETRY_AFTER)


def _status_message(body: bytes) -> tuple[str, str]:
    """(reason, message) from a Status object; messages are cut short, bodies never echoed."""
    try:
        status = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(status, dict) or status.get("kind") != "Status":
        return "", ""
    return str(status.get("reason", "")), str(status.get("message", ""))[:65536]


def _resolve_proxy_once(api_client: ApiClient) -> None:
    """Honour HTTPS_PROXY/NO_PROXY once, at start, instead of on every request.

    kubernetes_asyncio opens its aiohttp session with ``trust_env=True``, which makes aiohttp read
    the proxy variables and ``~/.netrc`` (in a thread) for every single request: a measurable
    share of the CPU of a fan-out. A proxy from the kubeconfig (``proxy-url``) still wins.
    """
    rest = api_client.rest_client
    host = urllib.parse.urlsplit(str(api_client.configuration.host))
    hostname = host.hostname or ""
    if not rest.proxy and hostname and not urllib.request.proxy_bypass(hostname):
        rest.proxy = urllib.request.getproxies().get(host.scheme, "")
    rest.pool_manager._trust_env = False  # aiohttp's only switch for it; a unit test checks it holds


class Kube:
    """One connection to the API server (its pool and token bucket), shared by every informer and
    the writer; the elector is given one of its own (``CLIENT_*``), so renewals never queue
    behind writes."""

    def __init__(
        self, api_client: ApiClient, *, qps: float = 0, burst: int = 100, timeout: float = 30
    ) -> None:
        self.api_client = api_client
        self.limiter = RateLimiter(qps, burst)
        self.timeout = timeout

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        qps: float = 0,
        burst: int = 100,
        max_connections: int = 64,
        user_agent: str = "secrets-operator",
    ) -> Kube:
        """In-cluster configuration in a Pod, else ``kubeconfig`` / KUBECONFIG / ~/.kube/config.

        Each Kube has its own token bucket and connection pool: a part that must never wait
        behind the others' traffic (leader election) connects on its own.
        """
        configuration = Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await kube_config.load_kube_config(
                    config_file=kubeconfig, client_configuration=configuration, persist_config=False
                )
        except (kube_config.ConfigException, OSError) as exc:
            raise ApiError(
                method="CONNECT", path="", status=0, reason="NoConfiguration", message=str(exc)[:300]
            ) from None
        configuration.connection_pool_maxsize = max_connections
        # Verify the API server as client-go (and so kubectl) does: chain and host name. Python
        # 3.13 added RFC 5280's strict checks to its default context, which refuse a serving
        # certificate without an Authority Key Identifier; Go accepts those, and clusters whose
        # PKI was not made by Go's x509 (the tests' own, for one) have them.
        configuration.disable_strict_ssl_verification = True
        api_client = ApiClient(configuration=configuration)
        api_client.user_agent = user_agent
        _resolve_proxy_once(api_client)
        return cls(api_client, qps=qps, burst=burst)

    async def close(self) -> None:
        await self.api_client.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        metrics.API_REQUESTS.labels(verb=method).inc()
        try:
            response: aiohttp.ClientResponse = await self.api_client.call_api(
                path,
                method,
                query_params=list(query),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.API_ERRORS.labels(code="0").inc()
            raise ApiError(
                method=method, path=path, status=0, reason=type(exc).__name__, message=str(exc)
            ) from None
        if response.status >= 400:
            try:
                payload = await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError):
                payload = b""
            finally:
                response.release()
            reason, message = _status_message(payload)
            metrics.API_ERRORS.labels(code=str(response.status)).inc()
            raise ApiError(
                method=method,
                path=path,
                status=response.status,
                reason=reason or (response.reason or ""),
                message=message,
                retry_after=_retry_after(response.headers),
            )
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        guard: Callable[[], float | None] | None = None,
        timed: Callable[[float], None] | None = None,
    ) -> JSON:
        """One rate-limited request; returns the decoded JSON body or raises ApiError.

        ``guard``, if given, is called after the rate limiter lets the request go and just before
        it is sent: it may raise to stop the request, or return a tighter timeout in seconds.
        ``timed``, if given, is called with the seconds from sending to the whole answer, once the
        request has succeeded (the rate limiter's wait not included).
        """
        await self.limiter.acquire()
        limit = timeout if timeout is not None else self.timeout
        if guard is not None:
            bound = guard()
            if bound is not None:
                limit = min(limit, max(bound, 0.001))  # aiohttp reads 0 as "no timeout"
        client_timeout = aiohttp.ClientTimeout(total=limit)
        started = time.monotonic()
        response = await self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=client_timeout
        )
        try:
            payload = await response.read()
            answered = time.monotonic()
            metrics.API_DURATION.labels(verb=method).observe(answered - started)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.API_ERRORS.labels(code="0").inc()
            raise ApiError(
                method=method, path=path, status=0, reason=type(exc).__name__, message=str(exc)
            ) from None
        finally:
            response.release()
        try:
            result: JSON = json.loads(payload) if payload else {}
        except ValueError:
            raise ApiError(
                method=method, path=path, status=0, reason="BadResponse", message="undecodable body"
            ) from None
        if timed is not None:
            timed(answered - started)
        return result

    async def list_page(self, path: str, *, query: Query = (), page_size: int = 500, token: str = "") -> JSON:
        """One page of a paginated LIST (``limit`` + ``continue``); everything if ``page_size`` is 0.

        The page's ``metadata.continue`` is the ``token`` of the next one (empty: the last). A
        continuation answered with 410 raises :class:`ContinueExpiredError`. One page per call, so
        that a caller can let go of each page before it asks for the next.
        """
        page_query = [*query, ("limit", str(page_size))] if page_size > 0 else [*query]
        if token:
            page_query.append(("continue", token))
        try:
            return await self.request("GET", path, query=page_query)
        except ApiError as exc:
            if not (token and exc.is_gone):
                raise
            raise ContinueExpiredError(
                method=exc.method,
                path=exc.path,
                status=exc.status,
                reason=exc.reason,
                message=exc.message,
            ) from None

    async def watch(
        self,
        path: str,
        *,
        query: Query,
        resource_version: str,
        timeout_seconds: int,
        inactivity_timeout: float,
    ) -> AsyncIterator[JSON]:
        """Watch events (decoded JSON, bookmarks included) until the server ends the stream.

        Raises ApiError when the stream cannot be opened, breaks, or stays silent for longer
        than ``inactivity_timeout`` (a half-open connection would otherwise hang forever).
        """
        await self.limiter.acquire()  # one token per watch opened, like any other request
        watch_query = [
            *query,
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        # `connect` also bounds the wait for a free pooled connection.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeout, sock_connect=self.timeout, sock_read=inactivity_timeout
        )
        response = await self._send("GET", path, query=watch_query, timeout=timeout)
        pending: list[bytes] = []  # pieces of a line not yet complete (one event can span chunks)
        delivered = 0
        try:
            async for chunk in response.content.iter_any():
                *complete, rest = chunk.split(b"\n")
                for piece in complete:
                    line = b"".join((*pending, piece))
                    pending.clear()
                    if line.strip():
                        yield json.loads(line)
                        delivered += 1
                        if delivered % 64 == 0:
                            await anyio.lowlevel.checkpoint()  # a burst of events must not starve the loop
                if rest:
                    pending.append(rest)
            tail = b"".join(pending)
            if tail.strip():
                yield json.loads(tail)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = (
                "InactivityTimeout"
                if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError)
                else "StreamBroken"
            )
            raise ApiError(
                method="WATCH", path=path, status=0, reason=reason, message=type(exc).__name__
            ) from None
        except ValueError:
            raise ApiError(
                method="WATCH", path=path, status=0, reason="BadStream", message="undecodable event"
            ) from None
        finally:
            response.release()
