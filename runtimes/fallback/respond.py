"""Turning engine outputs into OpenAI response bodies and SSE streams."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from .async_engine import QueueFull, RequestStream
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
    if model is not None and model not in state.names:
        raise APIError(404, f"The model `{model}` does not exist.", "model", code="model_not_found")


async def serve(state: Any, request: Request, req, ids: list[int], chat: bool):
    n = len(ids)
    limit = state.max_model_len
    if n == 0:
        raise APIError(400, "prompt is empty", "prompt" if not chat else "messages")
    if n >= limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens. However, your prompt has {n} tokens.",
                       "messages" if chat else "prompt", code="context_length_exceeded")
    want = req.requested_max_tokens
    if want is not None and n + want > limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                            f"{n + want} tokens ({n} in the prompt, {want} for the completion).", req.max_tokens_param,
                       code="context_length_exceeded")
    try:
        params = req.sampling_params(want or req.default_max_tokens(limit - n))
    except ValueError as e:  # a value the sampler cannot use (the schema should have caught it)
        raise APIError(400, str(e)) from None
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    try:
        stream = state.engine.add(rid, ids, params)
    except QueueFull:
        raise APIError(429, "too many requests waiting; retry later", headers={"Retry-After": "1"}) from None
    head = Head(rid, req.model or state.names[0], state.fingerprint)
    outputs = _outputs(stream, request)
    if req.stream:
        return StreamingResponse(_sse(outputs, head, chat, req.include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return await _collect(outputs, head, chat)


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


def _usage(out: RequestOutput) -> dict:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens}


async def _collect(outputs: AsyncIterator[RequestOutput], head: Head, chat: bool):
    parts: list[str] = []
    last: RequestOutput | None = None
    try:
        async for out in outputs:
            parts.append(out.text)
            last = out
    except ValueError as e:  # the engine refused the request
        raise APIError(400, str(e)) from None
    except RuntimeError as e:  # this request failed in the engine; the engine keeps serving
        raise APIError(500, str(e)) from None
    if last is None or not last.finished:
        return Response(status_code=499)  # client gone; nobody reads this
    text = "".join(parts)
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": last.finish_reason, "logprobs": None}
        return head.body("chat.completion", choices=[choice], usage=_usage(last))
    choice = {"index": 0, "text": text, "finish_reason": last.finish_reason, "logprobs": None}
    return head.body("text_completion", choices=[choice], usage=_usage(last))


async def _sse(outputs: AsyncIterator[RequestOutput], head: Head, chat: bool, include_usage: bool):
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(body: dict) -> str:
        return "data: " + json.dumps(body) + "\n\n"

    def chunk(text: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta: dict = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        return event(head.body(obj, choices=[choice]))

    try:
        if chat:
            yield chunk(None, None, role=True)
        last = None
        async for out in outputs:
            last = out
            if out.text or out.finished:
                yield chunk(out.text, out.finish_reason if out.finished else None)
        if last is None or not last.finished:
            return  # client gone
        if include_usage:
            yield event(head.body(obj, choices=[], usage=_usage(last)))
        yield "data: [DONE]\n\n"
    except Exception as e:  # headers are sent: report in-band, as OpenAI does
        log.exception("stream %s failed", head.id)
        yield event(error_body(APIError(500, str(e))))
    finally:
        await outputs.aclose()


