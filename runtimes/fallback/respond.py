"""Turning engine outputs into OpenAI response bodies and SSE streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from .async_engine import QueueFull, RequestStream
from .choices import Choice
from .engine import RequestOutput
from .protocol import APIError, error_body

log = logging.getLogger("runtimes.fallback.server")


@dataclass(frozen=True)
class Head:
    """The fields that every response body and chunk of one request carries."""

    id: str
    model: str
    system_fingerprint: str
    created: int = field(default_factory=lambda: int(time.time()))  # when the request came

    def body(self, obj: str, **rest: Any) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": self.system_fingerprint, **rest}


def check(state: Any, model: str | None) -> None:
    if state.draining:
        raise APIError(503, "server is shutting down", headers={"Retry-After": "5"})
    if not state.ready:
        raise APIError(503, "model is loading", headers={"Retry-After": "5"})
    if model is not None and model not in state.names and not (state.lora is not None and model in state.lora):
        raise unknown_model(state.names, model)


def unknown_model(names: list[str], model: str) -> APIError:
    """vLLM's 404, plus the ids this server does serve: `serve NAME` serves the manifest's served name."""
    served = ", ".join(f"`{n}`" for n in names[:4]) + (" ..." if len(names) > 4 else "")
    return APIError(404, f"The model `{model}` does not exist. This server serves {served} (GET /v1/models).",
                    "model", code="model_not_found")


async def serve(state: Any, request: Request, req, prompts: list[list[int]], chat: bool):
    """Admit every sequence of the request (prompts x n) and answer once all
    have finished, or stream them, choices interleaved by index."""
    limit = state.max_model_len
    want = req.requested_max_tokens
    param = "messages" if chat else "prompt"
    for ids in prompts:
        n = len(ids)
        if n == 0:
            raise APIError(400, "prompt is empty", param)
        if n >= limit:
            raise APIError(400, f"This model's maximum context length is {limit} tokens. However, your prompt has {n} tokens.",
                           param, code="context_length_exceeded")
        if want is not None and n + want > limit:
            raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                f"{n + want} tokens ({n} in the prompt, {want} for the completion).", req.max_tokens_param,
                           code="context_length_exceeded")
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    texts = req.prompts if not chat else [None]
    lora = req.model if state.lora is not None and req.model not in state.names and req.model in state.lora else None
    streams: list[RequestStream] = []
    choices: list[Choice] = []
    try:
        for p, ids in enumerate(prompts):
            try:
                params = req.sampling_params(want if want is not None else req.default_max_tokens(limit - len(ids)))
            except ValueError as e:  # a value the sampler cannot use (the schema should have caught it)
                raise APIError(400, str(e)) from None
            for j in range(req.n):
                # Own params per sequence (the engine finds a failed draw by them); seeded choices differ.
                seed = None if params.seed is None else (params.seed + j) % 2**64
                ps = dataclasses.replace(params, seed=seed, lora_name=lora)
                index = p * req.n + j
                streams.append(state.engine.add(rid if len(prompts) * req.n == 1 else f"{rid}-{index}", ids, ps))
                text = texts[p] if isinstance(texts[p], str) else None
                choices.append(Choice(index, req, chat, state.words, ids, text))
    except QueueFull:
        for st in streams:
            st.close()
        raise APIError(429, "too many requests waiting; retry later", headers={"Retry-After": "1"}) from None
    except BaseException:
        for st in streams:
            st.close()
        raise
    head = Head(rid, req.model or state.names[0], state.fingerprint)
    outputs = [_outputs(st, request) for st in streams]
    usage = Usage(sum(len(ids) for ids in prompts))
    if req.stream:
        return StreamingResponse(_sse(outputs, choices, head, chat, req.include_usage, usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return await _collect(outputs, choices, head, chat, usage)


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0

    def body(self, choices: list[Choice]) -> dict:
        done = sum(c.last.completion_tokens for c in choices if c.last and not c.drop_output)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": done, "total_tokens": self.prompt_tokens + done}


async def _outputs(stream: RequestStream, request: Request) -> AsyncIterator[RequestOutput]:
    """The request's outputs; ends early, aborting the request and freeing
    its slot, when the client disconnects (checked while waiting, and at
    least every second while tokens flow)."""
    last_check = time.monotonic()
    try:
        while True:
            out = await stream.next(timeout=0.5)
            if out is None or time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if await request.is_disconnected():
                    log.info("client gone: aborting %s", stream.request_id)
                    return
            if out is None:
                continue
            yield out
            if out.finished:
                return
    finally:
        stream.close()


async def _merged(outputs: list[AsyncIterator[RequestOutput]]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """(choice, output) pairs from every sequence as they come; the first
    failure ends them all (the others are aborted as their streams close)."""
    if len(outputs) == 1:
        async for out in outputs[0]:
            yield 0, out
        return
    q: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, gen: AsyncIterator[RequestOutput]) -> None:
        try:
            async for out in gen:
                q.put_nowait((i, out))
        except Exception as e:
            q.put_nowait((i, e))
        finally:
            q.put_nowait((i, None))

    tasks = [asyncio.ensure_future(pump(i, g)) for i, g in enumerate(outputs)]
    try:
        live = len(tasks)
        while live:
            i, item = await q.get()
            if item is None:
                live -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        for g in outputs:
            await g.aclose()


async def _collect(outputs: list, choices: list[Choice], head: Head, chat: bool, usage: Usage):
    try:
        async for i, out in _merged(outputs):
            choices[i].add(out)
    except ValueError as e:  # the engine refused the request
        raise APIError(400, str(e)) from None
    except RuntimeError as e:  # this request failed in the engine; the engine keeps serving
        raise APIError(500, str(e)) from None
    if not all(c.finished for c in choices):
        return Response(status_code=499)  # client gone; nobody reads this
    # Off the event loop: parsing tool calls, decoding an echoed prompt (see Choice.body).
    bodies = await asyncio.to_thread(lambda: [c.body() for c in choices])
    return head.body("chat.completion" if chat else "text_completion", choices=bodies, usage=usage.body(choices))


async def _sse(outputs: list, choices: list[Choice], head: Head, chat: bool, include_usage: bool, usage: Usage):
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(body: dict) -> str:
        return "data: " + json.dumps(body) + "\n\n"

    def chunk(c: Choice, out: RequestOutput | None, text: str, finish: str | None, delta: dict | None = None) -> str:
        if chat:
            d = delta if delta is not None else ({"content": text} if text else {})
            lp = c.chat_logprobs(out.logprobs or []) if out is not None and out.logprobs else None
            choice = {"index": c.index, "delta": d, "finish_reason": finish, "logprobs": lp}
        else:
            lp = None
            if out is not None and c.req.logprobs is not None:
                first = out.prompt_logprobs is not None and c.echo
                lp = c.completion_logprobs([] if c.drop_output else (out.logprobs or []), first)
            choice = {"index": c.index, "text": text, "finish_reason": finish, "logprobs": lp}
        return event(head.body(obj, choices=[choice]))

    try:
        if chat:
            for c in choices:
                yield chunk(c, None, "", None, {"role": "assistant", "content": ""})
        elif any(c.echo for c in choices):
            pass  # the echoed prompt goes with each choice's first chunk
        started = set()
        async for i, out in _merged(outputs):
            c = choices[i]
            c.add(out)
            text = "" if c.drop_output else out.text
            if c.echo and i not in started:
                text = c.echo_text() + text
            started.add(i)
            if chat:
                text = c.delta_text(text)
            if c.tools and out.finished:
                rest, calls = await asyncio.to_thread(c.final_deltas)  # parses the calls: off the event loop
                if text + rest or out.logprobs:
                    yield chunk(c, out, text + rest, None)
                if calls:
                    deltas = [{"index": k, **call, "function": dict(call["function"])} for k, call in enumerate(calls)]
                    yield chunk(c, None, "", None, {"tool_calls": deltas})
                yield chunk(c, None, "", c.finish_reason(calls), {})
                continue
            if text or out.finished or (out.logprobs and not c.drop_output) or out.prompt_logprobs is not None:
                yield chunk(c, out, text, out.finish_reason if out.finished else None)
        if not all(c.finished for c in choices):
            return  # client gone
        if include_usage:
            yield event(head.body(obj, choices=[], usage=usage.body(choices)))
        yield "data: [DONE]\n\n"
    except Exception as e:  # headers are sent: report in-band, as OpenAI does
        log.exception("stream %s failed", head.id)
        yield event(error_body(APIError(500, str(e))))
    finally:
        for g in outputs:
            await g.aclose()
