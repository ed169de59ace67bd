"""Run the operator as a real subprocess, as a Deployment would, and observe it from outside.

Integration tests start one or more replicas with ``python -m secrets_operator run``, wait on
their ``/readyz``, read their ``/metrics`` (writes, leadership, reconciles), send them signals,
and keep their logs — printed when a test fails, and searched by the canary tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import anyio

from tools.cluster import _die_with_parent

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# The port the operator serves on, from its "starting" line (JSON or text format).
_PORT = re.compile(r'(?:"message": "starting".*"http_port": |: starting .*http_port=)(\d+)')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group("labels") or ""))
            samples.append((match.group("name"), labels, float(match.group("value"))))
    return samples


class Metrics:
    """A parsed /metrics page; ``value`` sums the samples whose labels include the given ones."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = parse_metrics(text)

    def value(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def only(self, name: str) -> float:
        """The value of the one sample of an unlabelled metric; a missing one (a renamed metric, a
        typo) is an error, never a zero."""
        found = [value for sample, labels, value in self.samples if sample == name and not labels]
        if len(found) != 1:
            raise LookupError(f"{len(found)} samples {name} on the page, not one:\n{self.text}")
        return found[0]


class OperatorProcess:
    """One replica of the operator in a subprocess."""

    def __init__(self, *, name: str, kubeconfig: Path, env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.port: int | None = None  # known once the process says where it serves
        self._log_start = 0
        self.log_path = log_dir / f"operator-{name}.log"
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("SECRETS_OPERATOR_")
        }
        self.env.update(
            {
                "KUBECONFIG": str(kubeconfig),
                "SECRETS_OPERATOR_IDENTITY": name,
                # The operator binds a free port itself and logs it: a port picked here and bound
                # later could meanwhile be taken, e.g. as the source port of a connection.
                "SECRETS_OPERATOR_HTTP_PORT": "0",
                "SECRETS_OPERATOR_LOG_FORMAT": "json",
                "SECRETS_OPERATOR_LOG_LEVEL": "DEBUG",
            }
        )
        self.env.update(env)
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = None
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "secrets_operator", "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    @property
    def url(self) -> str:
        """Where the running process serves; ConnectionRefusedError until it has said so."""
        if self.port is None:
            try:
                with self.log_path.open("rb") as log:
                    log.seek(self._log_start)
                    found = _PORT.search(log.read().decode(errors="replace"))
            except OSError:
                found = None
            if found is None:
                raise ConnectionRefusedError(f"operator {self.name} is not serving yet")
            self.port = int(found.group(1))
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _check_running(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise AssertionError(
                f"operator {self.name} exited with {self.popen.returncode}:\n{self.log[-4000:]}"
            )

    async def _get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(self.url + path) as response,
        ):
            return response.status, await response.text()

    async def probe(self, path: str) -> int:
        try:
            status, _ = await self._get(path)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0
        return status

    async def wait_ready(self, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while True:
                self._check_running()
                if await self.probe("/readyz") == 200:
                    return
                await anyio.sleep(0.05)

    async def metrics(self) -> Metrics:
        self._check_running()
        status, text = await self._get("/metrics")
        assert status == 200, status
        return Metrics(text)

    async def is_leader(self) -> bool:
        try:
            return (await self.metrics()).value("secrets_operator_leader") == 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def writes(self) -> float:
        return (await self.metrics()).value("secrets_operator_writes_total", result="success")

    def send(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    async def wait_exit(self, timeout: float = 20) -> int:
        popen = self.popen
        assert popen is not None
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(popen.wait, abandon_on_cancel=True)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
