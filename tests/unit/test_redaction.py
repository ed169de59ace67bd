"""No fragment of a blueprint's data may survive into a logged or printed API error message.

An admission webhook that refuses a write may quote the object it refused; the writer redacts
such messages before they are cut short and logged.
"""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes_asyncio.client import ApiClient

from secrets_operator.controller import Controller, trim_blueprint
from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.model import BlueprintRef
from secrets_operator.settings import load

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    + "CANARYkeymaterial0123456789abcdef" * 12
    + "\n-----END PRIVATE KEY-----\n"
)


@pytest.fixture
async def controller(monkeypatch: pytest.MonkeyPatch) -> Controller:
    monkeypatch.setenv("SECRETS_OPERATOR_BLUEPRINTS", "certs/tls")
    async with ApiClient() as api_client:
        built = Controller(load(), Kube(api_client), identity="test")
    ref = BlueprintRef("certs", "tls")
    secret = {"metadata": {"name": "tls", "namespace": "certs"}, "type": "Opaque"}
    secret["data"] = {"tls.key": base64.b64encode(PEM.encode()).decode()}
    built.blueprint_informers[ref].store["certs/tls"] = trim_blueprint(ref, secret)
    return built


@pytest.mark.parametrize(
    "quoted",
    [
        pytest.param(base64.b64encode(PEM.encode()).decode(), id="base64"),
        pytest.param(PEM, id="decoded"),
        pytest.param(json.dumps(PEM)[1:-1], id="json-escaped"),
    ],
)
async def test_webhook_message_quoting_secret_data_is_redacted_before_it_is_cut(
    controller: Controller, quoted: str
) -> None:
    message = (
        f'admission webhook "deny.example.com" denied the request: data["tls.key"]="{quoted}" is not allowed'
    )
    error = ApiError(
        method="POST", path="/api/v1/namespaces/x/secrets", status=400, reason="BadRequest", message=message
    )
    shown = controller.describe_error(error)
    # No fragment of the value as quoted survives: "CANARY" alone would miss the base64 form,
    # which never contains it. Every 12-character piece of the quoted value is looked for.
    fragments = {quoted[i : i + 12] for i in range(len(quoted) - 11)}
    survivors = sorted(fragment for fragment in fragments if fragment in shown)
    assert not survivors, f"fragments of the Secret data survived: {survivors[:3]}"
    assert "[redacted]" in shown
    assert "deny.example.com" in shown  # the useful part of the message stays


async def test_plain_str_of_an_error_is_still_short(controller: Controller) -> None:
    error = ApiError(method="GET", path="/x", status=500, reason="InternalError", message="y" * 5000)
    assert len(str(error)) < 400
