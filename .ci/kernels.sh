#!/usr/bin/env bash
# The model_output tests (those that read the model's answers) under other CPU kernels: torch's AVX2
# kernels with oneDNN held to AVX2, and, where the CPU has AVX-512, oneDNN held to AVX512_CORE (no VNNI,
# BF16 or AMX). Greedy answers that only one kernel set gives fail here on any machine.
#   bash .ci/kernels.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
sel=(-m "model_output and not docker" -p no:cacheprovider)
echo "kernels: model_output under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python3 -m pytest -q "${sel[@]}" "$@"
if grep -qw avx512f /proc/cpuinfo; then
  echo "kernels: model_output under ONEDNN_MAX_CPU_ISA=AVX512_CORE"
  ONEDNN_MAX_CPU_ISA=AVX512_CORE python3 -m pytest -q "${sel[@]}" "$@"
fi
