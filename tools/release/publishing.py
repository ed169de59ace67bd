"""``nox -s release -- X.Y.Z``: build, sign and publish one version, or change nothing.

In order: refuse (a dirty tree, a HEAD that is not tag ``vX.Y.Z``, missing release notes, a wrong
password, a version that exists anywhere already); build the image for each platform (the final
stage of arm64 under emulation) and push them with an image index; make each image's SBOM with
syft and attach it as a signed attestation; sign the index and every image in it with cosign,
with the version as a signed annotation; package the chart, sign it with GPG (``.prov``) and push
it to the OCI registry, signed with cosign too; upload the ``.tgz``,
the ``.prov`` and the merged ``index.yaml`` to the classic chart repository. Every check that can
refuse runs before the first push, so a refusal leaves every registry and repository as it was.

Deliberately not here: overwriting anything (a version is published once), or reading a key from
anywhere but the environment (``settings``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from tools.release import changelog, versions
from tools.release.charts import CHART
from tools.release.settings import ChartRepo, Registry, ReleaseSettings
from tools.release.signing import SignatureError, attest_sbom, check_cosign_key, run, sign_oci


class ReleaseError(RuntimeError):
    """The release was refused or failed; the message says which step and why."""


@dataclasses.dataclass(frozen=True)
class Tools:
    """The binaries a release runs."""

    docker: list[str]  # the docker client, with its --host
    helm: Path
    cosign: Path
    syft: Path
    crane: Path


@dataclasses.dataclass(frozen=True)
class Artifact:
    what: str
    where: str
    digest: str


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()


def check_tree(version: str, root: Path) -> str:
    """The release notes of ``version``, if the tree at ``root`` may be released as it; else refuse."""
    if not versions.is_release(version):
        raise ReleaseError(f"{version!r} is not a release number X.Y.Z")
    dirty = _git(root, "status", "--porcelain")
    if dirty:
        changed = ", ".join(line[3:] for line in dirty.splitlines()[:5])
        raise ReleaseError(f"the tree has uncommitted changes ({changed}); commit or stash them first")
    found = versions.version(root)
    if found != version:
        raise ReleaseError(f"HEAD is {found}, not v{version}: tag the commit (git tag -a v{version}) first")
    return changelog.read_notes(version, root / "CHANGELOG.md")


# ----------------------------------------------------------------------------- registries


def crane(tools: Tools, registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(tools.crane), *args]
    if registry.insecure:
        argv.append("--insecure")
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def oci_digest(tools: Tools, registry: Registry, reference: str) -> str | None:
    """The digest ``reference`` has in its registry; None when it does not exist."""
    done = crane(tools, registry, "digest", reference)
    if done.returncode == 0:
        return done.stdout.strip()
    if "MANIFEST_UNKNOWN" in done.stderr or "NAME_UNKNOWN" in done.stderr:
        return None
    reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
    raise ReleaseError(f"cannot read {reference} from the registry: {reason}")


# ----------------------------------------------------------------------------- chart repository


def repo_request(
    repo: ChartRepo, path: str, *, method: str = "GET", body: bytes | None = None
) -> bytes | None:
    """One authenticated request to the chart repository; None on 404; a clear error otherwise."""
    request = urllib.request.Request(f"{repo.url}/{path}", data=body, method=method)
    credentials = f"{repo.username}:{repo.password}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and method == "GET":
            return None
        if exc.code == 401:
            raise ReleaseError(
                f"the chart repository {repo.url} refused user {repo.username!r} (401): "
                "wrong user or password"
            ) from None
        if exc.code == 403:
            raise ReleaseError(
                f"the chart repository {repo.url} does not let {repo.username!r} {method} {path} (403)"
            ) from None
        raise ReleaseError(f"{method} {repo.url}/{path} answered {exc.code} {exc.reason}") from None
    except OSError as exc:
        raise ReleaseError(f"the chart repository {repo.url} cannot be reached: {exc}") from None


def check_publisher(repo: ChartRepo) -> None:
    """Refuse credentials that may read but not upload, before anything is pushed: an OPTIONS
    request needs the same authorisation as an upload and changes nothing."""
    try:
        repo_request(repo, "", method="OPTIONS")
    except ReleaseError as exc:
        if "(401)" in str(exc) or "(403)" in str(exc):
            raise ReleaseError(f"{exc}; a release needs the publisher's credentials") from None


def chart_versions(index: bytes | None) -> list[str]:
    """Every version of the chart that a repository's ``index.yaml`` lists, newest first as listed."""
    if not index:
        return []
    try:
        document = yaml.safe_load(index)
    except yaml.YAMLError as exc:
        raise ReleaseError(f"the chart repository's index.yaml is not YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("entries") or {}, dict):
        raise ReleaseError("the chart repository's index.yaml is not a Helm repository index (no entries)")
    entries = (document.get("entries") or {}).get("secrets-operator") or []
    return [str(entry.get("version")) for entry in entries if isinstance(entry, dict)]


# ----------------------------------------------------------------------------- the release


def existing(version: str, settings: ReleaseSettings, tools: Tools) -> list[str]:
    """Where ``version`` already exists (also proves every credential before anything is pushed)."""
    found = []
    image = f"{settings.registry.image}:{version}"
    for candidate in (image, *(f"{image}-{platform.split('/')[1]}" for platform in settings.platforms)):
        if oci_digest(tools, settings.registry, candidate) is not None:
            found.append(candidate)
    chart = f"{settings.registry.charts.removeprefix('oci://')}/secrets-operator:{version}"
    if oci_digest(tools, settings.registry, chart) is not None:
        found.append(f"oci://{chart}")
    if version in chart_versions(repo_request(settings.chart_repo, "index.yaml")):
        found.append(f"{settings.chart_repo.url}/index.yaml")
    if repo_request(settings.chart_repo, f"secrets-operator-{version}.tgz") is not None:
        found.append(f"{settings.chart_repo.url}/secrets-operator-{version}.tgz")
    return found


def release(
    version: str,
    settings: ReleaseSettings,
    tools: Tools,
    *,
    root: Path,
    workdir: Path,
    say: Callable[[str], None] = print,
) -> list[Artifact]:
    """Publish ``version`` everywhere, or refuse before changing anything."""
    started = time.monotonic()
    notes = check_tree(version, root)
    already = existing(version, settings, tools)
    if already:
        raise ReleaseError(f"{version} is already released ({', '.join(already)}); nothing was changed")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "notes.md").write_text(notes)
    build = versions.build_info(root)
    registry = settings.registry
    artifacts: list[Artifact] = []

    # Everything that can fail without the registry first: every build, the chart's GPG
    # signature, the cosign key and its password, the publisher's right to upload.
    references = {
        platform: f"{registry.image}:{version}-{platform.split('/')[1]}" for platform in settings.platforms
    }
    for platform, reference in references.items():
        say(f"building {reference} ({platform})")
        args = {**build.build_args(), **versions.platform_build_args(platform, settings.base_images)}
        argv = [*tools.docker, "build", "--network=host", "--tag", reference]
        for key, value in args.items():
            argv += ["--build-arg", f"{key}={value}"]
        _docker([*argv, str(root)], what=f"docker build for {platform}")
    try:
        archive, provenance = package_signed(version, settings, tools, workdir)
        check_cosign_key(settings.cosign, cosign=tools.cosign, workdir=workdir)
    except SignatureError as exc:
        raise ReleaseError(str(exc)) from None
    check_publisher(settings.chart_repo)
    already = existing(version, settings, tools)  # again: the builds took minutes
    if already:
        raise ReleaseError(f"{version} was released meanwhile ({', '.join(already)}); nothing was changed")

    per_platform: dict[str, str] = {}
    for platform, reference in references.items():
        _docker([*tools.docker, "push", reference], what=f"docker push {reference}")
        digest = oci_digest(tools, registry, reference)
        if digest is None:
            raise ReleaseError(f"{reference} is not in the registry after its push")
        per_platform[platform] = digest
        artifacts.append(Artifact(f"image {platform}", f"{registry.image}@{digest}", digest))

    index = f"{registry.image}:{version}"
    say(f"assembling the image index {index}")
    append = ["index", "append", "--tag", index]
    for digest in per_platform.values():
        append += ["--manifest", f"{registry.image}@{digest}"]
    done = crane(tools, registry, *append)
    if done.returncode != 0:
        raise ReleaseError(f"crane index append failed: {done.stderr.strip()[-500:]}")
    index_digest = oci_digest(tools, registry, index)
    if index_digest is None:
        raise ReleaseError(f"{index} is not in the registry after crane index append")
    artifacts.insert(0, Artifact("image index", index, index_digest))

    try:
        for platform, digest in per_platform.items():
            reference = f"{registry.image}@{digest}"
            sbom = workdir / f"sbom-{platform.split('/')[1]}.spdx.json"
            say(f"SBOM of {platform} ({sbom.name}) attached as a signed attestation")
            env = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}
            if registry.insecure:
                env["SYFT_REGISTRY_INSECURE_USE_HTTP"] = "true"
            run(
                [
                    tools.syft,
                    "scan",
                    f"registry:{reference}",
                    "--platform",
                    platform,
                    "-o",
                    f"spdx-json={sbom}",
                    "-q",
                ],
                what=f"syft of {reference}",
                env=env,
            )
            attest_sbom(
                reference,
                sbom,
                settings.cosign,
                cosign=tools.cosign,
                workdir=workdir,
                insecure=registry.insecure,
            )
            artifacts.append(Artifact(f"SBOM {platform} (SPDX, attestation)", reference, _sha256(sbom)))
        say(f"signing {index}@{index_digest} and every image in it")
        sign_oci(
            f"{registry.image}@{index_digest}",
            settings.cosign,
            cosign=tools.cosign,
            workdir=workdir,
            insecure=registry.insecure,
            annotations={"version": version},
            recursive=True,
        )

        artifacts += publish_chart(version, archive, provenance, settings, tools, workdir, say=say)
    except SignatureError as exc:
        raise ReleaseError(str(exc)) from None
    say(f"released {version} in {time.monotonic() - started:.0f} s")
    return artifacts


