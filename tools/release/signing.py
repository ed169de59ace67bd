"""Keys and signatures: cosign for the image and the OCI chart, GPG for the chart's ``.prov``.

Everything is signed with keys, offline: keyless signing needs the internet (Fulcio, Rekor), and
no transparency log can be reached here, so cosign is given an empty signing config when signing
and told to skip the log when verifying. A verification that fails raises ``SignatureError``
with cosign's or Helm's own reason.

``make_cosign_key`` and ``make_gpg_key`` make throw-away keys for the tests and for a developer's
dry run; a real release reads its keys from CI secrets (see docs/releasing.md).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


class SignatureError(RuntimeError):
    """Signing failed, or a signature is missing, wrong or for other content."""


def run(
    argv: Sequence[str | Path],
    *,
    what: str,
    env: dict[str, str] | None = None,
    stdin: str = "",
    timeout: float = 1800,
) -> str:
    """Run a tool; its stdout, or a one-paragraph error naming ``what`` failed and why."""
    try:
        done = subprocess.run(
            [str(arg) for arg in argv],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise SignatureError(f"{what}: still running after {timeout:.0f} s, stopped") from None
    except OSError as exc:
        raise SignatureError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip()).splitlines()
        reason = next((line for line in reversed(output) if line.strip()), "no output")
        raise SignatureError(f"{what}: {reason}")
    return done.stdout


@dataclasses.dataclass(frozen=True)
class CosignKey:
    """A cosign key pair; ``password`` unlocks the private key (cosign reads COSIGN_PASSWORD)."""

    private: Path | None
    public: Path
    password: str = dataclasses.field(default="", repr=False)


def make_cosign_key(directory: Path, password: str, *, cosign: Path) -> CosignKey:
    directory.mkdir(parents=True, exist_ok=True)
    run(
        [cosign, "generate-key-pair", "--output-key-prefix", directory / "cosign"],
        what="cosign generate-key-pair",
        env={"COSIGN_PASSWORD": password},
    )
    return CosignKey(private=directory / "cosign.key", public=directory / "cosign.pub", password=password)


def _offline_signing_config(cosign: Path, directory: Path) -> Path:
    """A signing config with no services: sign with the key alone, upload to no log."""
    path = directory / "offline-signing-config.json"
    if not path.is_file():
        run([cosign, "signing-config", "create", "--out", path], what="cosign signing-config create")
    return path


def check_cosign_key(key: CosignKey, *, cosign: Path, workdir: Path) -> None:
    """Sign and verify a local blob: a wrong password or a key of another pair fails here, not
    after the images were pushed."""
    if key.private is None:
        raise SignatureError("no cosign private key to sign with")
    blob = workdir / "cosign-check.txt"
    blob.write_text("secrets-operator release key check\n")
    bundle = workdir / "cosign-check.bundle"
    run(
        [
            cosign,
            "sign-blob",
            "--yes",
            "--key",
            key.private,
            "--signing-config",
            _offline_signing_config(cosign, workdir),
            "--bundle",
            bundle,
            blob,
        ],
        what="the cosign key does not sign (wrong COSIGN_PASSWORD?)",
        env={"COSIGN_PASSWORD": key.password},
    )
    if key.public.is_file():
        run(
            [
                cosign,
                "verify-blob",
                "--key",
                key.public,
                "--bundle",
                bundle,
                "--insecure-ignore-tlog=true",
                blob,
            ],
            what="the cosign key does not match COSIGN_PUBLIC_KEY",
        )


def _cosign_writes(
    verb: list[str | Path], reference: str, key: CosignKey, *, cosign: Path, workdir: Path, insecure: bool
) -> None:
    """``cosign <verb...> REFERENCE`` with the key and no transparency log: a signature or an
    attestation stored in the registry beside ``reference``."""
    if key.private is None:
        raise SignatureError("no cosign private key to sign with")
    argv: list[str | Path] = [cosign, *verb, "--yes", "--key", key.private]
    argv += ["--signing-config", _offline_signing_config(cosign, workdir)]
    if insecure:
        argv.append("--allow-http-registry")
    run([*argv, reference], what=f"cosign {verb[0]} {reference}", env={"COSIGN_PASSWORD": key.password})


def _annotations(annotations: dict[str, str]) -> list[str | Path]:
    return [arg for key, value in sorted(annotations.items()) for arg in ("-a", f"{key}={value}")]


def sign_oci(
    reference: str,
    key: CosignKey,
    *,
    cosign: Path,
    workdir: Path,
    insecure: bool,
    annotations: dict[str, str],
    recursive: bool = False,
) -> None:
    """Sign ``reference`` (by digest) in its registry; ``recursive``: every image of an index too.

    ``annotations`` are signed with it: the release signs ``version``, so that a signed image of
    one version pushed under another version's tag does not verify as that version.
    """
    verb: list[str | Path] = ["sign", "--recursive"] if recursive else ["sign"]
    verb += _annotations(annotations)
    _cosign_writes(verb, reference, key, cosign=cosign, workdir=workdir, insecure=insecure)


def attest_sbom(
    reference: str, sbom: Path, key: CosignKey, *, cosign: Path, workdir: Path, insecure: bool
) -> None:
    """Attach ``sbom`` (SPDX JSON) to ``reference`` as a signed in-toto attestation."""
    verb: list[str | Path] = ["attest", "--type", "spdxjson", "--predicate", sbom]
    _cosign_writes(verb, reference, key, cosign=cosign, workdir=workdir, insecure=insecure)


def verify_oci(
    reference: str,
    public: Path,
    *,
    cosign: Path,
    insecure: bool,
    annotations: dict[str, str] | None = None,
    attestation: str = "",
) -> None:
    """Refuse ``reference`` unless ``public``'s key signed exactly its content (or its attestation),
    with every one of ``annotations``."""
    argv: list[str | Path] = [
        cosign,
        "verify-attestation" if attestation else "verify",
        "--key",
        public,
        "--insecure-ignore-tlog=true",
        "--output",
        "json",
    ]
    if attestation:
        argv += ["--type", attestation]
    argv += _annotations(annotations or {})
    if insecure:
        argv.append("--allow-http-registry")
    run([*argv, reference], what=f"the signature of {reference} does not verify")


@dataclasses.dataclass(frozen=True)
class GpgKey:
    """A GPG key as Helm wants it: its name, a legacy secret keyring to sign, a public one to verify."""

    name: str
    secring: Path | None
    pubring: Path
    passphrase_file: Path | None = None


def make_gpg_key(home: Path, name: str, *, passphrase: str = "") -> GpgKey:
    """A fresh RSA signing key in its own GNUPGHOME, exported the way ``helm package --sign`` reads it."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase]
    run([*gpg, "--quick-gen-key", name, "rsa3072", "sign", "never"], what="gpg --quick-gen-key", env=env)
    secring, pubring = home / "secring.gpg", home / "pubring.gpg"
    for path, export in ((secring, "--export-secret-keys"), (pubring, "--export")):
        path.write_bytes(
            subprocess.run([*gpg, export, name], capture_output=True, env=env, check=True).stdout
        )
    secring.chmod(0o600)
    # The agent gpg started for the key would outlive the test or the dry run.
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)
    passphrase_file = None
    if passphrase:
        passphrase_file = home / "passphrase"
        passphrase_file.write_text(passphrase)
        passphrase_file.chmod(0o600)
    return GpgKey(name=name, secring=secring, pubring=pubring, passphrase_file=passphrase_file)
