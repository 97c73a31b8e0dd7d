"""One choice of a response, built from its engine outputs: text, echo,
logprobs in OpenAI's chat and completions shapes, and tool calls (whole, or
as stream deltas). respond.py drives one ``Choice`` per sequence.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from .engine import RequestOutput
from .tools import TAG as _TAG, parse_auto, parse_forced


class TokenText:
    """A token id's text, as vLLM shows it in logprobs (each id decoded
    alone), from a tokenizer copy of its own (the engine thread decodes with
    the original) and a cache."""

    def __init__(self, tokenizer: Any):
        self.tok = copy.deepcopy(tokenizer)
        self.cache: dict[int, str] = {}
        self.lock = threading.Lock()

    def __call__(self, token: int) -> str:
        s = self.cache.get(token)
        if s is None:
            with self.lock:
                s = self.tok.decode([token])
            if len(self.cache) < 200_000:
                self.cache[token] = s
        return s

    def text(self, ids: list[int]) -> str:
        with self.lock:
            return self.tok.decode(ids, skip_special_tokens=True)


class Choice:
    def __init__(self, index: int, req: Any, chat: bool, words: TokenText, prompt_ids: list[int], prompt_text: str | None):
        self.index, self.req, self.chat, self.words = index, req, chat, words
        self.prompt_ids = prompt_ids
        self.prompt_text = prompt_text
        self.parts: list[str] = []
        self.logprobs: list = []
        self.prompt_logprobs: list | None = None
        self.last: RequestOutput | None = None
        self.drop_output = not chat and req.max_tokens == 0  # score the prompt only
        self.echo = not chat and req.echo
        self.tools = chat and req.uses_tools
        self.forced = chat and req.forced_tools
        self.names = {t.function.name for t in req.tools or ()} if self.tools else set()
        self.sent = 0  # characters of text streamed as content (auto tools)
        self.holding = False  # auto tools: the rest may be a tool call, hold it back

    # -- feeding --------------------------------------------------------------
    def add(self, out: RequestOutput) -> None:
        self.last = out
        if out.prompt_logprobs is not None:
            self.prompt_logprobs = out.prompt_logprobs
        if self.drop_output:
            return
        self.parts.append(out.text)
        if out.logprobs:
            self.logprobs.extend(out.logprobs)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.finished

    def finish_reason(self, calls: list) -> str | None:
        reason = self.last.finish_reason if self.last else None
        return "tool_calls" if calls and reason == "stop" else reason

    # -- whole responses ----------------------------------------------------------
    def calls(self) -> tuple[str | None, list[dict]]:
        text = self.text
        if self.forced:
            return None, parse_forced(text, self.req.tool_choice)
        if self.tools:
            return parse_auto(text, self.names)
        return text, []

    def body(self) -> dict:
        if self.chat:
            content, calls = self.calls()
            msg: dict = {"role": "assistant", "content": content}
            if calls:
                msg["tool_calls"] = calls
            return {"index": self.index, "message": msg, "finish_reason": self.finish_reason(calls),
                    "logprobs": self.chat_logprobs(self.logprobs)}
        text = self.text
        if self.echo:
            text = self.echo_text() + text
        return {"index": self.index, "text": text, "finish_reason": self.last.finish_reason,
                "logprobs": self.completion_logprobs(self.logprobs, self.echo)}

    def echo_text(self) -> str:
        return self.prompt_text if self.prompt_text is not None else self.words.text(self.prompt_ids)

    # -- logprobs -----------------------------------------------------------------
    def chat_logprobs(self, entries: list) -> dict | None:
        if not self.req.logprobs:
            return None
        w = self.words

        def item(tok: int, lp: float) -> dict:
            s = w(tok)
            return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}

        return {"content": [{**item(t, lp), "top_logprobs": [item(a, b) for a, b in alts]} for t, lp, alts in entries]}

    def completion_logprobs(self, entries: list, with_prompt: bool, offset: int = 0) -> dict | None:
        if self.req.logprobs is None:
            return None
        w = self.words
        tokens: list[str] = []
        lps: list[float | None] = []
        tops: list[dict | None] = []
        if with_prompt:
            tokens.append(w(self.prompt_ids[0]))
            lps.append(None)
            tops.append(None)
            entries = list(self.prompt_logprobs or []) + list(entries)
        for t, lp, alts in entries:
            tokens.append(w(t))
            lps.append(lp)
            top = {w(a): b for a, b in alts}
            top[w(t)] = lp  # the chosen token is always listed, as OpenAI does
            tops.append(top)
        offsets = []
        for s in tokens:
            offsets.append(offset)
            offset += len(s)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}

    # -- streaming ----------------------------------------------------------------
    def delta_text(self, new: str) -> str:
        """Chat content to stream now. With tools: forced output is held
        whole; auto output is held from where it may turn into a call."""
        if not self.tools:
            return new
        if self.forced or self.holding:
            return ""
        text = self.text
        rest = text[self.sent:]
        if self.sent == 0 and not _plain(rest):
            return ""  # the output so far may be a call: wait
        if _TAG in rest:
            self.holding = True
            rest = rest[: rest.index(_TAG)]
        else:
            for n in range(min(len(_TAG) - 1, len(rest)), 0, -1):  # a tag may be starting
                if rest.endswith(_TAG[:n]):
                    rest = rest[:-n]
                    break
        self.sent += len(rest)
        return rest

    def final_deltas(self) -> tuple[str, list[dict]]:
        """At the end of a tools stream: content not yet sent, and the calls."""
        if not self.tools:
            return "", []
        content, calls = self.calls()
        if calls:
            return "", calls
        text = self.text
        return text[self.sent:], []


def _plain(text: str) -> bool:
    """Output that can no longer be a call from its start (auto tools)."""
    t = text.lstrip()
    return bool(t) and not (t.startswith("{") or _TAG.startswith(t[: len(_TAG)]) or t.startswith(_TAG)
                            or "<|python_tag|>".startswith(t[:14]) or t.startswith("<|python_tag|>"))
