"""No fragment of a blueprint's data may survive into a logged or printed API error message.

An admission webhook that refuses a write may quote the object it refused, whole or in part, or
the copy's old data; the writer redacts such messages before they are logged.
"""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from _pytest.mark import ParameterSet
from kubernetes_asyncio.client import ApiClient

from secrets_operator.controller import Controller
from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.model import BlueprintRef, Kind
from secrets_operator.redaction import FRAGMENT, Redactor, forms, go_json, go_quote
from secrets_operator.settings import load
from secrets_operator.trimming import trim_blueprint

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    + "CANARYkeymaterial0123456789abcdef" * 12
    + "\n-----END PRIVATE KEY-----\n"
)
B64 = base64.b64encode(PEM.encode()).decode()
WEBHOOK = 'admission webhook "deny.example.com" denied the request: '


def _survivors(shown: str, quoted: str) -> list[str]:
    """Every piece of FRAGMENT characters of ``quoted`` still in ``shown``."""
    fragments = {quoted[i : i + FRAGMENT] for i in range(len(quoted) - FRAGMENT + 1)}
    return sorted(fragment for fragment in fragments if fragment in shown)


def _error(message: str) -> ApiError:
    return ApiError(
        method="POST", path="/api/v1/namespaces/x/secrets", status=400, reason="BadRequest", message=message
    )


@pytest.fixture
async def controller(monkeypatch: pytest.MonkeyPatch) -> Controller:
    monkeypatch.setenv("SECRETS_OPERATOR_BLUEPRINTS", "certs/tls")
    async with ApiClient() as api_client:
        built = Controller(load(), Kube(api_client), identity="test")
    ref = BlueprintRef("certs", "tls")
    secret = {"metadata": {"name": "tls", "namespace": "certs"}, "type": "Opaque"}
    secret["data"] = {"tls.key": B64}
    built.caches.blueprint_informers[ref].store["certs/tls"] = trim_blueprint(ref, secret)
    return built


