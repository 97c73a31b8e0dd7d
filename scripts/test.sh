#!/usr/bin/env bash
# The test command: install, start the real services the tests use, run every test.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash .ci/docker.sh          # real Docker engine + local debootstrap base image
bash .ci/registry.sh        # real OCI registry on 127.0.0.1:5000
bash .ci/security_tools.sh  # schemathesis and checkov, each in its own venv
bash .ci/vllm_contract.sh    # every vLLM argv the planner writes, checked against vLLM's parser
bash .ci/chromium.sh        # headless chromium: the plan report is opened and screenshotted
bash .ci/podman.sh          # podman kube play: the rendered chart's pods run here
bash .ci/clients.sh         # real OpenAI clients (openai, langchain-openai, lm-eval) against our server
bash .ci/supply_chain.sh    # offline signing and OCI tools: model-signing, skopeo, oras, cyclonedx
python3 -m pytest -q "$@"
# The tests that read the model's answers, again under the kernels another x86-64 CPU would pick:
# an answer only one kernel set gives then fails here, not on the next machine (tests/answers.py).
bash .ci/kernels.sh "$@"
