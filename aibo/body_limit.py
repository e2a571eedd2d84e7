"""Request bodies over ``MAX_REQUEST_BODY_BYTES`` are answered 413 before they are read.

Django's ASGI handler reads (and spools to disk) the whole body before the first middleware or
view runs, so a 300 MB anonymous POST would be taken in just to be refused. This middleware sits
in front of it: a declared ``Content-Length`` over the cap is refused without reading a byte,
and a body without one (chunked) is counted as it streams and cut off at the cap. No view takes
file uploads; Django's own ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is set to the same cap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _answer(send: Send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
                (b"connection", b"close"),  # the rest of the body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})


class BodySizeLimit:
    def __init__(self, application: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        limit = settings.MAX_REQUEST_BODY_BYTES
        lengths = [v for k, v in scope.get("headers", []) if k == b"content-length"]
        if lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                await _answer(send, 400, b"Bad Content-Length.\n")
                return
            if int(lengths[0]) > limit:
                await _answer(send, 413, b"Request body too large.\n")
                return

        received = 0
        refused = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _answer(send, 413, b"Request body too large.\n")
                    # Django's handler takes this as the client gone and sends nothing more.
                    return {"type": "http.disconnect"}
            return message

        await self.application(scope, counted, send)
