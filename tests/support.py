"""Helpers the tests share: the server's minor, ServiceAccount kubeconfigs, digests of a canary,
and the API server's optimistic concurrency for fake API servers.

Waiting for a condition is ``tools.waiting.wait_for``, which the tools use too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

from secrets_operator.kube.client import ApiError


def log_entries(log: str, message: str) -> list[dict[str, Any]]:
    """The JSON log lines whose message is ``message`` exactly (not a longer one that contains it)."""
    entries = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message") == message:
            entries.append(entry)
    return entries


async def server_minor(api: ApiClient) -> int:
    """The API server's Kubernetes minor (``"37"``, or ``"37+"`` on some distributions, gives 37)."""
    info = await client.VersionApi(api).get_code()
    return int("".join(ch for ch in info.minor if ch.isdigit()))


async def service_account_kubeconfig(
    api: ApiClient,
    *,
    namespace: str,
    name: str,
    path: Path,
    expiration_seconds: int = 3600,
) -> Path:
    """Create the ServiceAccount if needed, mint a token for it (TokenRequest API), write a kubeconfig.

    The kubeconfig authenticates as ``system:serviceaccount:<namespace>:<name>`` and so has
    exactly the permissions that RBAC grants that identity.
    """
    core = client.CoreV1Api(api)
    try:
        await core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
    )
    response = await core.create_namespaced_service_account_token(name, namespace, request)
    configuration = api.configuration
    ca_path = configuration.ssl_ca_cert
    cluster: dict[str, object] = {"server": configuration.host}
    if ca_path:
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca_path).read_bytes()).decode()
    else:
        cluster["insecure-skip-tls-verify"] = not configuration.verify_ssl
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sa", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": response.status.token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "sa", "user": "sa", "namespace": namespace}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(document, indent=2))
    path.chmod(0o600)
    return path


def data_digests(secret_type: str, data: dict[str, str]) -> dict[str, str]:
    """Obvious digests of a Secret's data (``data`` as the API returns it, base64 values), by name.

    Any of them in an object's metadata, an Event or a log would be an offline guessing oracle for
    a weak secret: whoever may read metadata but not data could test candidate passwords against it.
    """
    import hashlib

    from secrets_operator.planning import content_hash

    found = {
        "sha256 of type+data (content_hash)": content_hash(secret_type, data),
        "sha256 of the data as JSON": hashlib.sha256(
            json.dumps(dict(data), sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest(),
        "sha256 of the data as JSON (spaced)": hashlib.sha256(
            json.dumps(dict(data), sort_keys=True).encode()
        ).hexdigest(),
    }
    for key, value in data.items():
        for algorithm in ("sha256", "sha1", "md5", "sha512"):
            found[f"{algorithm} of {key} (decoded)"] = hashlib.new(
                algorithm, base64.b64decode(value)
            ).hexdigest()
            found[f"{algorithm} of {key} (base64)"] = hashlib.new(algorithm, value.encode()).hexdigest()
    return found


def precondition_failed(method: str, path: str, stored: Mapping[str, Any], body: Any) -> ApiError | None:
    """The 409 the API server answers a conditional write of ``stored`` with; None if it may go on.

    A PATCH or PUT whose ``metadata.resourceVersion``, or a DELETE whose DeleteOptions'
    ``preconditions`` (resourceVersion, uid), differ from the stored object's is refused: the
    object changed since the writer read it. A write that states none is unconditional, as on the
    API server: a writer that forgets its precondition must be seen overwriting (or deleting) what
    another writer put there meanwhile, as it would on a cluster, not refused as if it had one.
    """
    resource, name = path.rstrip("/").split("/")[-2:]
    meta = stored.get("metadata") or {}
    options: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    if method in ("PATCH", "PUT"):
        wanted = (options.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != meta.get("resourceVersion"):
            return _conflict(
                method,
                path,
                f'on {resource} "{name}": the object has been modified; please '
                "apply your changes to the latest version and try again",
            )
    elif method == "DELETE":
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (options.get("preconditions") or {}).get(field)
            if wanted and wanted != meta.get(field):
                return _conflict(
                    method,
                    path,
                    f'on {resource} "{name}": Precondition failed: {label} in precondition: {wanted}, '
                    f"{label} in object meta: {meta.get(field, '')}",
                )
    return None


def _conflict(method: str, path: str, what: str) -> ApiError:
    return ApiError(
        method=method,
        path=path,
        status=409,
        reason="Conflict",
        message=f"Operation cannot be fulfilled {what}",
    )
