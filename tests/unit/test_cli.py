"""The command line is the operator's user interface: its exit codes, its errors and its logs.

A Deployment with a typo in its env must stop with exit status 2 and one line that names the
variable (that line is what ``kubectl logs`` shows in a crash loop), never start with a silently
different configuration or bury the cause in a traceback. ``--help`` is the reference for every
variable. The logs must be machine-readable JSON and must never carry Secret data, which
kubernetes_asyncio prints at DEBUG. ``run`` must wire the elector into the writer: a replica that
lost the Lease must not send a single write. Most of these tests run the real
``python -m secrets_operator`` as a subprocess with a scrubbed environment; none needs a cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client import rest as kube_rest

from secrets_operator import logs
from secrets_operator.kube.client import ApiError, Kube
from secrets_operator.settings import ENV_PREFIX, Settings

VALID = {"BLUEPRINTS": "auth/htpasswd"}
CANARY = "c2VjcmV0LWNhbmFyeS0xMjM0NQ"  # stands in for base64 Secret data


def environment(tmp_path: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """The test runner's environment without any operator or in-cluster settings, plus ``settings``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(ENV_PREFIX)
        and name not in {"POD_NAME", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
    }
    env["KUBECONFIG"] = str(tmp_path / "no-such-kubeconfig")
    env.update({ENV_PREFIX + name: value for name, value in settings.items()})
    return env


def cli(tmp_path: Path, *args: str, settings: Mapping[str, str] = VALID) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secrets_operator", *args],
        env=environment(tmp_path, settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def help_text(tmp_path: Path, *args: str) -> str:
    result = cli(tmp_path, *args, "--help", settings={})
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- bad configuration: exit 2, one line naming the variable

BAD_CONFIGURATIONS = [
    pytest.param({}, "BLUEPRINTS", id="missing-blueprints"),
    pytest.param({"BLUEPRINTS": ""}, "BLUEPRINTS", id="empty-blueprints"),
    pytest.param({"BLUEPRINTS": "htpasswd"}, "BLUEPRINTS", id="blueprint-without-slash"),
    pytest.param({"BLUEPRINTS": "auth/htpasswd,web/htpasswd"}, "BLUEPRINTS", id="blueprint-names-clash"),
    pytest.param({**VALID, "NAMESPACE_SELECTOR": "env in (dev"}, "NAMESPACE_SELECTOR", id="bad-selector"),
    pytest.param({**VALID, "CONFLICT_POLICY": "merge"}, "CONFLICT_POLICY", id="conflict-policy-merge"),
    pytest.param({**VALID, "PRUNE": "maybe"}, "PRUNE", id="prune-maybe"),
    pytest.param(
        {**VALID, "LEASE_DURATION_SECONDS": "5", "RENEW_DEADLINE_SECONDS": "10"},
        "LEASE_DURATION_SECONDS",
        id="lease-shorter-than-deadline",
    ),
    pytest.param(
        {**VALID, "RENEW_DEADLINE_SECONDS": "10", "RETRY_PERIOD_SECONDS": "9"},
        "RETRY_PERIOD_SECONDS",
        id="retry-period-too-large",
    ),
    pytest.param({**VALID, "HTTP_PORT": "70000"}, "HTTP_PORT", id="port-out-of-range"),
    pytest.param({**VALID, "LOG_FORMAT": "xml"}, "LOG_FORMAT", id="log-format-xml"),
    pytest.param({**VALID, "LOG_LEVEL": "chatty"}, "LOG_LEVEL", id="log-level-unknown"),
    pytest.param({**VALID, "MAX_CONCURRENT_WRITES": "0"}, "MAX_CONCURRENT_WRITES", id="no-writes-allowed"),
    pytest.param({**VALID, "API_QPS": "-1"}, "API_QPS", id="negative-qps"),
    pytest.param({**VALID, "API_BURST": "many"}, "API_BURST", id="burst-not-a-number"),
    pytest.param({**VALID, "LEASE_NAME": "Secrets-Operator"}, "LEASE_NAME", id="lease-name-uppercase"),
    pytest.param({**VALID, "LEASE_NAMESPACE": "Ops"}, "LEASE_NAMESPACE", id="lease-namespace-uppercase"),
    pytest.param(
        {**VALID, "LEASE_DURATION_SECONDS": "inf"},
        "LEASE_DURATION_SECONDS",
        id="infinite-lease-duration",
    ),
]


@pytest.mark.parametrize(("settings", "variable"), BAD_CONFIGURATIONS)
def test_a_bad_configuration_exits_2_with_one_line_naming_the_variable(
    tmp_path: Path, settings: dict[str, str], variable: str
) -> None:
    result = cli(tmp_path, "check", settings=settings)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("secrets-operator: configuration error: ")
    assert ENV_PREFIX + variable in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["run"], ["check"], ["sync", "--once"], ["sync", "--once", "--dry-run"]])
