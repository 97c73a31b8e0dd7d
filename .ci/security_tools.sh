#!/usr/bin/env bash
# The security test tools, each in its own venv so their pins never move the
# project's packages: schemathesis (hostile-input suite) and checkov (chart
# policy). Idempotent; tests find them under $PACKAGER_TOOLS (default ${XDG_CACHE_HOME:-$HOME/.cache}/packager/tools).
set -euo pipefail
TOOLS="${PACKAGER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/packager/tools}"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
mkdir -p "$TOOLS"
if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then  # Debian's python3 splits venv out
  source "$(dirname "$0")/apt.sh"
  apt_install python3-venv
fi
tool() {  # NAME REQUIREMENT
  local venv="$TOOLS/$1"
  if [ -x "$venv/bin/$1" ] && "$venv/bin/pip" show -q "$1" >/dev/null 2>&1 \
     && "$venv/bin/python" -c "import sys, importlib.metadata as m; r = sys.argv[1]; v = m.version(r.split('==')[0]); sys.exit(0 if v.startswith(r.split('==')[1].rstrip('*')) else 1)" "$2"; then
    return
  fi
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q "$2"
}
tool schemathesis "schemathesis==4.32.*"
tool checkov "checkov==3.3.30"
echo "security tools in $TOOLS: $("$TOOLS/schemathesis/bin/schemathesis" --version | head -1), checkov $("$TOOLS/checkov/bin/checkov" --version)"