@pytest.mark.parametrize(
    "quoted",
    [
        pytest.param(B64, id="base64"),
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


def _parts() -> list[ParameterSet]:
    """Parts of every form of the value: its start, a middle piece, its end (what a webhook that
    quotes only the first 120 characters, or a log line cut short, would show)."""
    cases = []
    for form_name, form in (("base64", B64), ("decoded", PEM), ("json-escaped", json.dumps(PEM)[1:-1])):
        for where, part in (
            ("start-120", form[:120]),
            ("start-80", form[:80]),
            ("middle-40", form[len(form) // 2 : len(form) // 2 + 40]),
            ("middle-12", form[len(form) // 3 : len(form) // 3 + FRAGMENT]),
            ("end-50", form[-50:]),
        ):
            cases.append(pytest.param(part, id=f"{form_name}-{where}"))
    return cases


@pytest.mark.parametrize("part", _parts())
@pytest.mark.parametrize("quoting", ["bare", "quoted", "in-text"])
async def test_a_part_of_a_value_is_redacted_wherever_it_starts_and_ends(
    controller: Controller, part: str, quoting: str
) -> None:
    message = {
        "bare": part,
        "quoted": f'{WEBHOOK}data["tls.key"] starts with "{part}"',
        "in-text": f"{WEBHOOK}value {part}... rejected by policy",
    }[quoting]
    shown = controller.describe_error(_error(message))
    survivors = _survivors(shown, part)
    assert not survivors, f"fragments of the Secret data survived: {survivors[:3]} in {shown!r}"
    assert "[redacted]" in shown


def test_two_parts_of_different_forms_next_to_each_other_are_both_redacted() -> None:
    redactor = Redactor([B64])
    text = "x " + B64[100:130] + PEM[200:230] + " y"
    shown = redactor.redact(text)
    assert not _survivors(shown, B64), shown
    assert not _survivors(shown, PEM), shown
    assert shown.startswith("x ")
    assert shown.endswith(" y")


def test_text_of_no_value_stays_exactly_as_it_was() -> None:
    redactor = Redactor([B64, base64.b64encode(b"short").decode()])
    text = 'secrets "tls" already exists; Operation cannot be fulfilled on secrets "tls": modified'
    assert redactor.redact(text) == text
    assert redactor.spans(text) == []


def test_a_short_value_is_replaced_where_it_appears_whole() -> None:
    redactor = Redactor([base64.b64encode(b"hunter2").decode()])
    assert redactor.redact("the password hunter2 is weak") == "the password [redacted] is weak"


def test_forms_of_a_value() -> None:
    value = base64.b64encode("a\nbé!".encode()).decode()
    assert forms(value) == [value, "a\nbé!", "a\\nb\\u00e9!", "a\\nbé!"]


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(f'{WEBHOOK}old value "p4ss-w0rd-of-the-old-copy" is still in use', id="double-quoted"),
        pytest.param(
            "ValidatingAdmissionPolicy 'no-reuse' with binding 'b' denied request: "
            "oldObject.data.password == 'cDRzcy13MHJkLW9mLXRoZS1vbGQtY29weQ=='",
            id="policy-single-quoted",
        ),
        pytest.param(
            f"{WEBHOOK}data cDRzcy13MHJkLW9mLXRoZS1vbGQtY29weQ== may not be kept", id="unquoted-blob"
        ),
    ],
)
async def test_what_a_webhook_quotes_of_data_the_operator_never_saw_is_dropped(
    controller: Controller, message: str
) -> None:
    """A copy's old data is not in the blueprint cache: the quoted part of a third party's message
    goes, the wording of the API server and the explanation's plain words stay."""
    shown = controller.describe_error(_error(message))
    old = "p4ss-w0rd-of-the-old-copy"
    assert old not in shown, shown
    assert base64.b64encode(old.encode()).decode() not in shown, shown
    assert "denied" in shown
    assert "[redacted]" in shown


async def test_the_servers_own_wording_keeps_its_quoted_names(controller: Controller) -> None:
    message = (
        'secrets "tls" is forbidden: User "system:serviceaccount:ops:secrets-operator" cannot patch'
        ' resource "secrets" in API group "" in the namespace "team-a"'
    )
    assert controller.describe_error(_error(message)).endswith(message)


def test_cost_of_a_message_against_a_1_mib_value() -> None:
    """Values can be 1 MiB; a message of ApiError.MESSAGE_LIMIT + 200 characters is searched for
    in blocks. Measured here, and bounded loosely so a slow machine does not fail it."""
    value = base64.b64encode(base64.b64encode(os.urandom(768 * 1024))).decode()  # decodes to 1 MiB text
    started = time.perf_counter()
    redactor = Redactor([value])
    built = time.perf_counter() - started
    decoded = base64.b64decode(value).decode()
    clean = (WEBHOOK + "the request carries a value that looks like a key, refused by policy x. " * 10)[:500]
    leaking = (WEBHOOK + value[1000:1200] + " and " + decoded[5000:5200])[:500]
    timings = {}
    for name, text in (("clean", clean), ("leaking", leaking)):
        started = time.perf_counter()
        shown = redactor.redact(text)
        timings[name] = time.perf_counter() - started
        assert not _survivors(shown, value)
        assert not _survivors(shown, decoded)
    print(f"1 MiB value: forms built in {built * 1000:.0f} ms, redaction {timings}")
    assert max(timings.values()) < 5


async def test_plain_str_of_an_error_is_still_short(controller: Controller) -> None:
    error = ApiError(method="GET", path="/x", status=500, reason="InternalError", message="y" * 5000)
    assert len(str(error)) < 400


# -- what a search for known values cannot catch


def _controller_with(value: str, controller: Controller) -> Controller:
    ref = BlueprintRef("certs", "tls")
    secret = {"metadata": {"name": "tls", "namespace": "certs"}, "type": "Opaque"}
    secret["data"] = {"tls.key": base64.b64encode(value.encode()).decode()}
    controller.caches.blueprint_informers[ref].store["certs/tls"] = trim_blueprint(ref, secret)
    return controller


async def test_a_value_of_three_characters_is_dropped_where_a_webhook_names_it(
    controller: Controller,
) -> None:
    _controller_with("731", controller)
    shown = controller.describe_error(_error(f"{WEBHOOK}pin 731 is too weak"))
    assert "731" not in shown, shown
    assert "too weak" in shown


async def test_a_value_in_gos_html_safe_json_escaping_is_redacted(controller: Controller) -> None:
    """Go's encoding/json writes ``<`` ``>`` ``&`` as \\u003c \\u003e \\u0026: a value dense in them
    has no run of 12 plain characters to find."""
    value = "".join(f"<{char}&" for char in "correcthorsebatterystaple") + ">"
    _controller_with(value, controller)
    quoted = go_json(value)
    assert "\\u003c" in quoted
    shown = controller.describe_error(_error(f'Internal error occurred: object was {{"k":"{quoted[:150]}"}}'))
    survivors = _survivors(shown, quoted[:150])
    assert not survivors, f"fragments of the Go-escaped value survived: {survivors[:3]} in {shown!r}"


OLD = "p4ss-w0rd-of-the-old-copy"


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        pytest.param(
            f'Secret "tls" is invalid: data[.dockerconfigjson]: Invalid value: "{OLD}": bad',
            OLD,
            id="invalid-value",
        ),
        pytest.param(
            f'Secret "tls" is invalid: [data[a]: Invalid value: "{OLD}", type: Unsupported value: "{OLD}": '
            'supported values: "Opaque"]',
            OLD,
            id="aggregate",
        ),
        pytest.param(
            'Secret "tls" is invalid: data[a]: Invalid value: []byte{0x6f, 0x6c, 0x64}: bad',
            "0x6f",
            id="byte-slice",
        ),
        pytest.param(
            f'Secret "tls" is invalid: data[a]: Invalid value: "{OLD} and more, cut sh', "more", id="cut"
        ),
    ],
)
async def test_what_the_api_server_echoes_of_the_request_is_dropped_whatever_it_is(
    controller: Controller, message: str, secret: str
) -> None:
    """Field errors quote the refused value; the value may be a copy's old data, never known here."""
    shown = controller.describe_error(_error(message))
    assert secret not in shown, shown
    assert "[redacted]" in shown
    assert 'Secret "tls" is invalid' in shown


async def test_a_json_syntax_error_does_not_show_a_character_of_the_data(controller: Controller) -> None:
    message = (
        'Secret "tls" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '
        "invalid character 'q' looking for beginning of value"
    )
    shown = controller.describe_error(_error(message))
    assert "'q'" not in shown, shown
    assert "looking for beginning of value" in shown


async def test_a_third_partys_quote_cut_short_is_dropped_to_the_end(controller: Controller) -> None:
    shown = controller.describe_error(_error(f'{WEBHOOK}old value "my old pass phrase'))
    assert "pass phrase" not in shown, shown
    assert "old value" in shown


def test_go_quote_writes_what_strconv_quote_writes() -> None:
    assert go_quote('a"b\\c\n\x07\x1b\x7fé\u200b') == 'a\\"b\\\\c\\n\\a\\x1b\\x7fé\\u200b'
    assert go_json("<a&b>\u2028é") == "\\u003ca\\u0026b\\u003e\\u2028é"


@pytest.mark.parametrize("where", ["data", "binaryData"])
async def test_a_configmap_value_is_redacted_in_every_form_a_message_quotes_it(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A ConfigMap's data is plain text, not base64: its escaped forms must be covered all the same."""
    value = "user: admin\npass: Pa55w0rd-canary\nhost: db.internal\n"
    monkeypatch.setenv("SECRETS_OPERATOR_BLUEPRINTS", '[{"source": "certs/app", "kind": "ConfigMap"}]')
    async with ApiClient() as api_client:
        built = Controller(load(), Kube(api_client), identity="test")
    ref = BlueprintRef("certs", "app", Kind.CONFIG_MAP)
    field = (
        {"data": {"config": value}}
        if where == "data"
        else {"binaryData": {"config": base64.b64encode(value.encode()).decode()}}
    )
    config_map = {"metadata": {"name": "app", "namespace": "certs"}, **field}
    built.caches.blueprint_informers[ref].store["certs/app"] = trim_blueprint(ref, config_map)
    for shown in (value, json.dumps(value)[1:-1], go_quote(value)):
        message = built.describe_error(_error(f"etcd refused the object with config {shown} in it"))
        assert "Pa55w0rd" not in message, message
        assert "admin" not in message, message
        assert "db.internal" not in message, message
