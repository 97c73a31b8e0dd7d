#!/usr/bin/env bash
# sentence-transformers for bench/embeddings.py's baseline, in a venv of its own (it sees the project's torch
# and transformers through --system-site-packages, so nothing large is installed twice; its own pins stay
# out of the project's environment). Idempotent. The bench finds it at
# ${XDG_CACHE_HOME:-$HOME/.cache}/packager/bench-st/bin/python (or --st-python).
set -euo pipefail
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/packager/bench-st"
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then  # Debian's python3 splits venv out
    source "$(dirname "$0")/apt.sh"
    apt_install python3-venv
  fi
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q "sentence-transformers==6.*"
fi
echo "bench-st: sentence-transformers $("$VENV/bin/python" -c 'import sentence_transformers as s; print(s.__version__)') in $VENV"
