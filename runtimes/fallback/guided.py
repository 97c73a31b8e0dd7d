"""Structured outputs through xgrammar (the grammar engine vLLM uses).

``Guide`` is built once per model (the tokenizer's vocabulary, as xgrammar
needs it) and compiles a request's JSON schema, regex, choice list or EBNF
grammar before the request is admitted: a grammar that does not compile is
that request's own 400, and the engine thread never compiles. Compiled
grammars are cached by xgrammar (bounded). What a compile may cost is held
three ways: the size of the constraint, caps on the counts that make a JSON
schema's grammar grow (``check_caps``), and a deadline, kept by compiling each
new grammar first in a worker process (``grammar_worker.py``); the preparer
compiles in a thread of its own, never in the pool that tokenizes.
``Matcher`` is one request's position in its grammar: it fills the row's
token mask before each draw and follows the drawn token after it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import torch

# A schema or grammar larger than this is refused before compiling: compile
# time grows with it.
MAX_SPEC_CHARS = 64 * 1024
# Per object, enum and anyOf/oneOf/allOf of a JSON schema. Measured here (xgrammar 0.2.9, SmolLM2's
# 49k-token vocabulary): 256 optional properties compile in 0.24 s, 800 in 3.1 s (about n^2.2: 2,000 > 20 s);
# 1,024 enum values in 0.03 s; 256 object branches in 0.03 s.
CAPS = {"properties": 256, "enum": 1024, "anyOf": 256, "oneOf": 256, "allOf": 256}
_CACHE_BYTES = 64 * 2**20


class GrammarError(ValueError):
    """The request's grammar cannot be used; the message says why."""


@dataclass(frozen=True)
class Spec:
    """What a request constrains its output to: one of these kinds."""

    kind: str  # "json" (schema), "json_object", "regex", "choice", "grammar"
    value: Any = None

    def key(self) -> str:
        return self.kind + ":" + (self.value if isinstance(self.value, str) else json.dumps(self.value, sort_keys=True))


class Guide:
    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: tuple[int, ...] = ()):
        import xgrammar as xgr

        self._xgr = xgr
        self.info = info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                              stop_token_ids=list(stop_ids) or None)
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=True, cache_limit_bytes=_CACHE_BYTES)
        self._lock = threading.Lock()  # one compile at a time: the compiler's cache is shared

    def tokenizer_info(self) -> str:
        """The vocabulary as xgrammar holds it, for the worker process (1.6 MB for 49k tokens)."""
        return self.info.serialize_json()

    def compile(self, spec: Spec) -> Any:
        check_caps(spec)
        with self._lock:
            return compile_spec(self.compiler, spec)


def check_caps(spec: Spec) -> None:
    """Refuse what would compile for long: a constraint over ``MAX_SPEC_CHARS``, or a JSON
    schema with more than ``CAPS`` entries in one object's properties, one enum or one
    anyOf/oneOf/allOf (the message names where, how many and the cap)."""
    if len(spec.key()) > MAX_SPEC_CHARS:
        raise GrammarError(f"the {spec.kind} constraint is over {MAX_SPEC_CHARS} characters")
    stack = [("$", spec.value)] if spec.kind == "json" else []
    while stack:
        where, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(node))
        elif isinstance(node, dict):
            for key, cap in CAPS.items():
                n = len(node[key]) if isinstance(node.get(key), (dict, list)) else 0
                if n > cap:
                    raise GrammarError(f"{where}.{key} has {n} entries; the cap is {cap}")
            stack.extend((f"{where}.{k}", v) for k, v in node.items())


def compile_spec(c: Any, spec: Spec) -> Any:
    """``spec`` compiled by the xgrammar compiler ``c``; GrammarError says why not."""
    try:
        if spec.kind == "json":
            # Compact JSON: a small model given free whitespace can loop on it.
            return c.compile_json_schema(json.dumps(spec.value), any_whitespace=False, strict_mode=True)
        if spec.kind == "json_object":  # OpenAI's json_object: an object, not any JSON value
            return c.compile_json_schema('{"type": "object"}', any_whitespace=False, strict_mode=False)
        if spec.kind == "regex":
            re.compile(spec.value)  # Python's own check first: a clearer message
            return c.compile_regex(spec.value)
        if spec.kind == "choice":
            return c.compile_regex("|".join(re.escape(str(x)) for x in spec.value))
        if spec.kind == "grammar":
            return c.compile_grammar(spec.value)
    except re.error as e:
        raise GrammarError(f"invalid regex: {e}") from None
    except (RuntimeError, ValueError, TypeError) as e:
        why = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", str(e).strip().splitlines()[-1])  # xgrammar's log prefix
        raise GrammarError(f"invalid {spec.kind} constraint: {why[:300]}") from None
    raise GrammarError(f"unknown constraint kind {spec.kind!r}")



class Matcher:
    def __init__(self, compiled: Any, vocab_size: int):
        import xgrammar as xgr

        self._xgr = xgr
        self.m = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)

    def mask(self, row: torch.Tensor) -> None:
        self.m.fill_next_token_bitmask(self.bitmask, 0)
        self._xgr.apply_token_bitmask_inplace(row.unsqueeze(0), self.bitmask.to(row.device))

    def accept(self, token: int) -> bool:
        return bool(self.m.accept_token(token))

    @property
    def done(self) -> bool:
        return bool(self.m.is_terminated())
