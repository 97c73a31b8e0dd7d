"""Logits processing per request (no server): penalties as vLLM defines
them, logit bias, min_tokens, min_p, a grammar's mask; plain rows untouched
and the plain batch path unchanged."""

from __future__ import annotations

import torch

from runtimes.fallback.processors import RowProcessor
from runtimes.fallback.sampling import RequestSampler, SamplingParams, sample_batch

V = 10


def proc(prompt=(1, 2), stop=frozenset({9}), **kw) -> RowProcessor:
    return RowProcessor(SamplingParams(max_tokens=8, **kw), list(prompt), stop, V)


def test_penalties_follow_vllm():
    row = torch.tensor([2.0, -2.0, 1.0, 0.5, 0, 0, 0, 0, 0, 0])
    p = proc(prompt=(0, 1), repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    p.apply(row.clone())  # the first step builds the counts
    p.accept(3)
    p.accept(3)
    out = row.clone()
    p.apply(out)
    assert out[0] == 1.0 and out[1] == -4.0  # prompt tokens: positive / rp, negative * rp
    assert out[3] == 0.5 / 2.0 - 0.5 * 2 - 0.25  # output token: rp, then frequency x count and presence
    assert out[2] == 1.0 and torch.equal(out[4:], row[4:])


def test_logit_bias_and_min_tokens():
    p = proc(logit_bias=((4, 5.0), (5, -100.0)), min_tokens=2)
    row = torch.zeros(V)
    p.apply(row)
    assert row[4] == 5.0 and row[5] == -100.0 and row[9] == float("-inf")
    p.accept(4)
    p.accept(4)
    row = torch.zeros(V)
    p.apply(row)
    assert row[9] == 0.0  # min_tokens reached: eos allowed again


def test_only_rows_that_ask_are_changed_and_logprobs_are_raw():
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(0))
    before = logits.clone()
    plain = RequestSampler(SamplingParams(temperature=0, logprobs=2), 0)
    banned = int(before[1].argmax())
    biased = RequestSampler(SamplingParams(temperature=0, logit_bias=((banned, -100.0),)), 0,
                            RowProcessor(SamplingParams(temperature=0, logit_bias=((banned, -100.0),)), [1], frozenset(), V))
    other = RequestSampler(SamplingParams(temperature=0), 0)
    toks = sample_batch(logits, [plain, biased, other])
    assert toks[0] == int(before[0].argmax()) and toks[2] == int(before[2].argmax()) and toks[1] != banned
    assert torch.equal(logits[0], before[0]) and torch.equal(logits[2], before[2])
    (tok, lp, alts), = plain.logprobs
    raw = torch.log_softmax(before[0], -1)
    assert tok == toks[0] and lp == float(raw[tok]) and [a for a, _ in alts] == raw.topk(2).indices.tolist()


def test_min_p_one_is_greedy():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(4))
    s = RequestSampler(SamplingParams(temperature=1.5, min_p=1.0, seed=1), 0)
    assert all(s.sample(logits.clone()) == int(logits.argmax()) for _ in range(20))


def test_a_grammar_mask_allows_only_its_tokens(smol_tokenizer):
    from runtimes.fallback.guided import Guide, Matcher, Spec

    vocab = len(smol_tokenizer)
    guide = Guide(smol_tokenizer, vocab, (smol_tokenizer.eos_token_id,))
    m = Matcher(guide.compile(Spec("choice", ["yes", "no"])), vocab)
    row = torch.zeros(vocab)
    m.mask(row)
    allowed = [smol_tokenizer.decode([i]) for i in torch.nonzero(row == 0).flatten().tolist()]
    assert allowed and all("yes".startswith(a) or "no".startswith(a) for a in allowed)


def test_a_grammar_that_can_only_end_wins_over_min_tokens(smol_tokenizer):
    from runtimes.fallback.guided import Guide, Matcher, Spec

    vocab, eos = len(smol_tokenizer), smol_tokenizer.eos_token_id
    m = Matcher(Guide(smol_tokenizer, vocab, (eos,)).compile(Spec("choice", [""])), vocab)
    p = RowProcessor(SamplingParams(max_tokens=8, min_tokens=4, guide=object()), [1], frozenset({eos}), vocab, m)
    row = torch.zeros(vocab)
    p.apply(row)
    assert torch.isfinite(row).nonzero().flatten().tolist() == [eos] and p.accept(eos) and p.done
