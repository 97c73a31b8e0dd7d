"""Prompt token ids on /v1/completions are checked against what the model can
embed, not only against the tokenizer: a model whose embedding has fewer rows
than its tokenizer has tokens (an added-tokens tokenizer beside an unresized
model) would otherwise take an id the engine cannot look up."""

from __future__ import annotations

import dataclasses
import json

import pytest

from runtimes.fallback.config import EngineConfig
from runtimes.fallback.factory import create_engine
from runtimes.fallback.loader import LoadedModel
from runtimes.fallback.prepare import Preparer
from runtimes.fallback.protocol import APIError
from runtimes.fallback.sampling import SamplingParams

from .test_engine import TINY, VOCAB, run_all, tiny_weights

ROWS = VOCAB - 1000  # the model's embedding: 1,000 rows short of the tokenizer


@pytest.fixture(scope="module")
def short_model(smol_tokenizer):
    cfg = dataclasses.replace(TINY, vocab_size=ROWS)
    loaded = LoadedModel(cfg, tiny_weights(cfg), smol_tokenizer, ())
    engine = create_engine(loaded, EngineConfig(max_num_seqs=2, max_model_len=128, prefill_chunk=16), kernels="torch")
    # Wired as the server wires it (server.py).
    prep = Preparer(smol_tokenizer, 128, workers=1, model_vocab=engine.runner.vocab_size,
                    embedding_rows=engine.runner.embedding_rows)
    yield engine, prep
    prep.close()


def completion(prep: Preparer, prompt) -> list[list[int]]:
    return prep.completion(json.dumps({"model": "m", "prompt": prompt, "max_tokens": 1}).encode())[1]


def test_the_runner_reports_its_embedding_rows(short_model, smol_tokenizer):
    engine, _ = short_model
    assert engine.runner.embedding_rows == ROWS < len(smol_tokenizer)


@pytest.mark.parametrize("prompt", [[1, ROWS], [[5], [1, VOCAB - 1]], [ROWS + 10]])
def test_an_id_the_model_cannot_embed_is_a_400_naming_the_prompt(short_model, prompt):
    _, prep = short_model
    with pytest.raises(APIError) as e:
        completion(prep, prompt)
    assert e.value.status == 400 and e.value.param == "prompt"
    assert e.value.message.startswith("prompt: token id ") and f"[0, {ROWS})" in e.value.message, e.value.message


def test_ids_past_the_tokenizer_are_refused_too(smol_tokenizer):
    # A padded embedding (more rows than tokens, as many models ship): the tokenizer is the bound.
    prep = Preparer(smol_tokenizer, 128, workers=1, model_vocab=VOCAB + 64, embedding_rows=VOCAB + 64)
    try:
        with pytest.raises(APIError) as e:
            completion(prep, [VOCAB + 3])
        assert e.value.param == "prompt" and f"[0, {VOCAB})" in e.value.message
    finally:
        prep.close()


def test_ids_the_model_embeds_pass_and_run(short_model):
    engine, prep = short_model
    ids = completion(prep, [1, ROWS - 1])
    assert ids == [[1, ROWS - 1]]
    out = run_all(engine, {"a": (ids[0], SamplingParams(max_tokens=2, temperature=0))})
    assert out["a"]["reason"] == "length" and len(out["a"]["ids"]) == 2
