"""The llama-server peer is built for the CPU it runs on, from flags recorded in /proc/cpuinfo, never with AMX.

tests/fixtures/cpuinfo/amd-epyc-2core.txt: the first processor block of /proc/cpuinfo on the
2-core AMD EPYC (Zen 4) machine the bench results were measured on, recorded 2026-12-07."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from llama_server import cmake_flags, cpuinfo_flags  # noqa: E402

EPYC = (ROOT / "tests/fixtures/cpuinfo/amd-epyc-2core.txt").read_text()


def opts(flags: set[str]) -> dict[str, str]:
    return dict(f[2:].split("=", 1) for f in cmake_flags(flags))


def test_the_recorded_epyc_gets_avx512_vnni_bf16_and_no_native_no_amx():
    o = opts(cpuinfo_flags(EPYC))
    assert {k: o[k] for k in ("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_AVX512", "GGML_AVX512_VNNI",
                              "GGML_AVX512_BF16", "GGML_AVX512_VBMI")} == dict.fromkeys(
        ("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16",
         "GGML_AVX512_VBMI"), "ON")
    # Zen 4 has the AVX-512 form of VNNI, not the VEX one (avx_vnni): that stays off.
    assert o["GGML_AVX_VNNI"] == "OFF"
    assert o["GGML_NATIVE"] == "OFF" and o["LLAMA_CURL"] == "OFF"
    assert all(o[k] == "OFF" for k in o if "AMX" in k) and {"GGML_AMX_TILE", "GGML_AMX_INT8"} <= set(o)


def test_amx_stays_off_even_when_the_cpu_lists_it():
    # ldtilecfg faults where the OS does not grant AMX state, so the flag alone must not turn it on.
    o = opts(cpuinfo_flags(EPYC) | {"amx_tile", "amx_int8", "amx_bf16"})
    assert all(o[k] == "OFF" for k in o if "AMX" in k)


def test_avx512_needs_every_subset_it_compiles_for():
    flags = cpuinfo_flags(EPYC) - {"avx512bw"}
    assert opts(flags)["GGML_AVX512"] == "OFF" and opts(flags)["GGML_AVX2"] == "ON"


def test_a_cpuinfo_without_flags_is_refused():
    with pytest.raises(ValueError, match="flags"):
        cpuinfo_flags("processor\t: 0\nmodel name\t: something\n")
