"""A classic Helm chart repository like the one the project replaces shipped from.

nginx (Debian's ``nginx-light``) serves a directory on loopback behind HTTP basic auth: readers
(``helm repo add --username --password``) may GET, publishers may also PUT (WebDAV), which is how
a release uploads its ``.tgz``, ``.prov`` and the merged ``index.yaml``. Both password files are
htpasswd files (bcrypt, made with Debian's ``apache2-utils``): the very kind of Secret the
operator exists to copy.

Deliberately not here: ChartMuseum's upload API (not served by the package registries here, and
not needed: publishing is uploading files), deleting or overwriting a chart (the release tooling
refuses an existing version before it uploads anything; only ``index.yaml`` is replaced).

``python -m tools.chartrepo up|down|status`` runs one in the background (state in ``.chartrepo/``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.cluster import (
    ControlPlaneError,
    Process,
    _wait_until,
    free_port,
    read_state,
    start_daemon,
    stop_daemon,
    until_signalled,
)
from tools.images import apt_install

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO / ".chartrepo"
#: Debian's packages the repository runs on, by the command each provides.
PACKAGES = {"nginx": "nginx-light", "htpasswd": "apache2-utils"}


class ChartRepoError(RuntimeError):
    """The chart repository could not be started or answered wrongly; the message says how."""


def ensure_packages() -> None:
    missing = [package for command, package in PACKAGES.items() if shutil.which(command) is None]
    if not missing:
        return
    apt_install(*missing)


def htpasswd_line(user: str, password: str) -> str:
    """One bcrypt htpasswd line, made by htpasswd itself (the password goes through stdin)."""
    done = subprocess.run(
        ["htpasswd", "-niB", "-C", "10", user], input=password, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ChartRepoError(f"htpasswd failed: {done.stderr.strip()}")
    return done.stdout.strip() + "\n"


@dataclasses.dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


_CONFIG = """\
{user}worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{ application/gzip tgz; application/x-yaml yaml; text/plain prov; }}
    default_type application/octet-stream;
    client_max_body_size 20m;
    server_tokens off;
    server {{
        listen {address};
        root {dir}/charts;
        location / {{
            auth_basic "secrets-operator charts";
            auth_basic_user_file {dir}/readers.htpasswd;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            limit_except GET HEAD {{
                auth_basic "secrets-operator charts: publish";
                auth_basic_user_file {dir}/publishers.htpasswd;
            }}
        }}
    }}
}}
"""


class ChartRepository:
    """nginx serving ``workdir/charts`` at ``url``: readers may read, publishers may also upload."""

    def __init__(self, workdir: Path, *, reader: Credentials, publisher: Credentials) -> None:
        self.workdir = workdir
        self.reader = reader
        self.publisher = publisher
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def start(self) -> None:
        ensure_packages()
        for sub in ("charts", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        # Publishers read too: a release reads index.yaml before it merges into it.
        (self.workdir / "readers.htpasswd").write_text(
            htpasswd_line(self.reader.user, self.reader.password)
            + htpasswd_line(self.publisher.user, self.publisher.password)
        )
        (self.workdir / "publishers.htpasswd").write_text(
            htpasswd_line(self.publisher.user, self.publisher.password)
        )
        # Started as root, nginx would switch its workers to a user that may not even reach this
        # directory (a test's temporary directory is 0700): they stay root, on loopback only.
        user = "user root;\n" if os.geteuid() == 0 else ""
        config = self.workdir / "nginx.conf"
        config.write_text(_CONFIG.format(user=user, dir=self.workdir, address=f"127.0.0.1:{self.port}"))
        self.process = Process(
            "nginx", ["nginx", "-c", str(config), "-e", str(self.workdir / "error.log")], self.workdir / "log"
        )
        self.process.start()
        _wait_until("the chart repository", self._answers, timeout=30, alive=self.process.check_alive)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@contextmanager
def running(workdir: Path, *, reader: Credentials, publisher: Credentials) -> Iterator[ChartRepository]:
    repository = ChartRepository(workdir, reader=reader, publisher=publisher)
    repository.start()
    try:
        yield repository
    finally:
        repository.stop()


def _serve(state_dir: Path) -> int:
    """Run a repository in the foreground until SIGTERM/SIGINT (the daemon's body).

    The credentials are made here, at random, and written beside the state (mode 0600): a
    developer's repository has no shared password.
    """
    signalled = until_signalled()
    reader = Credentials("reader", secrets.token_urlsafe(18))
    publisher = Credentials("publisher", secrets.token_urlsafe(18))
    credentials = state_dir / "credentials.json"
    credentials.write_text(
        json.dumps({"reader": dataclasses.asdict(reader), "publisher": dataclasses.asdict(publisher)})
    )
    credentials.chmod(0o600)
    workdir = state_dir / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        with running(workdir, reader=reader, publisher=publisher) as repository:
            state = {"pid": os.getpid(), "url": repository.url, "credentials": str(credentials)}
            (state_dir / "state.json").write_text(json.dumps(state))
            print(f"chart repository at {repository.url}", flush=True)
            while not signalled():
                assert repository.process is not None
                repository.process.check_alive()
                time.sleep(0.5)
    except (ChartRepoError, ControlPlaneError) as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    finally:
        (state_dir / "state.json").unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a developer's command
    parser = argparse.ArgumentParser(prog="python -m tools.chartrepo", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "serve"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_STATE_DIR, help="state directory (default .chartrepo)"
    )
    args = parser.parse_args(argv)
    state_dir: Path = args.dir.resolve()
    if args.command == "serve":
        return _serve(state_dir)
    found = read_state(state_dir)
    if args.command == "status":
        print(json.dumps(found, indent=2) if found else "no chart repository is running")
        return 0 if found else 1
    if args.command == "down":
        return stop_daemon(state_dir, timeout=30, what="chart repository")
    if found is None:
        ensure_packages()
        found = start_daemon("tools.chartrepo", state_dir, timeout=60, what="chart repository")
        if found is None:
            return 1
    print(f"chart repository: {found['url']} (credentials: {found['credentials']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
