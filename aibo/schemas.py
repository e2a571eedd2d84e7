"""What every part of the JSON API answers alike: the error body, and the errors an endpoint
may give (so the OpenAPI document lists them and clients can rely on them)."""

from __future__ import annotations

from typing import Any

from ninja import Schema


class Error(Schema):
    detail: str
    errors: list[dict[str, Any]] | None = None  # a 422's problems, each with its field (loc)


def errors(*codes: int) -> dict[int, type[Error]]:
    """``{code: Error}`` for an endpoint's ``response``: 401 and 429 everywhere, and ``codes``."""
    return dict.fromkeys((401, 429, *codes), Error)
