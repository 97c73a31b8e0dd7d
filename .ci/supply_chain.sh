#!/usr/bin/env bash
# The offline supply-chain tools the bundle/sign/verify tests use for real:
#   skopeo (image copy, GPG simple signing), gnupg, openssl      (Debian packages)
#   model-signing + pyopenssl, oras, cyclonedx-bom               (PyPI, into the project's Python)
# They go into the project's environment: their pins do not conflict with the project's
# (checked with `pip install --dry-run`), and `packager bundle` imports oras and model_signing.
# Idempotent: a second run checks versions and installs nothing.
set -euo pipefail
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

missing=()
for tool in skopeo:skopeo gpg:gnupg openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  source "$(dirname "$0")/apt.sh"
  apt_install "${missing[@]}"
fi

has() {  # NAME==PREFIX: installed at a version starting with the pin?
  "$PY" -c "import sys, importlib.metadata as m; n, v = sys.argv[1].split('=='); sys.exit(0 if m.version(n).startswith(v.rstrip('*')) else 1)" "$1" 2>/dev/null
}
want=()
for req in "model-signing==1.1.*" "pyopenssl==26.*" "oras==0.2.*" "cyclonedx-bom==7.*"; do
  has "$req" || want+=("$req")
done
if [ "${#want[@]}" -gt 0 ]; then
  "$PY" -m pip install -q "${want[@]}"
fi
echo "supply chain: $(skopeo --version), $(gpg --version | head -1)," \
     "$("$PY" -c 'import importlib.metadata as m; print(", ".join(f"{n} {m.version(n)}" for n in ("model-signing", "oras", "cyclonedx-bom")))')"
