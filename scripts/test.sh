#!/usr/bin/env bash
# The test command: install, start the real services the tests use, run every test.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash .ci/setup.sh            # Docker engine, registry, podman, chromium, signing tools, clients, vLLM's parser
bash .ci/lint_imports.sh     # the layering in pyproject.toml: no circles, no torch at package time
python3 -m pytest -q --durations=25 "$@"   # the slowest 25 printed: where CI time goes
# The tests that read the model's answers, again under the kernels another x86-64 CPU would pick:
# an answer only one kernel set gives then fails here, not on the next machine (tests/answers.py).
bash .ci/kernels.sh "$@"
