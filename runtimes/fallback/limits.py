"""The gate in front of the app (plain ASGI, so nothing reaches FastAPI
unchecked): API key, content type, body size and body-read deadline.

Why each: an unauthenticated client must not make us read 4 MB; only JSON
bodies are taken, because a ``text/plain`` POST needs no CORS preflight and
any web page could send one to a server on 127.0.0.1; a body over the limit
is refused before it is buffered; a client that trickles its body is cut off
instead of holding a connection for ever."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from runtimes.api_keys import allowed, refuse

from .protocol import APIError, error_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Limits:
    keys: tuple[bytes, ...] = ()
    max_body: int = 4 << 20
    body_timeout: float = 30.0


async def send_error(send: Send, err: APIError) -> None:
    body = json.dumps(error_body(err)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Callable, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lim = self.limits
        if scope["type"] in ("http", "websocket") and not allowed(scope, scope["path"], lim.keys):
            return await refuse(scope, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())  # last value wins; names are lower-case in ASGI
        if scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            return await send_error(send, APIError(415, "Content-Type must be application/json."))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > lim.max_body):
            return await send_error(send, _too_large(lim.max_body))
        body = await self._read(receive, send)
        if body is None:
            return

        done = False

        async def replay() -> dict:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body within the size and time limits; None when an
        error was sent or the client left."""
        lim = self.limits
        deadline = time.monotonic() + lim.body_timeout
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                await send_error(send, APIError(408, f"request body not received within {lim.body_timeout:g} s"))
                return None
            if msg["type"] == "http.disconnect":
                return None
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > lim.max_body:
                await send_error(send, _too_large(lim.max_body))
                return None
            parts.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(parts)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body exceeds {limit} bytes (--max-request-body)")


def header_deadline_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose first request line
    and headers have not arrived within `seconds` (uvicorn has no such timer:
    a client trickling its headers held a connection for ever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(seconds, self._header_deadline)

        def _header_deadline(self) -> None:
            if self.cycle is None and not self.transport.is_closing():  # no request has started
                self.transport.close()

        def connection_lost(self, exc) -> None:
            self._header_timer.cancel()
            super().connection_lost(exc)

    return HeaderDeadline
