#!/usr/bin/env bash
# vLLM contract: every `vllm serve` argv we can produce parses and validates in
# vLLM 0.33.0's own parser.
#
# 1. snapshot check (no vllm): the hand-written cases and every vLLM profile the
#    planner offers for manifests/ are checked against
#    packager/vllm/data/serve_args-0.33.0.json.
# 2. real check: the same argvs through vLLM's real parser +
#    validate_parsed_serve_args, in a separate venv (torch CPU + vllm --no-deps +
#    its import-time needs), plus a drift check of the snapshot against it.
#    Measured on the project's CI machine kind (2 cores, 2026-11-26): a fresh
#    venv + install 102 s (torch 23 s from the local CPU wheel, vllm 14 s,
#    deps 44 s), real check of 183 argvs 8-13 s; whole script 111 s. That fits
#    the ~30 min CI budget, so it runs by default.
#    VLLM_CONTRACT=snapshot skips it (e.g. on a runner without the local CPU
#    torch wheel, where pip would fetch a multi-GB CUDA build).
#
# Env: VLLM_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/packager/venv-vllm; reused when it holds
# vllm==0.33.0), VLLM_CONTRACT=real|snapshot (default real), PYTHON (default python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="$("$PYTHON" -c 'from packager.vllm import VLLM_VERSION; print(VLLM_VERSION)')"
VENV="${VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/packager/venv-vllm}"
MODE="${VLLM_CONTRACT:-real}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "== vLLM $VLLM_VERSION contract ($MODE)"
"$PYTHON" -m tools.vllm_planned_cases --out "$TMP/planned.json"
CASES=(tests/vllm/argv_cases.json "$TMP/planned.json")

echo "== snapshot check"
rc=0
"$PYTHON" -m packager.vllm.contract "${CASES[@]}" >"$TMP/snapshot.out" || rc=$?
grep -v '^ok ' "$TMP/snapshot.out" || true
[[ $rc -eq 0 ]] || exit "$rc"

if [[ "$MODE" != "real" ]]; then
  echo "== real check skipped (VLLM_CONTRACT=$MODE)"
  exit 0
fi

have_vllm() {
  [[ -x "$VENV/bin/python" ]] && \
    [[ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm"))' 2>/dev/null)" == "$VLLM_VERSION" ]]
}

if ! have_vllm; then
  echo "== creating $VENV (torch CPU, vllm==$VLLM_VERSION --no-deps, import-time needs)"
  start=$SECONDS
  "$PYTHON" -m venv "$VENV"
  PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
  quiet() { grep -v -e '^WARNING: Location' || true; }
  "${PIP[@]}" torch==2.13.0 2>&1 | quiet
  "${PIP[@]}" --no-deps "vllm==$VLLM_VERSION" 2>&1 | quiet
  # What `import vllm` and its CLI parser need (docs: ENVIRONMENT.md); vLLM's
  # full requirement set (CUDA kernels, torch 2.14) is neither needed nor installable here.
  "${PIP[@]}" regex cachetools psutil sentencepiece numpy requests tqdm blake3 py-cpuinfo \
    'transformers<5.21' huggingface_hub tokenizers safetensors protobuf 'fastapi[standard]<0.137' \
    starlette aiohttp openai pydantic orjson prometheus_client pillow \
    prometheus-fastapi-instrumentator tiktoken partial-json-parser jsonschema pyzmq msgspec \
    pyyaml einops cloudpickle watchfiles python-json-logger pybase64 cbor2 ijson setproctitle \
    filelock sympy openai_harmony networkx xgrammar llguidance model-hosting-container-standards 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'requires .* which is not installed' \
              -e 'but you have .* which is incompatible' -e 'dependency conflicts' || true
  have_vllm || { echo "vllm==$VLLM_VERSION did not install into $VENV" >&2; exit 1; }
  echo "venv ready in $((SECONDS - start)) s"
fi

# vLLM's build_app registers the SageMaker routes (/invocations, /ping) through this package;
# tests/foundation/test_vllm_api_key.py builds that app (a venv made before it joined the list gets it now).
if ! "$VENV/bin/python" -c 'import model_hosting_container_standards' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check model-hosting-container-standards 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'requires .* which is not installed' \
              -e 'but you have .* which is incompatible' -e 'dependency conflicts' || true
fi

echo "== real check (vLLM's parser + validate_parsed_serve_args, snapshot drift)"
start=$SECONDS
rc=0
VLLM_TARGET_DEVICE=cpu PYTHONPATH="$REPO" "$VENV/bin/python" -m packager.vllm.contract --real "${CASES[@]}" \
  >"$TMP/real.out" 2>"$TMP/vllm.log" || rc=$?
grep -v '^ok ' "$TMP/real.out" || true
if [[ $rc -ne 0 ]]; then
  tail -n 20 "$TMP/vllm.log" >&2
  exit "$rc"
fi
echo "real check done in $((SECONDS - start)) s"
