#!/usr/bin/env bash
# Real OpenAI clients for tests/clients: the openai SDK (the test extra) and
# langchain-openai in the project's environment; lm-eval, whose pins are heavy,
# in its own venv (it sees the project's torch and transformers through
# --system-site-packages, so nothing large is installed twice). Idempotent:
# a second run checks versions and installs nothing. Tests find lm-eval at
# $PACKAGER_LM_EVAL (default ${XDG_CACHE_HOME:-$HOME/.cache}/packager/lm-eval/bin/lm_eval).
set -euo pipefail
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
has() {  # REQUIREMENT-PREFIX PYTHON: is NAME installed at a version starting with the pin?
  "$2" -c "import sys, importlib.metadata as m; n, v = sys.argv[1].split('=='); sys.exit(0 if m.version(n).startswith(v.rstrip('*')) else 1)" "$1" 2>/dev/null
}
has "langchain-openai==1.*" "$PY" || "$PY" -m pip install -q "langchain-openai==1.*"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/packager/lm-eval"
if ! [ -x "$VENV/bin/lm_eval" ] || ! has "lm_eval==0.4.*" "$VENV/bin/python"; then
  if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then  # Debian's python3 splits venv out
    source "$(dirname "$0")/apt.sh"
    apt_install python3-venv
  fi
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q "lm_eval[api]==0.4.*"
fi
echo "clients: langchain-openai $("$PY" -c 'import importlib.metadata as m; print(m.version("langchain-openai"))'), lm-eval $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("lm_eval"))') in $VENV"
