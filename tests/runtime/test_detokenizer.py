"""Incremental detokenization with the real SmolLM2 tokenizer: characters that
span several byte-level tokens must never stream as broken pieces."""

from __future__ import annotations

import pytest

from runtimes.fallback.detokenizer import IncrementalDetokenizer

TEXTS = ["Hello 🎉 world 日本語 café", "🎉🎉🎉", "naïve — “quotes” ∑ 𝔘 👨‍👩‍👧"]


def stream(tok, ids, stop=()):
    d = IncrementalDetokenizer(tok, stop)
    pieces = []
    for i, t in enumerate(ids):
        d.add(t)
        pieces.append(d.take(final=d.stopped or i == len(ids) - 1))
        if d.stopped:
            break
    return pieces


@pytest.mark.parametrize("text", TEXTS)
def test_multibyte_characters_stream_whole(smol_tokenizer, text):
    ids = smol_tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # some characters take several tokens
    pieces = stream(smol_tokenizer, ids)
    assert not any("\ufffd" in p for p in pieces)
    assert "".join(pieces) == text


def test_a_multibyte_stop_string_cuts_before_it(smol_tokenizer):
    ids = smol_tokenizer.encode(TEXTS[0], add_special_tokens=False)
    assert "".join(stream(smol_tokenizer, ids, stop=("日本",))) == "Hello 🎉 world "
