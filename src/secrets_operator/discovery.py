"""What the running process finds out about where it runs: its namespace and a name of its own.

The Lease's namespace and the holder identity default to facts only the process can learn at
run time: ``POD_NAMESPACE`` and ``POD_NAME`` (the chart passes them through the downward API),
the service account's namespace file, the hostname and the process id. Reading them is kept out
of the settings, which only validate the ``SECRETS_OPERATOR_*`` variables and fall back to
these functions when a variable leaves the value empty.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(*, namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE) -> str:
    """POD_NAMESPACE, else the in-cluster namespace file, else ``default``."""
    from_env = os.environ.get("POD_NAMESPACE", "").strip()
    if from_env:
        return from_env
    try:
        from_file = namespace_file.read_text().strip()
    except OSError:
        from_file = ""
    return from_file or "default"


def process_identity() -> str:
    """A name for this process, the same for every call within it, never the same in another.

    As client-go's users do (kube-controller-manager: hostname + "_" + a UUID), a derived
    identity carries a suffix drawn once per process: a container the kubelet restarts, or a
    second `run` started in the same Pod, is a new candidate that must wait out the Lease,
    never one that resumes a claim it did not make.
    """
    base = os.environ.get("POD_NAME", "").strip() or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}_{_PROCESS_SUFFIX}"


#: Drawn once when the process starts: what makes a derived identity unique to this process.
_PROCESS_SUFFIX = secrets.token_hex(4)
