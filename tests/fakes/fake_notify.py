"""A local fake of what notifications talk to, over real HTTP on 127.0.0.1: webhook receivers
and the Telegram Bot API's ``sendMessage``.

    with FakeNotify() as fake:
        settings.TELEGRAM_API_URL = fake.telegram_api_url
        fake.add_telegram_bot(TOKEN, chats={"42"})
        url = fake.webhook_url("mine")          # POSTs here are recorded
        ...
        fake.webhook_requests("mine")[0].json   # what arrived, headers and raw body
        fake.telegram_messages(TOKEN)           # [{"chat_id": "42", "text": ...}]

Telegram's answers have the Bot API's shapes (``{"ok": true, "result": Message}``; errors
``{"ok": false, "error_code": 401, "description": "Unauthorized"}``, ``400 Bad Request: chat
not found``, ``429 Too Many Requests: retry after N`` with ``parameters.retry_after``).
``fail_next`` makes the next answers of a webhook or a bot fail with a status, ``delay``
makes a webhook slow. Nothing here is aibo's code: it only records and answers.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Failure:
    status: int
    count: int
    retry_after: int | None = None


class FakeNotify:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._bots: dict[str, set[str]] = {}
        self._failures: dict[str, _Failure] = {}
        self._delays: dict[str, float] = {}
        self._message_ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeNotify:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- set-up -------------------------------------------------------------------------------

    def webhook_url(self, name: str) -> str:
        return f"{self.url}/hooks/{name}"

    @property
    def telegram_api_url(self) -> str:
        return f"{self.url}/telegram"

    def add_telegram_bot(self, token: str, *, chats: set[str]) -> None:
        with self._lock:
            self._bots[token] = set(chats)

    def fail_next(
        self, target: str, *, status: int = 500, count: int = 1, retry_after: int | None = None
    ) -> None:
        """The next ``count`` requests to webhook ``target`` (its name) or Telegram bot
        ``target`` (its token) are answered with ``status``."""
        with self._lock:
            self._failures[target] = _Failure(status, count, retry_after)

    def delay(self, name: str, seconds: float) -> None:
        with self._lock:
            self._delays[name] = seconds

    # --- what arrived -------------------------------------------------------------------------

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def webhook_requests(self, name: str) -> list[Received]:
        return [r for r in self.received() if r.path == f"/hooks/{name}"]

    def telegram_messages(self, token: str) -> list[dict[str, Any]]:
        prefix = f"/telegram/bot{token}/sendMessage"
        return [r.json for r in self.received() if r.path == prefix]

    def wait_for(self, count: int, *, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(got := self.received()) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.received())}")

    # --- answering ----------------------------------------------------------------------------

    def _failure(self, target: str) -> _Failure | None:
        with self._lock:
            failure = self._failures.get(target)
            if failure is None or failure.count <= 0:
                return None
            failure.count -= 1
            return failure

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        with self._lock:
            self._received.append(Received(path, headers, body))
        if path.startswith("/hooks/"):
            name = path.removeprefix("/hooks/")
            if seconds := self._delays.get(name):
                time.sleep(seconds)
            if failure := self._failure(name):
                extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
                return failure.status, extra, b"receiver trouble"
            return 204, {}, b""
        if path.startswith("/telegram/bot") and path.endswith("/sendMessage"):
            token = path.removeprefix("/telegram/bot").removesuffix("/sendMessage")
            return self._telegram(token, body)
        return 404, {}, b"not found"

    def _telegram(self, token: str, body: bytes) -> _Answer:
        with self._lock:
            chats = self._bots.get(token)
        if chats is None:
            return _tg_error(401, "Unauthorized")
        if failure := self._failure(token):
            if failure.status == 429:
                after = failure.retry_after or 1
                return _tg_error(429, f"Too Many Requests: retry after {after}", retry_after=after)
            return _tg_error(failure.status, "Internal Server Error")
        try:
            sent = json.loads(body)
        except ValueError:
            return _tg_error(400, "Bad Request: can't parse JSON")
        chat_id = str(sent.get("chat_id", ""))
        if chat_id not in chats:
            return _tg_error(400, "Bad Request: chat not found")
        if not str(sent.get("text", "")).strip():
            return _tg_error(400, "Bad Request: message text is empty")
        if len(sent["text"]) > 4096:
            return _tg_error(400, "Bad Request: message is too long")
        result = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else 0, "type": "private"},
            "text": sent["text"],
        }
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"ok": True, "result": result}).encode(),
        )


def _tg_error(code: int, description: str, *, retry_after: int | None = None) -> _Answer:
    answer: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        answer["parameters"] = {"retry_after": retry_after}
    return code, {"Content-Type": "application/json"}, json.dumps(answer).encode()


def _handler_for(fake: FakeNotify) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, headers, answer = fake.answer(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
