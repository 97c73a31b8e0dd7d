"""What this x86 CPU's instructions allow, read from /proc/cpuinfo and oneDNN's ISA cap (no torch): one rule,
imported by the planner (packager.detect) and by the runtime's matmul choice (runtimes.fallback.linear)."""

from __future__ import annotations

import os

# Flags that give a CPU native bf16 matmuls: AVX512-BF16's vdpbf16ps (two bf16 products per fp32 lane)
# or AMX tiles. Without them torch emulates bf16 and gains nothing over fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# The fallback runtime's decode rows per matmul up to which it multiplies its int4/int8 weights directly; past
# it, where oneDNN multiplies bf16 natively, a bf16 copy (runtimes/fallback/linear.py; the planner's CPU compute
# roofline switches at the same row count). SmolLM2's four layer matrices at 2 threads on this project's EPYC:
# 3 rows int4 177 vs bf16 179 us, 4 rows 370 vs 249 us; the int8 LM head at 4 rows 3.9 vs 3.0 ms, 16 rows 12.8 vs 4.7.
BF16_DIRECT_ROWS = 3
# Elsewhere the fp32 copy takes over later: measured at 9, 16 and 32 rows it beats the int4 kernel by 10-25 %.
INT8_DIRECT_ROWS = 8



def direct_rows(bf16: bool) -> int:
    """Decode rows up to which the int4/int8 weights are multiplied directly, with (``bf16``) or without a bf16 copy."""
    return BF16_DIRECT_ROWS if bf16 else INT8_DIRECT_ROWS


# ONEDNN_MAX_CPU_ISA values under which oneDNN still has a native bf16 dot product (its cpu_isa_t names).
# Any other value (AVX2, AVX512_CORE, AVX512_CORE_VNNI...) holds oneDNN to emulated bf16.
_ONEDNN_BF16_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX",
                     "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """The CPU has native bf16 matmuls (whatever oneDNN is allowed to use)."""
    return bool(cpu_flags(cpuinfo) & set(NATIVE_BF16_FLAGS))


def onednn_native_bf16(cpuinfo: str = "/proc/cpuinfo", env: dict | None = None) -> bool:
    """Native bf16 and oneDNN allowed to use it (an ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 forbids it)."""
    cap = (os.environ if env is None else env).get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return native_bf16(cpuinfo) and (not cap or cap in _ONEDNN_BF16_CAPS)
