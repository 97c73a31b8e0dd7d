"""GnuPG in throwaway home directories: the user's ~/.gnupg is never read or written.

Image signatures (skopeo --sign-by) and Helm provenance both speak OpenPGP; keys live as
exported files in the keys directory and are imported into a temp homedir for each use.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from packager.errors import UserError


def gpg_binary() -> str:
    gpg = shutil.which("gpg")
    if not gpg:
        raise UserError("gpg is not installed", hint="apt-get install gnupg (CI: bash .ci/supply_chain.sh)")
    return gpg


def run(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run([gpg_binary(), "--batch", "--no-tty", "--homedir", str(home), *args],
                          input=stdin, capture_output=True)
    if proc.returncode != 0:
        # gpg's stderr names the key and the failure; it never holds secret key material.
        raise RuntimeError(f"gpg {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-800:]}")
    return proc.stdout


@contextlib.contextmanager
def temp_home() -> Iterator[Path]:
    """A private GNUPGHOME (mode 0700) removed afterwards, agent included."""
    # Short path: gpg-agent's socket path must fit in sun_path (108 bytes).
    home = Path(tempfile.mkdtemp(prefix="pkgpg-", dir="/tmp"))
    os.chmod(home, 0o700)
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def generate(home: Path, uid: str) -> str:
    """An RSA-3072 signing key without passphrase; returns its fingerprint.

    RSA, not ed25519: Helm's provenance code (golang.org/x/crypto/openpgp) reads RSA keys only.
    """
    run(home, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, "rsa3072", "sign", "never")
    return fingerprints(home)[-1]


def fingerprints(home: Path) -> list[str]:
    out = run(home, "--with-colons", "--fingerprint", "--list-keys").decode()
    fprs, primary = [], False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            primary = True
        elif fields[0] == "fpr" and primary:
            fprs.append(fields[9])
            primary = False
    return fprs


def import_keys(home: Path, *files: Path) -> list[str]:
    for f in files:
        run(home, "--import", str(f))
    return fingerprints(home)
