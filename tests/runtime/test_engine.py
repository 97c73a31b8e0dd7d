"""The engine (schedule -> run -> postprocess) on a tiny random-weight Llama
with the real SmolLM2 tokenizer: batching, sampling, stops, cancellation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runtimes.fallback.config import EngineConfig, ModelConfig
from runtimes.fallback.factory import create_engine
from runtimes.fallback.loader import LoadedModel
from runtimes.fallback.sampling import SamplingParams

pytestmark = pytest.mark.model_output  # logits and greedy tokens: CI reruns these under other CPU kernels

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

    def make(max_num_seqs=8, prefill_chunk=16, max_model_len=256, eos=(), batch_invariant=True, quantization=None,
             **paging):
        # Batch-invariant by default here: most tests compare runs bit for bit.
        loaded = LoadedModel(TINY, weights, smol_tokenizer, tuple(eos))
        cfg = EngineConfig(max_num_seqs=max_num_seqs, max_model_len=max_model_len, prefill_chunk=prefill_chunk,
                           batch_invariant=batch_invariant, **paging)
        return create_engine(loaded, cfg, kernels="torch", quantization=quantization)

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


@pytest.mark.parametrize("backend", ["torch", "onednn", "int8", "w8a8"])
def test_linear_groups_give_each_row_the_bits_it_gets_alone(backend):
    """Batch-invariant mode's premise, by construction: a group is computed by
    its own call, so its rows do not depend on the other groups (any CPU)."""
    from runtimes.fallback.linear import Linear, int_mm_exact

    torch.manual_seed(0)
    w = torch.randn(960, 576)
    if backend == "w8a8" and not int_mm_exact():  # a CPU without VNNI: refused, never served wrong
        with pytest.raises(ValueError, match="no VNNI"):
            Linear(w, None, backend)
        return
    lin = Linear(w, None, backend)
    x = torch.randn(40, 576) * torch.linspace(0.1, 10, 40).view(-1, 1)  # rows of very different scale
    groups = ((0, 1, False), (1, 2, True), (2, 19, False), (19, 40, True))
    together = lin(x, groups)
    for a, b, wide in groups:
        assert torch.equal(together[a:b], lin(x[a:b].contiguous(), wide=wide)), (a, b)
    ref = F.linear(x, w)
    tol = dict(atol=1e-3, rtol=1e-4) if backend not in ("int8", "w8a8") else dict(atol=0.3 * float(ref.abs().mean()), rtol=0.05)
    torch.testing.assert_close(lin(x), ref, **tol)


def test_int8_logits_stay_close_to_fp32(make_engine):
    """Load-time int8 keeps the argmax and the logits near fp32's."""
    from runtimes.fallback.runner import ModelRunner

    ids = prompts()
    outs = {}
    for quant in (None, "int8"):
        eng = make_engine(quantization=quant, batch_invariant=False)
        captured = []
        run = ModelRunner.run

        def spy(self, step, _run=run):
            batch, _ = self.prepare(step)
            captured.append(self.model(batch, self.kv, self.ops))
            return _run(self, step)

        ModelRunner.run = spy
        try:
            run_all(eng, {"x": (ids["r4"], SamplingParams(max_tokens=6, temperature=0))})
        finally:
            ModelRunner.run = run
        outs[quant] = torch.cat(captured)
    ref, q = outs[None], outs["int8"]
    assert (ref.argmax(-1) == q.argmax(-1)).float().mean() >= 0.8
    assert float((q - ref).norm() / ref.norm()) < 0.1


def test_default_path_batches_rows_and_matches_alone_within_tolerance(make_engine):
    """Without --batch-invariant rows are batched (no per-sequence calls) and a
    sequence's logits match its solo run to fp32 rounding, not bit for bit."""
    from runtimes.fallback.runner import ModelRunner

    ids = prompts()
    captured: dict[str, list] = {}
    run = ModelRunner.run

    def spy(self, step, _run=run):
        batch, seqs = self.prepare(step)
        assert batch.row_groups is None
        logits = self.model(batch, self.kv, self.ops)
        for seq, row in zip(seqs, logits):
            captured.setdefault(self.tag, {}).setdefault(seq.request_id, []).append(row)
        return _run(self, step)

    ModelRunner.run = spy
    try:
        alone = {}
        for rid in ("r0", "r3", "r6"):
            eng = make_engine(batch_invariant=False)
            eng.runner.tag = "alone"
            alone.update(run_all(eng, {rid: (ids[rid], SamplingParams(max_tokens=6, temperature=0))}))
        eng = make_engine(batch_invariant=False)
        eng.runner.tag = "together"
        run_all(eng, {rid: (ids[rid], SamplingParams(max_tokens=6, temperature=0)) for rid in ("r0", "r3", "r6")})
    finally:
        ModelRunner.run = run
    for rid in ("r0", "r3", "r6"):
        a, t = torch.stack(captured["alone"][rid]), torch.stack(captured["together"][rid])
        torch.testing.assert_close(t, a, atol=1e-3, rtol=1e-4)


