"""Every fact the tests assert about SmolLM2's words holds on every greedy path
a CPU's kernels could take (``tests/answers.py``): near-ties within DELTA
nats are followed both ways. Run it under other kernels too (CI does:
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from answers import DELTA, FACTS, explore, prompt_ids
from .conftest import gguf_path

pytestmark = [pytest.mark.slow, pytest.mark.model_output]


@pytest.fixture(scope="module")
def engine():
    from runtimes.fallback.args import parse_args
    from runtimes.fallback.server import _load

    args = parse_args(["--model", str(gguf_path()), "--max-num-seqs", "4", "--max-model-len", "512"])
    engine, tok, _ = _load(SimpleNamespace(args=args))
    return engine, tok


def top2(engine):
    from runtimes.fallback.sampling import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0, logprobs=2, ignore_eos=True)
    n = [0]

    def next_top2(ids: list[int]):
        n[0] += 1
        engine.add_request(f"m{n[0]}", ids, params)
        outs = []
        while engine.has_work():
            outs.extend(o for o in engine.step() if o.logprobs)
        (_, _, alts), = outs[-1].logprobs
        return alts[0], alts[1]

    return next_top2


@pytest.mark.parametrize("name", sorted(FACTS))
def test_fact_holds_on_every_near_tie_path(engine, name):
    eng, tok = engine
    fact = FACTS[name]
    paths = explore(top2(eng), tok.decode, prompt_ids(tok, fact), fact, set(eng.eos_token_ids))
    report = [(tok.decode(p.tokens), round(min(p.margins, default=99), 2), p.held) for p in paths]
    print(name, report)
    assert all(p.held for p in paths), f"{name}: the fact fails on a path within {DELTA} nats: {report}"
