"""The engine (schedule -> run -> postprocess) on a tiny random-weight Llama
with the real SmolLM2 tokenizer: batching, sampling, stops, cancellation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runtimes.fallback.batch import ROW_ALIGN, attn_len
from runtimes.fallback.config import EngineConfig, ModelConfig
from runtimes.fallback.factory import create_engine
from runtimes.fallback.loader import LoadedModel
from runtimes.fallback.sampling import SamplingParams

VOCAB = 49152  # the tokenizer's, so every sampled id decodes


def tiny_weights(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    w = {"model.embed_tokens.weight": r(cfg.vocab_size, h), "model.norm.weight": 1 + r(h)}
    for n in range(cfg.num_layers):
        p = f"model.layers.{n}."
        w.update({
            p + "input_layernorm.weight": 1 + r(h), p + "post_attention_layernorm.weight": 1 + r(h),
            p + "self_attn.q_proj.weight": r(cfg.num_heads * d, h),
            p + "self_attn.k_proj.weight": r(cfg.num_kv_heads * d, h),
            p + "self_attn.v_proj.weight": r(cfg.num_kv_heads * d, h),
            p + "self_attn.o_proj.weight": r(h, cfg.num_heads * d),
            p + "mlp.gate_proj.weight": r(i, h), p + "mlp.up_proj.weight": r(i, h), p + "mlp.down_proj.weight": r(h, i),
        })
    return w


TINY = ModelConfig(
    architecture="LlamaForCausalLM", vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_layers=2,
    num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
    max_position_embeddings=512, tie_word_embeddings=True, attention_bias=False,
)


@pytest.fixture(scope="module")
def make_engine(smol_tokenizer):
    weights = tiny_weights(TINY)

    def make(max_num_seqs=8, prefill_chunk=16, max_model_len=256, eos=()):
        loaded = LoadedModel(TINY, weights, smol_tokenizer, tuple(eos))
        cfg = EngineConfig(max_num_seqs=max_num_seqs, max_model_len=max_model_len, prefill_chunk=prefill_chunk)
        return create_engine(loaded, cfg, kernels="torch")

    return make


def run_all(engine, requests: dict[str, tuple[list[int], SamplingParams]]):
    for rid, (ids, params) in requests.items():
        engine.add_request(rid, ids, params)
    return drain(engine)


def drain(engine, outs=None):
    outs = outs if outs is not None else {}
    while engine.has_work():
        for o in engine.step():
            r = outs.setdefault(o.request_id, {"text": "", "ids": [], "reason": None})
            r["text"] += o.text
            r["ids"] += o.token_ids
            if o.finished:
                r["reason"] = o.finish_reason
    return outs


def prompts():
    g = torch.Generator().manual_seed(3)
    lengths = [3, 17, 40, 9, 64, 1, 25, 33]
    return {f"r{i}": torch.randint(100, VOCAB, (n,), generator=g).tolist() for i, n in enumerate(lengths)}


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_linear_rows_do_not_depend_on_batch_when_rows_are_aligned(backend):
    """The premise of ForwardBatch's padding, on this machine's BLAS, for the
    matmul path the model uses (auto: oneDNN on CPU) and plain F.linear."""
    from runtimes.fallback.linear import Linear, choose_backend

    torch.manual_seed(0)
    x = torch.randn(300, 1536)
    for n, k in ((960, 576), (576, 1536)):
        w = torch.randn(n, k)
        lin = Linear(w, None, choose_backend("cpu", torch.float32, backend))
        torch.testing.assert_close(lin(x[:16, :k]), F.linear(x[:16, :k], w), atol=1e-3, rtol=1e-4)
        alone = torch.cat([lin(x[i : i + 1, :k].expand(ROW_ALIGN, -1).contiguous())[:1] for i in range(40)])
        for m in (8, 16, 24, 40):
            assert torch.equal(lin(x[:m, :k]), alone[:m]), f"rows differ at M={m}"
        # Rows anywhere in a big (prefill-sized) aligned batch.
        big = torch.cat([torch.randn(37, k), x[:3, :k], torch.randn(256 - 40, k)])
        assert torch.equal(lin(big)[37:40], alone[:3])


def test_decode_attention_per_sequence_does_not_depend_on_the_batch():
    """The premise of ATTN_LEN_ALIGN: the kernel table's batched decode
    attention, over lengths padded to the alignment, gives each sequence the
    bits it gets alone (stale cache contents past a length must not matter)."""
    from runtimes.fallback.kernels import select_ops

    ops = select_ops("cpu", "torch")
    g = torch.Generator().manual_seed(0)
    slots, hkv, max_len, d = 9, 3, attn_len(700), 64
    kc, vc = torch.randn(slots, hkv, max_len, d, generator=g), torch.randn(slots, hkv, max_len, d, generator=g)
    q = torch.randn(8, 9, d, generator=g)
    lens = torch.randint(1, 700, (8,), generator=g)
    alone = [
        ops.decode_attention(q[i : i + 1], kc, vc, torch.tensor([i]), lens[i : i + 1], 0.125, attn_len(int(lens[i])))
        for i in range(8)
    ]
    for b in (2, 3, 5, 8):
        out = ops.decode_attention(q[:b], kc, vc, torch.arange(b), lens[:b], 0.125, attn_len(int(lens[:b].max())))
        for i in range(b):
            assert torch.equal(out[i : i + 1], alone[i]), f"sequence {i} differs in a batch of {b}"


def test_greedy_outputs_do_not_depend_on_the_batch(make_engine):
    params = {rid: SamplingParams(max_tokens=5 + i * 3, temperature=0) for i, rid in enumerate(prompts())}
    alone = {}
    for rid, ids in prompts().items():
        alone.update(run_all(make_engine(), {rid: (ids, params[rid])}))
    together = run_all(make_engine(), {rid: (ids, params[rid]) for rid, ids in prompts().items()})
    assert together == alone
    assert all(len(alone[r]["ids"]) == params[r].max_tokens and alone[r]["reason"] == "length" for r in alone)


def test_requests_join_and_leave_between_steps(make_engine):
    eng = make_engine(max_num_seqs=2, prefill_chunk=8)
    ids = prompts()
    eng.add_request("a", ids["r0"], SamplingParams(max_tokens=30, temperature=0))
    eng.step()
    eng.add_request("b", ids["r4"], SamplingParams(max_tokens=3, temperature=0))  # 64 tokens: 8 chunks
    eng.add_request("c", ids["r1"], SamplingParams(max_tokens=3, temperature=0))  # waits for a slot
    got = []
    for _ in range(8):
        outs = {o.request_id for o in eng.step()}
        assert "a" in outs, "the running request advances while b prefills"
        got.append(outs)
    assert eng.num_running == 2 and eng.num_waiting == 1
    outs = drain(eng)
    assert outs["c"]["reason"] == "length" and eng.kv_usage() == 0.0


def test_seeded_sampling_is_reproducible_and_batch_independent(make_engine):
    ids = prompts()
    p = lambda seed: SamplingParams(max_tokens=12, temperature=0.9, top_p=0.9, top_k=50, seed=seed)  # noqa: E731
    a1 = run_all(make_engine(), {"x": (ids["r2"], p(1))})["x"]["ids"]
    both = run_all(make_engine(), {"x": (ids["r2"], p(1)), "y": (ids["r3"], p(2))})
    a2 = run_all(make_engine(), {"x": (ids["r2"], p(2))})["x"]["ids"]
    assert both["x"]["ids"] == a1
    assert a1 != a2
    # top_k=1 is greedy whatever the temperature.
    g = run_all(make_engine(), {"x": (ids["r2"], SamplingParams(max_tokens=12, temperature=0))})["x"]["ids"]
    k1 = run_all(make_engine(), {"x": (ids["r2"], SamplingParams(max_tokens=12, temperature=1.5, top_k=1, seed=5))})
    assert k1["x"]["ids"] == g


def test_stop_strings_token_ids_eos_and_ignore_eos(make_engine):
    ids = prompts()["r6"]
    full = run_all(make_engine(), {"x": (ids, SamplingParams(max_tokens=20, temperature=0))})["x"]
    text, toks = full["text"], full["ids"]
    assert len(text) > 12
    stop = text[6:10]
    cut = text.find(stop)
    got = run_all(make_engine(), {"x": (ids, SamplingParams(max_tokens=20, temperature=0, stop=(stop,)))})["x"]
    assert got["reason"] == "stop" and got["text"] == text[:cut]

    got = run_all(make_engine(), {"x": (ids, SamplingParams(max_tokens=20, temperature=0, stop_token_ids=(toks[3],)))})["x"]
    assert got["reason"] == "stop" and got["ids"] == toks[: toks.index(toks[3]) + 1]

    eos_engine = make_engine(eos=(toks[0],))
    got = run_all(eos_engine, {"x": (ids, SamplingParams(max_tokens=20, temperature=0))})["x"]
    assert got["ids"] == toks[:1] and got["reason"] == "stop"
    got = run_all(eos_engine, {"x": (ids, SamplingParams(max_tokens=20, temperature=0, ignore_eos=True))})["x"]
    assert got["ids"] == toks and got["reason"] == "length"


def test_context_limit_ends_with_length(make_engine):
    eng = make_engine(max_model_len=48)
    out = run_all(eng, {"x": (prompts()["r2"], SamplingParams(max_tokens=100, temperature=0))})["x"]
    assert len(out["ids"]) == 8 and out["reason"] == "length"
    with pytest.raises(ValueError):
        eng.add_request("y", list(range(100, 148)), SamplingParams(max_tokens=1))


def test_abort_frees_the_slot(make_engine):
    eng = make_engine(max_num_seqs=1)
    eng.add_request("a", prompts()["r1"], SamplingParams(max_tokens=50, temperature=0))
    eng.add_request("b", prompts()["r2"], SamplingParams(max_tokens=2, temperature=0))
    eng.step()
    assert eng.kv_usage() == 1.0 and eng.num_waiting == 1
    out = eng.abort("a")
    assert out.finished and out.finish_reason == "abort"
    assert eng.kv_usage() == 0.0
    outs = drain(eng)
    assert outs["b"]["reason"] == "length"
    assert eng.abort("a") is None


def test_a_vanishing_temperature_is_greedy_and_does_not_fail_the_batch(make_engine):
    # logits / 1e-40 overflows to inf and multinomial raised, failing the step
    # for every request in it; vLLM treats temperature < 1e-5 as greedy.
    ids = prompts()
    greedy = run_all(make_engine(), {"x": (ids["r2"], SamplingParams(max_tokens=8, temperature=0))})["x"]["ids"]
    outs = run_all(make_engine(), {
        "tiny": (ids["r2"], SamplingParams(max_tokens=8, temperature=1e-40)),
        "other": (ids["r3"], SamplingParams(max_tokens=8, temperature=0.8, seed=1)),
    })
    assert outs["tiny"]["ids"] == greedy
    assert outs["other"]["reason"] == "length"
