"""What the tests may assert about the real model's words, and the check that
each such fact holds on any x86-64 CPU.

Greedy decoding picks the top token; a CPU with other SIMD (AVX2, AVX-512,
AMX) makes torch and oneDNN pick other kernels, which moves every logprob a
little (measured here: at most 0.25 nats between ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2``, ``ONEDNN_MAX_CPU_ISA=AVX512_CORE`` and native
AVX-512 on an AMD EPYC). Where the top two tokens are closer than that, another
CPU may take the other one, and a test that reads the exact words then tests
the CPU. So a fact is checked on every greedy path: wherever the runner-up is
within ``DELTA`` nats of the top token, the runner-up's path is followed too,
and the fact must hold on all of them (``tests/runtime/test_answers.py``).

A test that reads the model's words uses a fact from here (or a property that
holds for any answer: a grammar-held answer parses, a cut answer says
``length``) and carries the ``model_output`` marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

# 4x the largest kernel-to-kernel drift seen (0.25 nats): a flip needs both
# CPUs to move the two tokens apart by this much.
DELTA = 1.0
# "What is the capital of France?" is not a fact: its first answer token is a
# near-tie ("The" 0.10 nats over "L'Étoile, ..."), and some of those paths
# never say Paris. This wording's smallest margin on the way to "Paris" is
# 2.3 nats, with no near-tie at all.
CAPITAL_Q = "Complete the sentence: The capital of France is"
JAPAN_Q = "Complete the sentence: The capital of Japan is"
SUM_Q = "What is 2+2? Reply with the number only."
TERSE = "You are a terse assistant. " * 12  # a system prompt over one 16-token KV block

@dataclass(frozen=True)
class Fact:
    """``holds(text, finished)`` on the greedy answer to ``prompt`` within
    ``max_tokens`` tokens, whatever the near-ties do. ``chat``: the prompt is
    one user message through the chat template; else a raw completion."""

    name: str
    prompt: str
    max_tokens: int
    holds: Callable[[str, bool], bool] = field(repr=False)
    chat: bool = True
    system: str | None = None  # a system message before the user's (chat only)

    @property
    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": self.prompt}]


def contains(word: str) -> Callable[[str, bool], bool]:
    return lambda text, finished: word in text


def first_word(word: str) -> Callable[[str, bool], bool]:
    """The answer's first word is ``word`` (decided once whitespace follows it)."""
    def holds(text: str, finished: bool) -> bool:
        m = re.match(r"\s*(\S+)(\s|$)", text)
        return bool(m) and m.group(1) == word and (bool(m.group(2)) or finished)
    return holds


def stops() -> Callable[[str, bool], bool]:
    return lambda text, finished: finished


# Smallest margin on the way (nats, measured on AMD EPYC, native kernels) in
# each comment; ``test_answers.py`` prints them all.
FACTS = {f.name: f for f in (
    Fact("capital-chat", CAPITAL_Q, 12, contains("Paris")),  # 2.33
    Fact("capital-chat-terse", CAPITAL_Q, 8, contains("Paris"), system=TERSE),  # 2.02
    Fact("japan-chat-terse", JAPAN_Q, 8, contains("Tokyo"), system=TERSE),  # 2.08
    Fact("capital-completion", "The capital of France is", 1, lambda t, f: t == " Paris", chat=False),  # 2.43
    Fact("paris-first-word", "The capital of France is", 4, first_word("Paris."), chat=False),  # 1.28
    Fact("madrid-first-word", "The capital of Spain is", 4, first_word("Madrid."), chat=False),  # 1.16
    Fact("tokyo-first-word", "The capital of Japan is", 4, first_word("Tokyo."), chat=False),  # 1.24
    # Near-ties here (8 paths, smallest margin 0.13), but every one of them ends within 12 tokens.
    Fact("sum-stops-short", SUM_Q, 12, stops()),
)}


@dataclass
class Path:
    tokens: list[int]
    margins: list[float]  # top-1 minus top-2 logprob at each step
    held: bool
    finished: bool


def explore(next_top2: Callable[[list[int]], tuple[tuple[int, float], tuple[int, float]]], decode: Callable[[list[int]], str],
            prompt_ids: list[int], fact: Fact, eos: set[int], delta: float = DELTA, max_paths: int = 256) -> list[Path]:
    """Every greedy path that a drift under ``delta / 2`` per token could take,
    each followed until the fact holds, the model stops or ``max_tokens``."""
    paths: list[Path] = []
    todo: list[tuple[list[int], list[float]]] = [([], [])]
    while todo:
        toks, margins = todo.pop()
        while True:
            finished = bool(toks) and toks[-1] in eos
            text = decode([t for t in toks if t not in eos])
            if fact.holds(text, finished) or finished or len(toks) >= fact.max_tokens:
                paths.append(Path(toks, margins, fact.holds(text, finished), finished))
                break
            (a, la), (b, lb) = next_top2(prompt_ids + toks)
            if la - lb < delta:
                todo.append((toks + [b], margins + [la - lb]))
                if len(paths) + len(todo) > max_paths:
                    raise AssertionError(f"{fact.name}: more than {max_paths} near-tie paths; pick a sharper fact")
            toks, margins = toks + [a], margins + [la - lb]
    return paths


def prompt_ids(tokenizer: Any, fact: Fact) -> list[int]:
    if fact.chat:
        text = tokenizer.apply_chat_template(fact.messages, tokenize=False, add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(fact.prompt)
