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


def _reference(text: str, stops: tuple[str, ...]) -> tuple[int | None, int]:
    """Brute force: where the first stop string to complete begins (None: none does), and
    how many trailing characters might begin one."""
    for end in range(1, len(text) + 1):
        begins = [end - len(s) for s in stops if text[:end].endswith(s)]
        if begins:
            return min(begins), 0
    return None, max((n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)


def test_the_stop_automata_agree_with_brute_force():
    import random

    from runtimes.fallback.detokenizer import StopMatcher

    rng = random.Random(20)
    for _ in range(3000):
        stops = tuple("".join(rng.choice("ab") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 4)))
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 30)))
        m, fed, hit = StopMatcher(stops), 0, None
        while fed < len(text) and hit is None:  # fed in random chunks, as tokens come
            nxt = min(len(text), fed + rng.randint(1, 5))
            hit, fed = m.feed(text[:nxt], fed), nxt
        want_hit, want_pending = _reference(text[:fed], stops)
        assert hit == want_hit, (stops, text[:fed])
        if hit is None:
            assert m.pending == want_pending, (stops, text)


def test_long_stop_strings_cost_only_the_new_text(smol_tokenizer):
    # Issue 20: 16 stop strings of 40k characters made every step slice each one against the whole
    # text (255 ms a token at 4,400 characters). Now a step costs its new characters times the stop strings.
    import time

    stops = tuple(f"{i:02d}" + "z" * 998 for i in range(16)) + ("zz" * 500,)
    d = IncrementalDetokenizer(smol_tokenizer, stops)
    ids = smol_tokenizer.encode("the quick brown fox jumps over the lazy dog zz " * 120, add_special_tokens=False)
    t0 = time.perf_counter()
    for t in ids:
        d.add(t)
        d.take()
    per_token = (time.perf_counter() - t0) / len(ids)
    assert not d.stopped and len(d.text) > 5000
    assert per_token < 0.002, f"{per_token * 1000:.2f} ms a token"
