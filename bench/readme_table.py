"""The README's table of measured numbers, generated from bench/results/*.json.

    python bench/readme_table.py          # rewrite the block in README.md
    python bench/readme_table.py --check  # exit 1 when README.md differs (a test runs this)

Nothing in the block is typed by hand: each row names the result file it
comes from, and the file names the commit, CPU and load it was measured at.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _at(d: dict) -> str:
    bits = [d.get("commit"), d.get("cpu_model")]
    return ", ".join(str(b) for b in bits if b) or "commit not recorded"


def rows() -> list[tuple[str, str, str]]:
    out = []
    cli = _load("cli_latency")
    out.append(("`packager profiles` on the default",
                f"{cli['profiles_table_s'] * 1000:.0f} ms ({cli['ratio_table']:.1f} x `python -c pass`)", "cli_latency"))
    out += _throughput_rows(_load("runtime_throughput"))
    pc = _load("prefix_cache")
    out.append((f"prefix caching, {pc['requests']} requests sharing a {pc['prompt_tokens']}-token prompt",
                f"time to first token {pc['ttft_with_cache_s'] * 1000:.0f} ms vs {pc['ttft_without_cache_s'] * 1000:.0f} ms "
                f"without: {pc['ratio']:.1f} x (at {_at(pc)})", "prefix_cache"))
    qq = _load("quantization_quality")
    if "auto" in qq:
        a = qq["auto"]
        out.append(("CPU weights: default (int4 where lossless, else int8) vs fp32",
                    f"{a['engine_decode_tokens_per_s']:.0f} vs {qq['fp32']['engine_decode_tokens_per_s']:.0f} tok/s at "
                    f"one request; greedy tokens identical to fp32 until divergence {a['token_agreement_until_divergence']:.0%}; "
                    f"facts kept {a['facts_kept']}/{qq['facts_total']} (fp32: {qq['fp32']['facts_kept']}) (at {_at(qq)})",
                    "quantization_quality"))
    im = _load("image_build")
    out.append(("CPU image: cold build / code-only rebuild",
                f"{im['cold_build_s']:.0f} s / {im['code_change_rebuild_s']:.2f} s ({im['rebuild_over_cold']:.3f} x cold)",
                "image_build"))
    out.append(("CPU image: start to ready",
                f"{im['start_to_ready_s']:.1f} s (weights read from disk: {im['weights_read_from_disk_s']:.2f} s)", "image_build"))
    modes = im.get("weights_modes") or {}
    if {"baked", "volume", "oci"} <= set(modes):
        b, v, o = modes["baked"], modes["volume"], modes["oci"]
        art = o["weights_artifact"]
        out.append(("CPU image by weights mode (baked / volume / oci)",
                    f"cold {b['cold_build_s']:.0f} / {v['cold_build_s']:.0f} / {o['cold_build_s']:.0f} s; pushed after a "
                    f"code-only change {b['code_change_pushed_bytes'] / 2**20:.1f} MiB "
                    f"({b['code_change_pushed_over_baked_image']:.2%} of the baked image); start to ready "
                    f"{b['start_to_ready_s']:.1f} / {v['start_to_ready_s']:.1f} / {o['start_to_ready_s']:.1f} s; oci weights "
                    f"artifact {art['bytes'] / 2**20:.0f} MiB uploaded once, {art['second_push_uploaded_bytes']} bytes the "
                    f"second time; bundle import {o['bundle_import_s']:.1f} s (at {_at(im)})", "image_build"))
    if (RESULTS / "embeddings.json").exists():
        em = _load("embeddings")
        per = em["embeddings_per_s"]
        out.append((f"embeddings, {em['sentences']} short sentences (all-MiniLM-L6-v2)",
                    f"{per['float32']:.0f} / s fp32, {per['bfloat16']:.0f} / s bf16 matmuls through the server: "
                    f"{em['ratio_float32']:.2f} x / {em['ratio_bfloat16']:.2f} x sentence-transformers' `encode` in-process "
                    f"({per['sentence_transformers']:.0f} / s); best rounds {em['best_round_ratio_float32']:.2f} x / "
                    f"{em['best_round_ratio_bfloat16']:.2f} x; min cosine to it "
                    f"{min(em['min_cosine_to_sentence_transformers'].values()):.5f}; {_load_note(em)} "
                    f"(at {_at(em)})", "embeddings"))
    sf = _load("server_faults")
    c64, st, dc, lp = sf["concurrent_64"], sf["sigterm_16"], sf["disconnects_20"], sf["live_probe_4mb"]
    out.append(("fallback server under faults",
                f"64 streams: {c64['completed']} done, {c64['rejected_429_with_retry_after']} x 429, "
                f"{c64['server_errors_5xx']} x 5xx, {c64['dropped_without_error_body']} dropped; SIGTERM with "
                f"{st['streams']} in flight: {st['finished']} finished, {st['aborted']} aborted, exit {st['exit_code']} "
                f"in {st['seconds_to_exit']} s; {dc['clients']} disconnects: idle in {dc['seconds_to_idle']} s; "
                f"live probe p99 {lp['live_p99_ms']:.0f} ms under {lp['clients']} x 4 MB prompts{_stalls(sf)} "
                f"(at {_at(sf)})", "server_faults"))
    if (RESULTS / "decode_profile.json").exists():
        dp = _load("decode_profile")
        for r in dp["runs"]:
            top = ", ".join(f"{k} {v:.1f}" for k, v in list(r["by_bucket_ms"].items())[:4])
            out.append((f"where a decode step's time goes, {r['sequences']} sequence{'s' if r['sequences'] > 1 else ''}",
                        f"{r['step_wall_ms']:.1f} ms a step: {top} ms; outside torch's ops {r['outside_ops_ms']:.1f} ms "
                        f"({_load_note(dp)}) (at {_at(dp)})", "decode_profile"))
    if (RESULTS / "lora_throughput.json").exists():
        lo = _load("lora_throughput")
        base, ad = statistics.median(lo["base_tokens_per_s"]), statistics.median(lo["adapter_tokens_per_s"])
        out.append((f"LoRA: {lo['requests']} concurrent requests over {lo['adapters']} adapters (rank {lo['rank']}) "
                    f"vs {lo['requests']} on the base, x {lo['tokens_each']} tokens",
                    f"{ad:.0f} vs {base:.0f} tok/s: {lo['ratio_adapters_over_base']:.2f} x the base (goal >= "
                    f"{lo['goal']}; {_load_note(lo)}) (at {_at(lo)})", "lora_throughput"))
    return out


def _load_note(r: dict) -> str:
    """What else ran: other processes' share of the CPU when the file has it, else the load average."""
    head = "CONTENDED: " if r.get("contended") else ""
    if "other_processes_cpu_share" in r:
        return head + f"other processes used {r['other_processes_cpu_share']:.0%} of the {r['cores']} cores"
    return head + f"load {r['load_average_before']:.1f} before, {r['load_average_after']:.1f} after on {r['cores']} cores"