def _docker(argv: list[str], *, what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=_docker_env())
    if done.returncode != 0:
        raise ReleaseError(f"{what} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def _docker_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def package_signed(version: str, settings: ReleaseSettings, tools: Tools, workdir: Path) -> tuple[Path, Path]:
    """``helm package --sign``: the chart as ``version`` and its GPG provenance file."""
    gpg = settings.gpg
    argv: list[str | Path] = [
        tools.helm,
        "package",
        CHART,
        "--destination",
        workdir,
        "--version",
        version,
        "--app-version",
        version,
        "--sign",
        "--key",
        gpg.name,
        "--keyring",
        gpg.secring or "",
    ]
    if gpg.passphrase_file is not None:
        argv += ["--passphrase-file", gpg.passphrase_file]
    try:
        run(argv, what="helm package --sign")
    except SignatureError as exc:
        raise ReleaseError(str(exc)) from None
    archive = workdir / f"secrets-operator-{version}.tgz"
    provenance = archive.with_name(archive.name + ".prov")
    if not (archive.is_file() and provenance.is_file()):
        raise ReleaseError(f"helm package left no {archive.name} and {provenance.name}")
    return archive, provenance


def publish_chart(
    version: str,
    archive: Path,
    provenance: Path,
    settings: ReleaseSettings,
    tools: Tools,
    workdir: Path,
    *,
    say: Callable[[str], None],
) -> list[Artifact]:
    """The chart to the OCI registry (signed) and to the classic repository (with .prov and index)."""
    registry = settings.registry
    argv: list[str | Path] = [tools.helm, "push", archive, registry.charts]
    if registry.insecure:
        argv.append("--plain-http")
    output = run(argv, what=f"helm push {archive.name}")
    chart_ref = f"{registry.charts.removeprefix('oci://')}/secrets-operator"
    digest = oci_digest(tools, registry, f"{chart_ref}:{version}")
    if digest is None:
        raise ReleaseError(f"helm push said {output.strip()!r}, and {chart_ref}:{version} is not there")
    sign_oci(
        f"{chart_ref}@{digest}",
        settings.cosign,
        cosign=tools.cosign,
        workdir=workdir,
        insecure=registry.insecure,
        annotations={"version": version},
    )
    artifacts = [Artifact("chart (OCI, cosign-signed)", f"oci://{chart_ref}:{version}", digest)]

    repo = settings.chart_repo
    say(f"publishing the chart to {repo.url}")
    index_dir = workdir / f"index-{version}"  # this version's files only: the rest comes from the merge
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir()
    current = repo_request(repo, "index.yaml")
    merge = workdir / "index-before.yaml"
    merge.write_bytes(current or b"apiVersion: v1\nentries: {}\n")
    for file in (archive, provenance):
        (index_dir / file.name).write_bytes(file.read_bytes())
    run(
        [tools.helm, "repo", "index", index_dir, "--url", repo.url, "--merge", merge],
        what="helm repo index --merge",
    )
    merged = (index_dir / "index.yaml").read_bytes()
    if chart_versions(merged).count(version) != 1 or not set(chart_versions(current)) <= set(
        chart_versions(merged)
    ):
        raise ReleaseError(
            "the merged index.yaml lost a version or lists this one twice; nothing was uploaded"
        )
    for file in (archive, provenance):
        repo_request(repo, file.name, method="PUT", body=file.read_bytes())
        artifacts.append(
            Artifact(
                f"chart {file.suffix.lstrip('.')} (repository)", f"{repo.url}/{file.name}", _sha256(file)
            )
        )
    repo_request(repo, "index.yaml", method="PUT", body=merged)
    artifacts.append(
        Artifact(
            "chart index (repository)",
            f"{repo.url}/index.yaml",
            "sha256:" + hashlib.sha256(merged).hexdigest(),
        )
    )
    return artifacts


def report(artifacts: list[Artifact]) -> str:
    width = max(len(a.what) for a in artifacts)
    return "\n".join(f"{a.what:<{width}}  {a.where}  {a.digest}" for a in artifacts)


def as_json(artifacts: list[Artifact]) -> str:
    return json.dumps([dataclasses.asdict(a) for a in artifacts], indent=2)
