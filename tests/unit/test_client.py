"""The JSON client's connection set-up, checked without a cluster."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from secrets_operator.kube.client import ApiError, Kube, _retry_after
from tools.cluster import PKI


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A local HTTP server answering every request with ``handler``; yields its address."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_requests_do_not_consult_the_environment_each_time(tmp_path: Path) -> None:
    async with await Kube.connect(kubeconfig=str(_kubeconfig(tmp_path, "https://127.0.0.1:6443"))) as kube:
        assert kube.api_client.rest_client.pool_manager.trust_env is False


async def test_https_proxy_from_the_environment_is_still_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with await Kube.connect(kubeconfig=str(_kubeconfig(tmp_path, "https://api.example:6443"))) as kube:
        assert kube.api_client.rest_client.proxy == "http://proxy.example:3128"


async def test_no_proxy_exempts_the_api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.example")
    async with await Kube.connect(kubeconfig=str(_kubeconfig(tmp_path, "https://api.example:6443"))) as kube:
        assert not kube.api_client.rest_client.proxy


async def test_missing_kubeconfig_is_an_api_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ApiError) as failed:
        await Kube.connect(kubeconfig=str(tmp_path / "absent"))
    assert failed.value.status == 0


async def test_a_write_whose_budget_ends_mid_request_is_abandoned_by_then(tmp_path: Path) -> None:
    """The leader's guard bounds a write by its renew deadline: the request must give up when the
    budget ends, not at the client's usual timeout (docs/architecture.md, leader election)."""
    arrived, release = anyio.Event(), anyio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()  # a server that answers after the lease is long gone
        return web.json_response({})

    async with serving(slow) as server:
        try:
            async with await Kube.connect(kubeconfig=str(_kubeconfig(tmp_path, server))) as kube:
                started = time.monotonic()
                with anyio.fail_after(5), pytest.raises(ApiError) as abandoned:
                    await kube.request(
                        "PATCH", "/api/v1/namespaces/n/secrets/s", body={}, timeout=30, guard=lambda: 0.5
                    )
                elapsed = time.monotonic() - started
        finally:
            release.set()
    assert arrived.is_set()  # it was sent, and then abandoned mid-request
    assert abandoned.value.status == 0
    assert elapsed < 2.0, elapsed


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), ("inf", 300.0), ("1e400", 300.0), ("86400", 300.0), ("nan", 1.0), ("x", 1.0)],
)
def test_retry_after_is_honoured_within_bounds(header: str, seconds: float) -> None:
    assert _retry_after({"Retry-After": header}) == seconds


async def test_no_client_side_limit_by_default_and_a_cap_when_asked() -> None:
    """API_QPS 0 (the default) sends at once; a cap of 20/s with burst 5 spaces the rest out."""
    from secrets_operator.kube.client import RateLimiter

    unlimited = RateLimiter(0, 1)
    started = time.monotonic()
    for _ in range(1000):
        await unlimited.acquire()
    assert time.monotonic() - started < 0.5
    capped = RateLimiter(20, 5)
    started = time.monotonic()
    for _ in range(15):
        await capped.acquire()
    assert time.monotonic() - started >= 0.45  # 10 requests past the burst at 20/s


async def test_timed_is_the_server_s_answer_only_and_only_for_a_success(tmp_path: Path) -> None:
    """What the new-namespace pacing learns from: the time from sending to the answer, without
    the client-side limiter's wait, and nothing for a request that failed."""

    async def answer(request: web.Request) -> web.Response:
        await anyio.sleep(0.05)
        if request.method == "DELETE":
            return web.json_response({"kind": "Status", "code": 500}, status=500)
        return web.json_response({})

    timings: list[float] = []
    async with (
        serving(answer) as server,
        await Kube.connect(kubeconfig=str(_kubeconfig(tmp_path, server)), qps=1, burst=1) as kube,
    ):
        began = time.monotonic()
        for _ in range(3):  # the limiter holds the 2nd and 3rd for 1 s each
            await kube.request("POST", "/api/v1/namespaces/n/secrets", body={}, timed=timings.append)
        waited = time.monotonic() - began
        with pytest.raises(ApiError):
            await kube.request("DELETE", "/api/v1/namespaces/n/secrets/s", timed=timings.append)
    assert waited > 2.0, waited
    assert len(timings) == 3
    assert all(0.05 <= seconds < 0.9 for seconds in timings), timings  # never the limiter's 1 s


async def test_a_serving_certificate_without_authority_key_identifier_is_verified_as_kubectl_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.13's default context adds RFC 5280's strict checks, which refuse a serving
    certificate that lacks an Authority Key Identifier (the test PKI's do, as do some clusters').
    Go's x509 accepts it, so kubectl works there: the operator must too, on every Python."""
    pki = PKI(tmp_path / "pki")  # signs the serving certificate without an AKI
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.serving_cert, pki.serving_key)
    create = ssl.create_default_context

    def strict_as_on_python_3_13(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = create(*args, **kwargs)  # type: ignore[arg-type]
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        return context

    monkeypatch.setattr(ssl, "create_default_context", strict_as_on_python_3_13)

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "37"})

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    try:
        path = _kubeconfig(tmp_path, f"https://127.0.0.1:{runner.addresses[0][1]}")
        document = json.loads(path.read_text())
        cluster = document["clusters"][0]["cluster"]
        del cluster["insecure-skip-tls-verify"]
        cluster["certificate-authority-data"] = base64.b64encode(pki.ca_cert.read_bytes()).decode()
        path.write_text(json.dumps(document))
        async with await Kube.connect(kubeconfig=str(path)) as kube:
            assert await kube.request("GET", "/version") == {"major": "1", "minor": "37"}
    finally:
        await runner.cleanup()