def _throughput_rows(tp: dict) -> list[tuple[str, str, str]]:
    """Ours against HF and llama.cpp's own server (--parallel c), then both servers' latency."""
    out = []
    runs = {r["concurrency"]: r for r in tp["runs"]}
    peer = tp.get("llama_server_tokens_per_s", {})
    plan = tp.get("planner_estimate", {})
    load = _load_note(tp)
    for c in (1, 16):
        r = runs.get(c)
        if r is None:
            continue
        text = (f"{r['tokens_per_s']:.0f} tok/s: {r['ratio']:.2f} x HF `generate` one after another, "
                f"{r['ratio_to_static_batch']:.2f} x HF static batch of {tp['requests']}")
        if str(c) in peer:
            text += f", {r['ratio_to_llama_server']:.2f} x `llama-server --parallel {c}` ({peer[str(c)]:.0f} tok/s)"
        if str(c) in plan:
            text += f"; planner estimate {plan[str(c)]['planner_over_measured']:.2f} x measured"
        what = "fallback server, 1 request at a time" if c == 1 else f"fallback server, {c} concurrent greedy requests"
        out.append((f"{what} x {tp['new_tokens']} tokens", text + f" (at {_at(tp)}; {load})", "runtime_throughput"))
    lat = tp.get("llama_server_latency", {})
    bits = []
    for c in (1, 16):
        r = runs.get(c)
        if r is None or "ttft_ms" not in r:
            continue
        ours = f"ours {_lat(r)}"
        theirs = f"llama-server {_lat(lat[str(c)])}" if str(c) in lat else ""
        bits.append(f"{c} concurrent: " + "; ".join(b for b in (ours, theirs) if b))
    if bits:
        out.append(("time to first token / inter-token latency, p50/p99 (streamed)", " — ".join(bits) + f" (at {_at(tp)}; {load})",
                    "runtime_throughput"))
    return out


def _lat(m: dict) -> str:
    return (f"TTFT {m['ttft_ms']['p50']:.0f}/{m['ttft_ms']['p99']:.0f} ms, "
            f"ITL {m['itl_ms']['p50']:.1f}/{m['itl_ms']['p99']:.1f} ms")


def _stalls(sf: dict) -> str:
    """The stall cases (issue 20): the worst of each number over the cases."""
    cases = sf.get("stalls") or {}
    if not cases:
        return ""
    probe = max(c["probe_worst_ms"] for c in cases.values())
    ratio = max(c["neighbour_ratio"] for c in cases.values())
    return (f"; beside {len(cases)} stall cases (tool-call parse, grammar compiles, stop strings): live probe at "
            f"worst {probe:.0f} ms, a plain request at worst {ratio:.1f} x its solo time")


def render() -> str:
    lines = [BEGIN, "| what | number | from |", "|---|---|---|"]
    lines += [f"| {w} | {n} | `bench/results/{f}.json` |" for w, n, f in rows()]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    a = ap.parse_args(argv)
    path = Path(a.readme)
    text = path.read_text()
    if BEGIN not in text or END not in text:
        print(f"{path}: no {BEGIN} ... {END} block", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + render() + tail
    if a.check:
        if new != text:
            print(f"{path}: the measured-numbers table is stale; run python bench/readme_table.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
