"""From a request body to prompt token ids, off the event loop.

Decoding a 4 MB body, applying the chat template and tokenizing take
seconds on a small CPU; on the loop they would stall every stream and the
liveness probe with them (a pod restart). They run in a small thread pool
(the tokenizer releases the GIL), each worker with its own tokenizer copy
(a fast tokenizer shared across threads can fail with "Already borrowed").
A prompt whose characters alone prove it too long is refused before any of
that work: no token covers more characters than the longest vocabulary entry.
A request's grammar compiles after that, in a thread of its own (one at a
time), so tokenizing never waits behind a compile; a new grammar is compiled
first in the worker process, under the deadline (grammar_worker.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import queue
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from .grammar_worker import CompileSandbox, lower_priority
from .guided import Guide, GrammarError, Spec, check_caps
from .protocol import APIError, ChatRequest, CompletionRequest, parse
from .tools import forced_spec, render_messages, template_knows_tools

log = logging.getLogger(__name__)


class Preparer:
    def __init__(self, tokenizer: Any, max_model_len: int, workers: int = 2, max_pending: int = 64,
                 model_vocab: int | None = None, stop_ids: tuple[int, ...] = (), compile_timeout: float = 10.0,
                 embedding_rows: int | None = None):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = len(tokenizer)
        self.model_vocab = model_vocab or self.vocab_size
        # A prompt's token ids must be rows of the model's embedding (past them the engine
        # step fails for the whole batch) and tokens the tokenizer can write back (echo, logprobs).
        self.embedding_rows = embedding_rows or self.model_vocab
        self.prompt_ids_below = min(self.vocab_size, self.embedding_rows)
        self.native_tools = template_knows_tools(getattr(tokenizer, "chat_template", None))
        # xgrammar's view of the vocabulary: built once per model (~0.15 s for 49k tokens).
        # Without xgrammar (an image built before it joined the runtime extra) the server
        # still serves; requests that need a grammar get a 400 saying so.
        try:
            self.guide: Guide | None = Guide(tokenizer, self.model_vocab, stop_ids)
        except ImportError as e:
            log.warning("structured outputs and forced tool calls are off: %s", e)
            self.guide = None
        # Longest vocabulary entry in characters: a prompt of N characters has
        # at least N / this many tokens.
        self.max_token_chars = max((len(t) for t in tokenizer.get_vocab()), default=1) or 1
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
        self.max_pending = max_pending
        # Grammars: compiled first in the worker process, under the deadline, then in one thread of their own.
        self.sandbox = CompileSandbox(self.guide.tokenizer_info(), compile_timeout) if self.guide else None
        self.compiles = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar", initializer=lower_priority)
        self.waiting = {self.pool: 0, self.compiles: 0}  # per pool; touched on the event loop only
        self._proven: OrderedDict[str, None] = OrderedDict()  # grammars that compiled in time (most recent last)
        # One tokenizer per worker, copied and warmed now: a copy made on first
        # use holds the GIL ~150 ms, which would stall the event loop mid-serving.
        self._toks: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(workers):
            tok = copy.deepcopy(tokenizer)
            tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
            self._toks.put(tok)

    async def run(self, fn, *args):
        """``fn(*args)`` in the pool; a 429 when too many already wait."""
        return await self._queued(self.pool, self.max_pending, "requests being prepared", fn, *args)

    async def constrain(self, req: Any) -> None:
        """Compile the request's grammar, if it has one, in the compile thread (a queue of its own:
        grammars waiting to compile never fill the tokenizing pool's)."""
        if req._constraint is not None:
            req._guide = await self._queued(self.compiles, self.max_pending // 4, "grammars being compiled",
                                            self._compile, *req._constraint)

    async def _queued(self, pool: ThreadPoolExecutor, limit: int, what: str, fn, *args):
        if self.waiting[pool] >= limit:
            raise APIError(429, f"too many {what}; retry later", headers={"Retry-After": "1"})
        self.waiting[pool] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        finally:
            self.waiting[pool] -= 1

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()

    @contextmanager
    def _tok(self):
        tok = self._toks.get()  # never waits: there are as many copies as workers
        try:
            yield tok
        finally:
            self._toks.put(tok)

    def _too_long(self, chars: int, param: str) -> None:
        least = chars // self.max_token_chars
        if least >= self.max_model_len:
            raise APIError(400, f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                                f"prompt has at least {least} tokens.", param, code="context_length_exceeded")

    # -- in the pool ----------------------------------------------------------
    def _too_many(self, items: Any, param: str, what: str) -> None:
        """A list with more items than the context has tokens is refused
        before validation: pydantic holds the GIL (and so stalls the event
        loop) for ~12 ms per 1,000 messages."""
        if isinstance(items, list) and len(items) >= self.max_model_len:
            raise APIError(400, f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                                f"prompt has {len(items)} {what}, at least one token each.", param,
                           code="context_length_exceeded")

    def _constrain(self, req: Any, spec: Spec | None, param: str) -> None:
        """Check the request's logit_bias ids and its grammar's size and counts (a 400 of its own:
        nothing about it can fail in the engine); the grammar compiles later (``constrain``)."""
        for t, _ in req.logit_bias_pairs():
            if t >= self.model_vocab:
                raise APIError(400, f"logit_bias: token id {t} is not in [0, {self.model_vocab})", "logit_bias")
        if spec is not None:
            if self.guide is None:
                raise APIError(400, f"{param}: this server has no grammar engine (install xgrammar)", param)
            try:
                check_caps(spec)
            except GrammarError as e:
                raise APIError(400, f"{param}: {e}", param) from None
            req._constraint = (spec, param)

    # -- in the compile thread ----------------------------------------------------
    def _compile(self, spec: Spec, param: str) -> Any:
        try:
            key = spec.key()
            if key not in self._proven:
                self.sandbox.check(spec)  # compiles in the worker within the deadline, or raises
                self._proven[key] = None
                while len(self._proven) > 256:
                    self._proven.popitem(last=False)
            self._proven.move_to_end(key)
            return self.guide.compile(spec)
        except GrammarError as e:
            raise APIError(400, f"{param}: {e}", param) from None

    def chat(self, body: bytes) -> tuple[ChatRequest, list[list[int]]]:
        data = decode_json(body)
        self._too_many(data.get("messages") if isinstance(data, dict) else None, "messages", "messages")
        req = parse(ChatRequest, data)
        spec, param = req.constraint(), _constraint_param(data)
        if req.forced_tools:
            if spec is not None:
                raise APIError(400, f"tool_choice {req.tool_choice!r} and {param} cannot both hold the output",
                               "tool_choice")
            spec, param = forced_spec(req.tools or [], req.tool_choice, req.parallel_tool_calls), "tools"
        tools = req.tools if req.uses_tools else None
        native = self.native_tools and tools is not None
        try:
            messages = render_messages(req.messages, tools, native)
        except ValueError as e:
            raise APIError(400, f"messages: {e}", "messages") from None
        self._too_long(sum(len(m["content"]) for m in messages), "messages")
        self._constrain(req, spec, param)
        kw = {"tools": [t.model_dump(exclude_none=True) for t in tools]} if native and tools else {}
        with self._tok() as tok:
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kw)
            except Exception as e:  # template errors (e.g. role order) are the caller's
                raise APIError(400, f"chat template failed: {e}", "messages") from None
            return req, [tok.encode(text, add_special_tokens=False)]

    def completion(self, body: bytes) -> tuple[CompletionRequest, list[list[int]]]:
        data = decode_json(body)
        prompt = data.get("prompt") if isinstance(data, dict) else None
        for p in prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], list) else [prompt]:
            self._too_many(p, "prompt", "token ids")
        req = parse(CompletionRequest, data)
        self._constrain(req, req.constraint(), _constraint_param(data))
        out = []
        for p in req.prompts:  # strings or lists of token ids (see protocol)
            if isinstance(p, list):
                bad = next((t for t in p if t < 0 or t >= self.prompt_ids_below), None)
                if bad is not None:
                    raise APIError(400, f"prompt: token id {bad} is not in [0, {self.prompt_ids_below}) (the model "
                                        f"embeds {self.embedding_rows} ids, the tokenizer has {self.vocab_size})",
                                   "prompt")
                out.append(list(p))
                continue
            self._too_long(len(p), "prompt")
            with self._tok() as tok:
                out.append(tok.encode(p))
        return req, out


_CONSTRAINTS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs", "response_format")


def _constraint_param(data: dict) -> str:
    """The field that holds the request's grammar, for its 400."""
    return next((k for k in _CONSTRAINTS if data.get(k) is not None), "response_format")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no nesting deep enough to exhaust the
    stack, no lone surrogates (``"\\ud800"``, from a client that cut a string
    mid-emoji), which no tokenizer can encode."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise APIError(400, "malformed JSON body: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise APIError(400, f"malformed JSON body: {e}") from None
    _check_strings(data)
    return data


def _check_strings(data: Any) -> None:
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(400, "malformed JSON body: a string holds a lone UTF-16 surrogate") from None
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
