"""The sampler cannot be made to fail by a request's parameters, and when a
draw fails anyway only that request is reported (issue 9, item 4)."""

from __future__ import annotations

import math

import pytest
import torch

from runtimes.fallback.sampling import MIN_TOP_P, RequestSampler, SamplingParams, sample_batch, take_failures


@pytest.mark.parametrize("kw", [{"top_p": 7e-46}, {"top_p": 0.0}, {"top_p": math.nan}, {"temperature": math.inf},
                                {"temperature": math.nan}, {"top_p": 1.5}])
def test_values_the_sampler_cannot_use_are_refused(kw):
    with pytest.raises(ValueError):
        SamplingParams(**kw)


def test_the_smallest_top_p_still_draws_the_most_likely_token():
    logits = torch.randn(49152, generator=torch.Generator().manual_seed(0))
    s = RequestSampler(SamplingParams(top_p=MIN_TOP_P, temperature=1.0), 0)
    assert s.sample(logits) == int(torch.argmax(logits))


def test_nan_logits_do_not_fail_the_draw():
    logits = torch.randn(100)
    logits[3] = math.nan
    assert 0 <= RequestSampler(SamplingParams(temperature=0.7, top_p=0.9), 1).sample(logits) < 100


def test_a_failed_draw_is_reported_for_its_request_alone():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(1))
    good = [RequestSampler(SamplingParams(temperature=0.8, seed=i), 0) for i in range(2)]
    bad = RequestSampler(SamplingParams(temperature=0.8), 0)
    bad.generator = "not a generator"  # a fault inside one draw (what any torch error looks like here)
    tokens = sample_batch(logits, [good[0], bad, good[1]])
    assert len(tokens) == 3 and all(0 <= t < 100 for t in tokens)
    failures = take_failures()
    assert [p for p, _ in failures] == [bad.params] and failures[0][0] is bad.params
    assert take_failures() == []
