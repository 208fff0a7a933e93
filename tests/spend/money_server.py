"""A loopback OpenAI-compatible chat server for the money-path tests: every reply says what the
test tells it to, however hostile: any ``usage`` figures (negative, NaN, 1e30: Python's json
writes ``NaN`` and ``Infinity``, which the OpenAI client reads), any ``finish_reason``, a delay
before answering, an error status. Standard library only, 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from servers._base import QuietHandler, RecordedRequest, ThreadedTestServer


@dataclass
class Reply:
    """One reply: ``usage`` is sent as is (None: no usage); ``status`` other than 200 is an error."""

    text: str = "Paris"
    finish_reason: str | None = "stop"
    usage: dict[str, Any] | None = field(default_factory=lambda: {"prompt_tokens": 10, "completion_tokens": 2,
                                                                   "total_tokens": 12})
    delay_s: float = 0.0
    status: int = 200
    tool_call: tuple[str, str] | None = None  # (name, arguments as the model wrote them: any text)


class _Handler(QuietHandler):
    server_state: MoneyServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        raw = self.read_body()
        body = json.loads(raw or b"{}")
        state = self.server_state
        state.record(RecordedRequest("POST", self.path, {}, raw, model=body.get("model"),
                                     stream=bool(body.get("stream"))))
        reply = state.next_reply()
        state.arrived.set()
        if reply.delay_s:
            state.stopping.wait(reply.delay_s)
        if reply.status != 200:
            return self.send_json(reply.status, {"error": {"message": "server error", "type": "server_error"}})
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_call is not None:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function",
                 "function": {"name": reply.tool_call[0], "arguments": reply.tool_call[1]}}]}
        base = {"id": "chatcmpl-money", "created": int(time.time()), "model": body.get("model", "?")}
        if not body.get("stream"):
            payload = {**base, "object": "chat.completion",
                       "choices": [{"index": 0, "finish_reason": reply.finish_reason, "message": message}]}
            if reply.usage is not None:
                payload["usage"] = reply.usage
            return self.send_bytes(200, json.dumps(payload).encode())
        self.start_chunked(200, "text/event-stream")
        events = [{"choices": [{"index": 0, "delta": message, "finish_reason": None}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}]
        if reply.usage is not None:
            events.append({"choices": [], "usage": reply.usage})
        for event in events:
            self.write_chunk(b"data: " + json.dumps({**base, "object": "chat.completion.chunk", **event}).encode()
                             + b"\n\n")
        self.write_chunk(b"data: [DONE]\n\n")
        self.end_chunked()


class MoneyServer(ThreadedTestServer):
    """Answers ``POST /v1/chat/completions`` with ``replies`` in turn (the last one repeats)."""

    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[Reply] = [Reply()]
        self.arrived = threading.Event()  # set when a request has reached the server

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies)
        self.arrived.clear()

    def next_reply(self) -> Reply:
        with self._lock:
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"
