"""An Ollama test server: the ``/api/chat`` wire protocol ``ChatOllama`` speaks, on 127.0.0.1.

``POST /api/chat`` answers JSON (``"stream": false``) or NDJSON lines (the default): partial
messages with ``"done": false``, then a final line with ``done_reason``, ``prompt_eval_count`` and
``eval_count``. Tool calls are ``message.tool_calls[].function{name, arguments}``. ``POST /api/show``
describes a model. Errors are ``{"error": "..."}``. Keyless, like Ollama.

Example:
    >>> with OllamaTestServer() as server:
    ...     server.reply("Paris.")
    ...     ChatOllama(model="tinyllama", base_url=server.base_url).invoke("hi")

``done_reason`` may be forced with :attr:`done_reason` or per model :attr:`done_reasons` (``load``: an empty reply, as when Ollama
only loaded the model). Token counts: ``prompt_eval_count`` is ``ceil(bytes / 4)`` of the request's
messages, ``eval_count`` the number of words of the reply. Faults as in :mod:`servers._base`:
``truncate`` is ``done_reason: length``, ``no_final`` a stream that ends before its ``done`` line.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ._base import OVER_REPORT_TOKENS, REPLY_FAULTS, QuietHandler, RecordedRequest, ThreadedTestServer

DEFAULT_REPLY = "Paris is the capital of France."
ToolCall = tuple[str, dict[str, Any]]


class _OllamaHandler(QuietHandler):
    server_state: OllamaTestServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        state = self.server_state
        path = urlsplit(self.path).path
        body = self.read_body()
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        model, stream = request.get("model"), request.get("stream", True) is not False
        fault = state.faults.take() if path == "/api/chat" else None
        state.record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                     body, model, stream, fault.mode if fault else None))
        if path == "/api/show":
            return self.send_json(200, {"modelfile": "", "parameters": "", "details": {"family": "llama"}})
        if path != "/api/chat":
            return self.send_json(404, {"error": f"no route for POST {path}"})
        reply_fault = fault.mode if fault is not None and fault.mode in REPLY_FAULTS else None
        if fault is not None and reply_fault is None:
            return self._fault(fault)
        reply = state.reply_for(model, request)
        extra = OVER_REPORT_TOKENS if reply_fault == "over_report" else 0
        forced = state.done_reasons.get(model) or state.done_reason
        reason = "length" if reply_fault == "truncate" else (forced or "stop")
        text = "" if reason == "load" or not isinstance(reply, str) else reply
        final = {"model": model, "created_at": "2026-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason,
                 "total_duration": 1000, "load_duration": 10,
                 "prompt_eval_count": math.ceil(len(json.dumps(request.get("messages")).encode()) / 4) + extra,
                 "eval_count": len(text.split()) + extra}
        if not isinstance(reply, str):
            final["message"]["tool_calls"] = [{"function": {"name": reply[0], "arguments": reply[1]}}]
        if not stream:
            final["message"]["content"] = text
            return self.send_json(200, final)
        self.start_chunked(200, "application/x-ndjson")
        for piece in _pieces(text, state.stream_chunks):
            line = {"model": model, "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": piece}, "done": False}
            self.write_chunk(json.dumps(line).encode() + b"\n")
        if reply_fault != "no_final":
            self.write_chunk(json.dumps(final).encode() + b"\n")
        self.end_chunked()

    def _fault(self, fault: Any) -> None:
        if fault.mode == "rate_limit":
            self.send_json(429, {"error": "too many requests"}, headers={"Retry-After": f"{fault.retry_after_s:g}"})
        elif fault.mode in ("server", "unavailable"):
            self.send_json(500 if fault.mode == "server" else 503, {"error": "model runner has unexpectedly stopped"})
        elif fault.mode == "malformed":
            self.send_bytes(200, b'{"model": "m", "message": {"content": "Par', "application/x-ndjson")
        elif fault.mode == "hang":
            self.server_state.stopping.wait(fault.hang_s)
            self.drop_connection()
        elif fault.mode == "disconnect":
            self.drop_connection()


def _pieces(text: str, n: int) -> list[str]:
    if not text:
        return []
    size = max(1, math.ceil(len(text) / n))
    return [text[i:i + size] for i in range(0, len(text), size)]


class OllamaTestServer(ThreadedTestServer):
    """An Ollama endpoint on 127.0.0.1; ``base_url`` is what ``ChatOllama(base_url=...)`` takes."""

    handler_class = _OllamaHandler

    def __init__(self, *, stream_chunks: int = 3) -> None:
        super().__init__()
        self.stream_chunks = stream_chunks
        self.done_reason: str | None = None
        self.done_reasons: dict[str, str] = {}  # per model, before done_reason
        self._replies: dict[str | None, Any] = {None: DEFAULT_REPLY}
        self._reply_lock = threading.Lock()

    def start(self) -> OllamaTestServer:
        super().start()
        return self

    def __enter__(self) -> OllamaTestServer:
        return self.start()

    @property
    def base_url(self) -> str:
        return self.origin

    def reply(self, reply: str | ToolCall | Callable[[str, dict[str, Any]], str], model: str | None = None) -> None:
        """Answer with text, a ``(tool name, arguments)`` call, or ``reply(model, request)``."""
        with self._reply_lock:
            self._replies[model] = reply

    def reset(self) -> None:
        super().reset()
        self.done_reason = None
        self.done_reasons = {}
        with self._reply_lock:
            self._replies = {None: DEFAULT_REPLY}

    def reply_for(self, model: str, request: dict[str, Any]) -> str | ToolCall:
        with self._reply_lock:
            reply = self._replies.get(model, self._replies[None])
        return reply(model, request) if callable(reply) else reply