def test_decode_attention_batched_matches_each_sequence_alone_within_tolerance():
    from runtimes.fallback.kernels import select_ops

    ops = select_ops("cpu", "torch")
    g = torch.Generator().manual_seed(0)
    bs, hkv, d, per_seq = 16, 3, 64, 44
    kc, vc = torch.randn(8 * per_seq, bs, hkv, d, generator=g), torch.randn(8 * per_seq, bs, hkv, d, generator=g)
    tables = torch.randperm(8 * per_seq, generator=g).view(8, per_seq)  # scattered blocks
    q = torch.randn(8, 9, d, generator=g)
    lens = torch.randint(1, 700, (8,), generator=g)
    alone = [ops.decode_attention(q[i : i + 1], kc, vc, tables[i : i + 1], lens[i : i + 1], 0.125, int(lens[i])) for i in range(8)]
    for b in (2, 3, 5, 8):
        out = ops.decode_attention(q[:b], kc, vc, tables[:b], lens[:b], 0.125, int(lens[:b].max()))
        torch.testing.assert_close(out, torch.cat(alone[:b]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("quantization", [None, "int8", "w8a8"])
def test_batch_invariant_greedy_outputs_do_not_depend_on_the_batch(make_engine, quantization):
    from runtimes.fallback.linear import int_mm_exact

    if quantization == "w8a8" and not int_mm_exact():  # refused on a CPU without VNNI, never served wrong
        with pytest.raises(ValueError, match="no VNNI"):
            make_engine(quantization=quantization)
        return
    params = {rid: SamplingParams(max_tokens=5 + i * 3, temperature=0) for i, rid in enumerate(prompts())}
    alone = {}
    for rid, ids in prompts().items():
        alone.update(run_all(make_engine(quantization=quantization), {rid: (ids, params[rid])}))
    together = run_all(make_engine(quantization=quantization), {rid: (ids, params[rid]) for rid, ids in prompts().items()})
    assert together == alone


def test_greedy_outputs_do_not_depend_on_the_batch(make_engine):
    params = {rid: SamplingParams(max_tokens=5 + i * 3, temperature=0) for i, rid in enumerate(prompts())}
    alone = {}
    for rid, ids in prompts().items():
        alone.update(run_all(make_engine(), {rid: (ids, params[rid])}))
    together = run_all(make_engine(), {rid: (ids, params[rid]) for rid, ids in prompts().items()})
    assert together == alone
    assert all(len(alone[r]["ids"]) == params[r].max_tokens and alone[r]["reason"] == "length" for r in alone)


def test_garbage_in_the_kv_cache_never_reaches_an_answer(make_engine):
    """Blocks are zeroed when handed out and tables padded with a sequence's own
    blocks, so attention needs no V mask: a cache full of NaN (what a model
    that overflowed once would leave) changes no answer, alone or batched."""
    params = {rid: SamplingParams(max_tokens=6 + i, temperature=0) for i, rid in enumerate(prompts())}
    want = run_all(make_engine(batch_invariant=False), {r: (ids, params[r]) for r, ids in prompts().items()})
    for requests in ({"r1": (prompts()["r1"], params["r1"])}, {r: (ids, params[r]) for r, ids in prompts().items()}):
        eng = make_engine(batch_invariant=False)
        eng.runner.kv.k.fill_(float("nan"))
        eng.runner.kv.v.fill_(float("nan"))
        got = run_all(eng, requests)
        assert got == {r: want[r] for r in requests}


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
    assert eng.kv_usage() > 0 and eng.num_waiting == 1  # one sequence slot, taken
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


def test_a_shared_prefix_is_computed_once_and_answers_do_not_change(make_engine):
    g = torch.Generator().manual_seed(7)
    system = torch.randint(100, VOCAB, (70,), generator=g).tolist()  # 4 full blocks of 16
    tails = [torch.randint(100, VOCAB, (n,), generator=g).tolist() for n in (5, 9, 12)]
    params = SamplingParams(max_tokens=6, temperature=0)
    cold = {}
    for i, tail in enumerate(tails):
        cold.update(run_all(make_engine(batch_invariant=False, enable_prefix_caching=False), {f"q{i}": (system + tail, params)}))
    eng = make_engine(batch_invariant=False)
    first = run_all(eng, {"q0": (system + tails[0], params)})
    assert eng.blocks.hits == 0 and eng.blocks.queries == 75
    rest = run_all(eng, {f"q{i}": (system + t, params) for i, t in enumerate(tails) if i})
    assert eng.blocks.hits == 2 * 64, "the second and third prompt each found the system prompt's 4 blocks"
    got = {**first, **rest}
    assert {k: v["ids"] for k, v in got.items()} == {k: v["ids"] for k, v in cold.items()}
    # Finished: no block in use (vLLM's usage), yet the prefix stays cached until a block is needed.
    assert eng.kv_usage() == 0.0 and len(eng.blocks.match_prefix(system + tails[0])) == 4


def test_cached_blocks_are_evicted_oldest_first_when_blocks_run_out(make_engine):
    eng = make_engine(batch_invariant=False, num_blocks=6, max_model_len=96)  # 6 blocks x 16
    g = torch.Generator().manual_seed(8)
    a, b = (torch.randint(100, VOCAB, (40,), generator=g).tolist() for _ in range(2))
    p = SamplingParams(max_tokens=8, temperature=0)
    run_all(eng, {"a": (a, p)})  # 3 blocks, the first 2 full and cached
    run_all(eng, {"b": (b, SamplingParams(max_tokens=40, temperature=0))})  # 5 blocks: evicts one of a's
    run_all(eng, {"a2": (a, p)})
    assert eng.blocks.hits == 16, "a's tail block was evicted first, its head block kept"
    run_all(eng, {"b2": (b, p)})
    assert eng.blocks.hits == 16 + 32, "b's prefix was still cached"
    small = make_engine(batch_invariant=False, num_blocks=4, max_model_len=96)
    with pytest.raises(ValueError, match="KV positions"):
        small.add_request("huge", list(range(100, 170)), SamplingParams(max_tokens=20))  # 5 blocks of 4


def test_requests_wait_for_blocks_and_all_finish(make_engine):
    eng = make_engine(batch_invariant=False, num_blocks=8, max_model_len=128)
    g = torch.Generator().manual_seed(9)
    reqs = {f"r{i}": (torch.randint(100, VOCAB, (30,), generator=g).tolist(), SamplingParams(max_tokens=20, temperature=0))
            for i in range(5)}
    for rid, (ids, params) in reqs.items():
        eng.add_request(rid, ids, params)
    outs, peak = {}, 0
    while eng.has_work():
        for o in eng.step():
            r = outs.setdefault(o.request_id, {"ids": [], "reason": None})
            r["ids"] += o.token_ids
            r["reason"] = o.finish_reason
        assert eng.num_running <= 2, "each needs 4 of the 8 blocks"
        peak = max(peak, eng.num_running)
    assert peak == 2
    assert all(outs[r]["reason"] == "length" and len(outs[r]["ids"]) == 20 for r in reqs)


def test_int4_is_chosen_only_for_matrices_that_are_exactly_4_bit():
    from runtimes.fallback.linear import Linear, auto_backend, bf16_decode, int4_groups, linear_maker

    g = torch.Generator().manual_seed(11)
    # A Q4_1-style matrix: per group of 32, min + q * scale with q in 0..15 (both ends used).
    q = torch.randint(0, 16, (96, 8, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, 15
    # fp16 scale and min, as a GGUF stores them: fp32 arithmetic on them is exact.
    scale = (torch.rand(96, 8, 1, generator=g) * 0.01).half().float()
    lo = (torch.randn(96, 8, 1, generator=g) * 0.05).half().float()
    four_bit = (q * scale + lo).view(96, 256)
    dense = torch.randn(96, 256, generator=g)
    assert int4_groups(four_bit) is not None and int4_groups(dense) is None
    assert auto_backend("int8", four_bit) == "int4" and auto_backend("int8", dense) == "int8"
    make = linear_maker("int8", auto=True)
    make(four_bit), make(dense)
    assert make.used == {"int4": 1, "int8": 1}
    lin = Linear(four_bit, None, "int4")
    x = torch.randn(20, 256, generator=g)
    # Direct int4 rows, batched decode rows (a bf16 copy where this CPU has native bf16, else fp32) and
    # prompt rows (wide: always the fp32 copy).
    assert (lin.weight_bf16 is not None) == bf16_decode()
    for rows in (1, 3, 5, 20):
        ref = F.linear(x[:rows], four_bit)
        assert float((lin(x[:rows]) - ref).norm() / ref.norm()) < 0.01
        assert float((lin(x[:rows], wide=True) - ref).norm() / ref.norm()) < 1e-5
    with pytest.raises(ValueError):
        Linear(dense, None, "int4")


def test_a_request_whose_postprocessing_fails_ends_alone(make_engine):
    """A detokenizer that raises (say a broken tokenizer) fails its own request;
    the batch and the other requests go on (issue 9, item 4)."""
    eng = make_engine(batch_invariant=False)
    ids = prompts()
    eng.add_request("bad", ids["r1"], SamplingParams(max_tokens=10, temperature=0))
    eng.add_request("good", ids["r2"], SamplingParams(max_tokens=10, temperature=0))
    eng.step()

    def boom(tok):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "broken tokenizer")

    eng.scheduler._by_id["bad"].extra.detok.add = boom
    outs = drain(eng)
    assert outs["bad"]["reason"] == "error"
    assert outs["good"]["reason"] == "length" and len(outs["good"]["ids"]) == 10
    assert eng.kv_usage() == 0.0