def test_every_command_rejects_a_bad_configuration_before_touching_the_cluster(
    tmp_path: Path, command: list[str]
) -> None:
    result = cli(tmp_path, *command, settings={})

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"secrets-operator: configuration error: {ENV_PREFIX}BLUEPRINTS: is required"
    ]


def test_check_without_a_usable_kubeconfig_fails_with_a_one_line_message(tmp_path: Path) -> None:
    result = cli(tmp_path, "check")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any(line.startswith("secrets-operator: ") for line in result.stderr.splitlines()), result.stderr


# -- help and usage


def test_help_lists_every_setting_with_its_description(tmp_path: Path) -> None:
    text = help_text(tmp_path)

    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    listed = set(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+\b", text))
    assert expected <= listed, f"missing from --help: {sorted(expected - listed)}"
    for name, field in Settings.model_fields.items():
        assert field.description, f"{ENV_PREFIX}{name.upper()} has no description for --help"
        assert field.description in text
    assert "KUBECONFIG" in text


def test_help_names_no_setting_that_does_not_exist(tmp_path: Path) -> None:
    text = help_text(tmp_path)
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}

    listed = set(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+\b", text))

    assert listed <= known, f"--help mentions unknown variables: {sorted(listed - known)}"


def test_help_shows_the_defaults_a_user_would_otherwise_have_to_guess(tmp_path: Path) -> None:
    text = help_text(tmp_path)

    assert f"{ENV_PREFIX}BLUEPRINTS  [required]" in text
    assert f"{ENV_PREFIX}CONFLICT_POLICY  [skip]" in text
    assert f"{ENV_PREFIX}PRUNE  [false]" in text
    assert f"{ENV_PREFIX}EXCLUDE_NAMESPACES  [kube-system,kube-public,kube-node-lease]" in text


@pytest.mark.parametrize(
    ("command", "options"),
    [("check", ["--output", "--problems-only"]), ("sync", ["--once", "--dry-run"])],
)
def test_subcommand_help_exits_0_and_shows_its_options(
    tmp_path: Path, command: str, options: list[str]
) -> None:
    text = help_text(tmp_path, command)

    for option in options:
        assert option in text
    assert f"{ENV_PREFIX}BLUEPRINTS" in text, "the variables are listed under every command"


def test_sync_without_once_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(tmp_path, "sync")

    assert result.returncode != 0
    assert "usage:" in result.stderr
    assert "--once" in result.stderr
    assert result.stdout == ""


def test_a_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(tmp_path)

    assert result.returncode != 0
    assert "usage:" in result.stderr


# -- logs


@contextlib.contextmanager
def configured_logging(level: str, fmt: str) -> Iterator[None]:
    """``logs.configure`` for the duration of a block, then the logging setup as it was."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    names = [*logging.root.manager.loggerDict, kube_rest.logger.name, "kubernetes_asyncio", "aiohttp.client"]
    levels = {name: logging.getLogger(name).level for name in names}
    logs.configure(level=level, fmt=fmt)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for name, logger_level in levels.items():
            logging.getLogger(name).setLevel(logger_level)


def test_json_logs_are_one_object_per_line_with_the_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    with configured_logging("INFO", "json"):
        log = logging.getLogger("secrets_operator.tests")
        log.info("created copy", extra={"namespace": "team-a", "blueprint": "auth/htpasswd", "writes": 3})
        log.warning("second message\nwith a newline", extra={"reason": "conflict"})
        log.debug("below the level")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "created copy"
    assert first["level"] == "INFO"
    assert first["logger"] == "secrets_operator.tests"
    assert (first["namespace"], first["blueprint"], first["writes"]) == ("team-a", "auth/htpasswd", 3)
    assert "time" in first
    assert second["message"] == "second message\nwith a newline"
    assert second["reason"] == "conflict"


def test_debug_logging_never_prints_kubernetes_response_bodies(capsys: pytest.CaptureFixture[str]) -> None:
    with configured_logging("DEBUG", "json"):
        assert kube_rest.logger.getEffectiveLevel() == logging.WARNING
        kube_rest.logger.debug("response body: %s", f'{{"data": {{"password": "{CANARY}"}}}}')
        logging.getLogger("secrets_operator.tests").debug("our own debug message")

    err = capsys.readouterr().err
    assert "our own debug message" in err, "DEBUG is on for the operator's own loggers"
    assert CANARY not in err


def test_logged_exceptions_show_their_type_but_not_their_message(capsys: pytest.CaptureFixture[str]) -> None:
    with configured_logging("INFO", "json"):
        try:
            raise ValueError("cannot parse " + CANARY)
        except ValueError:
            logging.getLogger("secrets_operator.tests").exception(
                "reconcile crashed", extra={"namespace": "a"}
            )

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["error_type"] == "ValueError"
    assert "test_logged_exceptions_show_their_type_but_not_their_message" in entry["traceback"]
    assert CANARY not in lines[0], "exception messages can quote Secret data"


# -- check: what counts against exit 0


class _Kube:
    async def close(self) -> None:
        pass


@pytest.mark.parametrize("problems_only", [False, True])
async def test_check_counts_a_stale_copy_against_exit_0_and_shows_it_with_problems_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], problems_only: bool
) -> None:
    from secrets_operator import cli as command
    from secrets_operator.model import BlueprintRef, CopyState, NamespacePlan, Row
    from secrets_operator.planning import BlueprintSpec

    ref = BlueprintRef("auth", "htpasswd")
    rows = (
        Row(ref, "team-a", CopyState.IN_SYNC),
        Row(ref, "kube-system", CopyState.EXCLUDED, "matched by EXCLUDE_NAMESPACES"),
        Row(
            ref, "old-team", CopyState.STALE, "not matched by NAMESPACE_SELECTOR; the copy made earlier stays"
        ),
    )

    class Snapshot:
        def plan_all(self) -> list[NamespacePlan]:
            return [NamespacePlan(row.namespace, (row,), ()) for row in rows]

    async def snapshot(settings: Settings) -> tuple[Snapshot, _Kube]:
        return Snapshot(), _Kube()

    monkeypatch.setattr(command, "_snapshot", snapshot)
    settings = Settings(blueprints=(BlueprintSpec(ref),))
    status = await command.check(settings, output="json", problems_only=problems_only)
    out, err = capsys.readouterr()
    shown = {(row["namespace"], row["state"]) for row in json.loads(out)}
    assert status == 1
    assert ("old-team", "stale") in shown
    assert (("team-a", "in_sync") in shown) is not problems_only
    assert "1 stale" in err


# -- run: every write asks the elector first


class _Transport(Kube):
    """A Kube whose requests go through ``Kube.request`` (rate limit, guard, timeout) and end here:
    each one that would leave the process is recorded and answered with an empty object."""

    def __init__(self) -> None:
        super().__init__(cast(ApiClient, None))
        self.sent: list[tuple[str, str]] = []

    async def _send(self, method: str, path: str, **_: Any) -> aiohttp.ClientResponse:
        self.sent.append((method, path))
        return cast(aiohttp.ClientResponse, _Answer())


class _Answer:
    async def read(self) -> bytes:
        return b"{}"

    def release(self) -> None:
        pass


class _Lease:
    """The Lease API as the elector's first acquisition sees it: no Lease yet, the create accepted."""

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        if method == "GET":
            raise ApiError(method=method, path=path, status=404, reason="NotFound")
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}


