"""A fake Anthropic Messages API behind an httpx2 MockTransport, for the real SDK to talk to.

Responses have the shapes the API records: messages (`msg_…`, `toolu_…`, usage), and errors
as `{"type": "error", "error": {"type": …, "message": …}, "request_id": …}` with their
status codes and headers. The SDK retries 408/409/429/5xx/529 itself, sleeping for the
`retry-after-ms` header first (then `retry-after`), so error replies here send
`retry-after-ms: 1` to keep the tests fast.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import httpx2

Reply = httpx2.Response | Callable[[httpx2.Request], httpx2.Response]

MODEL = "claude-sonnet-4-6"
TOOL_NAME = "submit_grid_suggestion"

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_01{next(_ids):022d}"


def _headers(**extra: str) -> dict[str, str]:
    return {"content-type": "application/json", "request-id": _id("req"), **extra}


def message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str,
    model: str = MODEL,
    input_tokens: int = 1480,
    output_tokens: int = 312,
    stop_details: dict[str, Any] | None = None,
) -> httpx2.Response:
    body = {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": stop_details,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        },
    }
    return httpx2.Response(200, headers=_headers(), json=body)


def tool_use(
    tool_input: dict[str, Any], *, name: str = TOOL_NAME, **kwargs: Any
) -> httpx2.Response:
    block = {"type": "tool_use", "id": _id("toolu"), "name": name, "input": tool_input}
    return message([block], stop_reason="tool_use", **kwargs)


def refusal(**kwargs: Any) -> httpx2.Response:
    text = {"type": "text", "text": "I can't help with that request."}
    details = {"type": "refusal", "category": None, "explanation": None}
    return message([text], stop_reason="refusal", stop_details=details, **kwargs)


def text_only(text: str = "Here are my thoughts on the grid.", **kwargs: Any) -> httpx2.Response:
    return message([{"type": "text", "text": text}], stop_reason="end_turn", **kwargs)


def error(status: int, kind: str, text: str, **headers: str) -> httpx2.Response:
    body = {"type": "error", "error": {"type": kind, "message": text}, "request_id": _id("req")}
    return httpx2.Response(status, headers=_headers(**headers), json=body)


def overloaded() -> httpx2.Response:
    return error(529, "overloaded_error", "Overloaded", **{"retry-after-ms": "1"})


def rate_limited() -> httpx2.Response:
    return error(
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. Please try again later.",
        **{"retry-after": "1", "retry-after-ms": "1"},
    )


def authentication_error() -> httpx2.Response:
    return error(401, "authentication_error", "invalid x-api-key")


def bad_request(text: str) -> httpx2.Response:
    return error(400, "invalid_request_error", text)


def read_timeout(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ReadTimeout("The read operation timed out", request=request)


def suggestion_input(**overrides: Any) -> dict[str, Any]:
    """A well-formed tool input for a market around 65 000."""
    data: dict[str, Any] = {
        "grid_lower": 62000.5,
        "grid_upper": 68000,
        "num_levels": 20,
        "spacing": "geometric",
        "stop_loss_pct": 3.5,
        "take_profit": 70500.25,
        "confidence": 72,
        "risk_level": "medium",
        "reasoning": "The price has ranged between 62k and 68k for a week with steady volume.",
    }
    data.update(overrides)
    return data


class FakeAnthropic:
    """The MockTransport handler: records every request, answers from a scripted queue.

    A queued item is a response, or a callable taking the request (to raise a timeout).
    """

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.requests: list[httpx2.Request] = []
        self.responses: list[httpx2.Response] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        if not self.replies:
            return bad_request(
                f"fake Anthropic: no scripted reply for request {len(self.requests)}"
            )
        reply = self.replies.popleft()
        response = reply(request) if callable(reply) else reply
        self.responses.append(response)
        return response

    def http_client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]
