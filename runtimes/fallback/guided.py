"""Structured outputs through xgrammar (the grammar engine vLLM uses).

``Guide`` is built once per model (the tokenizer's vocabulary, as xgrammar
needs it) and compiles a request's JSON schema, regex, choice list or EBNF
grammar in the preparer's thread pool, before the request is admitted: a
grammar that does not compile is that request's own 400, and the engine
thread never compiles. Compiled grammars are cached by xgrammar (bounded).
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
# time grows with it and the pool is shared by every request.
MAX_SPEC_CHARS = 64 * 1024
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
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=list(stop_ids) or None)
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=True, cache_limit_bytes=_CACHE_BYTES)
        self._lock = threading.Lock()  # one compile at a time: the compiler's cache is shared

    def compile(self, spec: Spec) -> Any:
        if len(spec.key()) > MAX_SPEC_CHARS:
            raise GrammarError(f"the {spec.kind} constraint is over {MAX_SPEC_CHARS} characters")
        c = self.compiler
        try:
            with self._lock:
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
