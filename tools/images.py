"""The root filesystems of the Python base images, made from Debian's packages for amd64 and arm64.

No image registry can be reached, so the stand-in for ``python:3.13-slim-trixie`` is built here:
mmdebstrap makes a minimal Debian trixie with python3 (arm64 under qemu-user-static emulation),
and ``tools.node.build_base_image`` turns the tarball into an image on a docker daemon. A tarball
is cached for the ISO week, since arm64 takes minutes under emulation.

Standard library only (like ``tools.binaries``): ``.ci/run`` makes both tarballs in the background
at the start of a run, ``python -m tools.images``, before anything else is installed.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tools.binaries import CACHE, _locked

#: The base image's Debian: the release the default base (python:3.13-slim-trixie) is made of,
#: so the tests run the Python minor that users get.
DEBIAN_SUITE = "trixie"
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian trixie main",
    "deb http://deb.debian.org/debian-security trixie-security main",
)
#: The host's CA bundle: on this machine TLS to the package registries is only trusted with it,
#: so the base image built here carries it (the Dockerfile itself never does).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageError(RuntimeError):
    """A base image's root filesystem could not be made; the message says which step failed."""


def _say(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _run(*argv: str, what: str, timeout: float = 600) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise ImageError(f"{what} failed ({' '.join(argv)}):\n{(done.stdout + done.stderr)[-4000:]}")


def apt_install(*packages: str) -> None:
    """Install Debian packages, waiting for another apt (a parallel session) to finish first."""
    _say(f"installing {' '.join(packages)} from Debian's packages")
    lock = ("-o", "DPkg::Lock::Timeout=900")
    _run("apt-get", *lock, "update", "-qq", what="apt-get update")
    _run(
        "apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *packages, what="apt-get install"
    )


#: What arm64 builds need on this amd64 machine: user-mode emulation registered with binfmt_misc
#: (the F flag: the kernel keeps the interpreter open, so it works inside chroots and containers).
EMULATION_PACKAGES = ("qemu-user-static", "binfmt-support", "arch-test")
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def ensure_emulation() -> None:
    """Make arm64 binaries run here (Debian's qemu-user-static), or fail saying what is missing."""
    if (BINFMT / "qemu-aarch64").is_file() and "enabled" in (BINFMT / "qemu-aarch64").read_text():
        return
    missing = [package for package in EMULATION_PACKAGES if not Path(f"/usr/share/doc/{package}").is_dir()]
    if missing:
        apt_install(*missing)
    if not (BINFMT / "register").exists():
        _run("mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT), what="mounting binfmt_misc")
    _run("update-binfmts", "--enable", "qemu-aarch64", what="update-binfmts --enable qemu-aarch64")
    if not (BINFMT / "qemu-aarch64").is_file():
        raise ImageError("qemu-aarch64 is not registered with binfmt_misc after update-binfmts --enable")


def base_tarball(arch: str) -> Path:
    """The root filesystem of the base image, cached for the current ISO week (security updates
    arrive within a week; arm64 takes minutes under emulation, so it is not made for every run)."""
    year, week, _ = datetime.date.today().isocalendar()
    directory = CACHE / "base-images"
    tarball = directory / f"{DEBIAN_SUITE}-{arch}-{year}w{week:02d}.tar"
    if tarball.is_file():
        return tarball
    directory.mkdir(parents=True, exist_ok=True)
    # CI's background run and the e2e session may both want it: one makes it, the other waits.
    with _locked(directory / f".{arch}.lock", what=f"the {arch} base image"):
        if not tarball.is_file():
            _make_tarball(arch, tarball)
    return tarball


def _make_tarball(arch: str, tarball: Path) -> None:
    directory = tarball.parent
    for stale in directory.glob(f"{DEBIAN_SUITE}-{arch}-*.tar"):
        stale.unlink()
    _say(f"making the {arch} base image's root filesystem (arm64: minutes, under emulation)")
    if arch != "amd64":
        ensure_emulation()
    hooks = [
        f'cp {HOST_CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"',
        'chroot "$1" python3 -m venv /opt/python',
        'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    ]
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        "--format=tar",
        f"--arch={arch}",
        "--include=python3,python3-venv,ca-certificates",
    ]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    partial = tarball.with_name(tarball.name + ".partial")
    _run(
        *argv,
        DEBIAN_SUITE,
        str(partial),
        *DEBIAN_SOURCES,
        what=f"mmdebstrap of the {arch} base image",
        timeout=1800,
    )
    partial.rename(tarball)


def main() -> int:
    """``python -m tools.images``: make (or find cached) the amd64 and arm64 root filesystems."""
    try:
        if shutil.which("mmdebstrap") is None:
            apt_install("mmdebstrap")
        for arch in ("amd64", "arm64"):
            print(f"{arch}: {base_tarball(arch)}")
    except ImageError as exc:
        _say(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
