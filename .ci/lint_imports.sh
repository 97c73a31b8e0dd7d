#!/usr/bin/env bash
# The layering in pyproject.toml's [tool.importlinter]: runtime serving code imports nothing from
# packager, package time never imports torch, packager's sub-packages form layers with no circles.
# Reads the source tree only (nothing is imported or run), so it takes seconds.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import importlinter' 2>/dev/null || "$PYTHON" -m pip install --quiet "import-linter>=2.1"
# This checkout's packages, whatever an editable install elsewhere points at.
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" lint-imports --config pyproject.toml