async def test_run_wires_the_writer_so_that_a_replica_without_a_write_budget_sends_no_write() -> None:
    """The writer as ``run`` builds it: a replica that never led, or whose renew deadline has
    passed, gets NotLeaderError and its write never reaches the API server."""
    from secrets_operator import cli as command
    from secrets_operator.model import Action, ActionKind, BlueprintRef
    from secrets_operator.planning import BlueprintSpec
    from secrets_operator.writing import NotLeaderError

    ref = BlueprintRef("auth", "htpasswd")
    settings = Settings(blueprints=(BlueprintSpec(ref),), lease_namespace="ops")
    api = _Transport()
    controller, elector = command.assemble(
        settings, api, identity="replica-a", lease_kube=cast(Kube, _Lease())
    )
    assert elector is not None
    now = [1000.0]
    elector.clock = lambda: now[0]
    copy = {"metadata": {"name": ref.name, "namespace": "team-a"}, "type": "Opaque", "data": {}}
    action = Action(ActionKind.CREATE, "team-a", ref.name, ref, "copy missing", body=copy)

    with pytest.raises(NotLeaderError):  # has not led yet
        await controller.apply(action)
    assert api.sent == []

    assert (await elector._attempt())[0] == "acquired"
    elector.leading = True  # what LeaderElector.run does once the Lease is acquired
    await controller.apply(action)  # the leader's write goes out: the fake can see one
    assert api.sent == [("POST", "/api/v1/namespaces/team-a/secrets")]

    now[0] += settings.renew_deadline_seconds  # no renewal since: the deadline has come
    with pytest.raises(NotLeaderError):
        await controller.apply(action)
    assert api.sent == [("POST", "/api/v1/namespaces/team-a/secrets")], "a write went out after the deadline"
