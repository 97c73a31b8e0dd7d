#!/usr/bin/env bash
# Everything the tests use, installed and started, in as little wall time as a new machine allows
# (as root, idempotent): one apt transaction for every Debian package the .ci scripts would each
# install, and the tool venvs (their own environments) built in the background while the Docker
# engine, the registry and podman come up. Each script still checks and installs what it needs alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/apt.sh

pkgs=(docker.io debootstrap docker-registry curl chromium podman catatonit slirp4netns skopeo gnupg openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
bash .ci/security_tools.sh >"$logs/security_tools.log" 2>&1 &  # schemathesis and checkov venvs
security=$!
bash .ci/vllm_contract.sh >"$logs/vllm_contract.log" 2>&1 &     # vLLM's own parser on every argv we write
vllm=$!

bash .ci/docker.sh          # real Docker engine + local debootstrap base image
bash .ci/registry.sh        # real OCI registry on 127.0.0.1:5000
bash .ci/chromium.sh        # headless chromium: the plan report is opened and screenshotted
bash .ci/podman.sh          # podman kube play: the rendered chart's pods run here
bash .ci/supply_chain.sh    # offline signing and OCI tools: model-signing, skopeo, oras, cyclonedx
bash .ci/clients.sh         # real OpenAI clients (openai, langchain-openai, lm-eval) against our server
bash .ci/bench_embeddings.sh  # sentence-transformers in its own venv: bench/embeddings.py's baseline

rc=0
for job in security_tools:$security vllm_contract:$vllm; do
  name="${job%%:*}"
  if wait "${job#*:}"; then
    tail -3 "$logs/$name.log"
  else
    echo "setup: .ci/$name.sh failed; its log follows" >&2
    cat "$logs/$name.log" >&2
    rc=1
  fi
done
exit "$rc"
