"""Command line of the fallback runtime, with ``vllm serve``'s flag names
where the meaning is the same (docs/contracts.md)."""

from __future__ import annotations

import argparse
import os


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtimes.fallback", description="OpenAI-compatible server for the packager fallback runtime.")
    p.add_argument("--model", required=True, help="a directory (safetensors + tokenizer), a .gguf file, "
                   "or a zip of a sentence-transformers directory (embedding models)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: from --model)")
    p.add_argument("--served-model-name", nargs="+", default=None, help="names the API answers to (default: --model)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "auto"],
                   help="weight and activation dtype (auto = float32 on CPU)")
    p.add_argument("--max-model-len", type=int, default=None, help="context length (default: min(model max, 4096))")
    p.add_argument("--max-num-seqs", type=int, default=16, help="concurrent sequences (KV slots)")
    p.add_argument("--max-num-batched-tokens", type=int, default=None,
                   help="tokens per step: decode tokens plus one prefill chunk (default: 256 + max-num-seqs)")
    p.add_argument("--kv-cache-dtype", default="auto", choices=["auto"], help="KV cache dtype (auto = --dtype)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--kernels", default="auto", choices=["auto", "torch", "triton"])
    p.add_argument("--quantization", "-q", default="auto", choices=["auto", "int4", "int8", "w8a8", "none"],
                   help="matmul weights on CPU: int4 (groups of 32), int8 (weight-only, per channel), w8a8 "
                        "(int8 weights and activations: faster at large batches, less accurate; needs a CPU with VNNI) "
                        "or none (fp32); "
                        "auto = int4 for matrices that are exactly 4-bit (Q4_1 GGUF), else int8; none on GPUs")
    p.add_argument("--batch-invariant", action="store_true",
                   default=os.environ.get("VLLM_BATCH_INVARIANT", "0") not in ("", "0"),
                   help="a sequence's output independent of its batch neighbours, bit for bit, at a speed cost "
                        "(also VLLM_BATCH_INVARIANT=1)")
    p.add_argument("--block-size", type=int, default=16, help="KV-cache block size in tokens")
    p.add_argument("--num-gpu-blocks-override", type=int, default=None, metavar="N",
                   help="KV-cache blocks (default: room for --max-num-seqs sequences of --max-model-len)")
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse the KV blocks of a prompt prefix computed before (default on; off with --batch-invariant)")
    p.add_argument("--max-queue-len", type=int, default=128, help="requests waiting for a slot before 429")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish in-flight requests after SIGTERM")
    p.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX|SUMS.json",
                   help="expected digest of a model file (relative to the model directory); repeatable, "
                        "or a JSON object of file -> hex")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--log-level", default="info")
    # Security and hostile traffic (README "Security").
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="require Authorization: Bearer KEY on every path but the probes and /metrics (repeatable; "
                        "default: $PACKAGER_API_KEY or $VLLM_API_KEY; prefer the environment, which ps does not show)")
    p.add_argument("--max-request-body", type=int, default=4 << 20, metavar="BYTES", help="larger bodies get a 413")
    p.add_argument("--body-read-timeout", type=float, default=30.0, metavar="S",
                   help="seconds a client has to send its request headers (closed after) and its body (408 after)")
    p.add_argument("--tokenizer-workers", type=int, default=2, help="threads that template and tokenize prompts")
    p.add_argument("--grammar-compile-timeout", type=float, default=10.0, metavar="S",
                   help="seconds a request's grammar (JSON schema, regex, choice, EBNF, forced tool call) may take "
                        "to compile; past it the request gets a 400")
    p.add_argument("--max-embed-inputs", type=int, default=2048, help="embedding models: inputs per request (OpenAI's cap)")
    p.add_argument("--max-embed-tokens", type=int, default=32768, help="embedding models: tokens per request, all inputs")
    p.add_argument("--enable-docs", action="store_true", help="serve /docs and /openapi.json (off by default)")
    # LoRA adapters, with vLLM's flags (runtimes/fallback/lora/).
    p.add_argument("--enable-lora", action="store_true", help="serve PEFT LoRA adapters (implied by the flags below)")
    p.add_argument("--lora-modules", nargs="+", action="extend", default=[], metavar="NAME=PATH|JSON",
                   help='adapters to serve, each a model name: NAME=PATH or {"name","path","base_model_name"}')
    p.add_argument("--max-loras", type=int, default=None, help="adapters one batch may run at once (slots; default 1)")
    p.add_argument("--max-lora-rank", type=int, default=16, help="the largest adapter rank accepted")
    p.add_argument("--max-cpu-loras", type=int, default=None, help="adapters kept in memory (default --max-loras)")
    p.add_argument("--lora-dir", default=os.environ.get("PACKAGER_LORA_DIR") or None, metavar="DIR",
                   help="serve every adapter directory inside DIR under its name, polled for changes "
                        "(also $PACKAGER_LORA_DIR); runtime lora_paths must lie inside it")
    p.add_argument("--lora-refresh-interval", type=float, default=10.0, metavar="S", help="seconds between --lora-dir scans")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    for name in ("max_num_seqs", "max_queue_len", "max_embed_inputs", "max_embed_tokens", "max_request_body", "tokenizer_workers", "block_size"):
        if getattr(a, name) < (0 if name == "max_queue_len" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not a.grammar_compile_timeout > 0:
        p.error("--grammar-compile-timeout must be positive")
    if a.num_gpu_blocks_override is not None and a.num_gpu_blocks_override < 1:
        p.error("--num-gpu-blocks-override must be positive")
    if a.max_model_len is not None and a.max_model_len < 2:
        p.error("--max-model-len must be at least 2")
    if a.max_num_batched_tokens is not None and a.max_num_batched_tokens <= a.max_num_seqs:
        p.error("--max-num-batched-tokens must exceed --max-num-seqs (room for a prefill chunk)")
    if a.lora_modules or a.lora_dir or a.max_loras is not None:
        a.enable_lora = True
    if a.max_loras is None:
        a.max_loras = 1
    for name in ("max_loras", "max_lora_rank"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if a.max_cpu_loras is not None and a.max_cpu_loras < a.max_loras:
        p.error("--max-cpu-loras must be at least --max-loras")
    if not a.lora_refresh_interval > 0:
        p.error("--lora-refresh-interval must be positive")
    if a.dtype == "auto":
        a.dtype = "float32" if a.device == "cpu" else "bfloat16"
    if a.quantization == "auto" and a.device != "cpu":
        a.quantization = "none"
    elif a.quantization != "none" and a.device != "cpu":
        p.error(f"--quantization {a.quantization} runs on CPU only; GPUs use vLLM's quantized checkpoints")
    return a
