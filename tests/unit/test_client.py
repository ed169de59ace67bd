"""The JSON client's connection set-up, checked without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secrets_operator.kube.client import ApiError, Kube


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
