"""An Anthropic Messages API test server: the wire protocol ``ChatAnthropic`` speaks, on 127.0.0.1.

Serves ``POST /v1/messages``, JSON or (``"stream": true``) server-sent events in Anthropic's order:
``message_start`` (input usage), ``content_block_start``/``content_block_delta``/``content_block_stop``
per block (``text_delta``, ``input_json_delta`` for a tool call), ``message_delta`` (``stop_reason``
and output usage), ``message_stop``. The key is checked (``x-api-key``, or ``Authorization: Bearer`` as anthropic 2
sends it; missing or wrong: 401 ``authentication_error``); errors use ``{"type": "error", "error": {"type", "message"}}``.

Example:
    >>> with AnthropicTestServer(api_key="k") as server:
    ...     server.reply("Paris.")
    ...     server.fail("rate_limit", retry_after_s=2)          # the next request: 429 + retry-after
    ...     ChatAnthropic(model="claude-x", api_key="k", base_url=server.base_url, max_retries=0)

Replies: :meth:`reply` takes a string, a callable ``(model, request) -> str``, or a :class:`ToolUse`
(the answer is that tool call, ``stop_reason: tool_use``). ``stop_reason`` may be forced with
:attr:`stop_reason` (``refusal``, ``pause_turn``...). Token counts: ``input_tokens`` is
``ceil(bytes / 4)`` of the request's text, ``output_tokens`` the number of words of the reply.
Faults (``fail``): ``rate_limit`` 429, ``server`` 500, ``unavailable`` 529 ``overloaded_error`` (with
``retry-after``), ``truncate`` ``stop_reason: max_tokens``, ``no_final`` a stream that ends before
``message_delta``, ``over_report`` usage plus ``OVER_REPORT_TOKENS``; and the transport faults.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ._base import OVER_REPORT_TOKENS, REPLY_FAULTS, QuietHandler, RecordedRequest, ThreadedTestServer

ReplyFn = Callable[[str, dict[str, Any]], str]
DEFAULT_REPLY = "Paris is the capital of France."


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str = "toolu_01"


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _request_text(request: dict[str, Any]) -> str:
    parts: list[str] = []
    system = request.get("system")
    parts.append(system if isinstance(system, str) else json.dumps(system or ""))
    for message in request.get("messages") or []:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content))
    if request.get("tools"):
        parts.append(json.dumps(request["tools"]))
    return "".join(parts)


class _AnthropicHandler(QuietHandler):
    server_state: AnthropicTestServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        state = self.server_state
        path = urlsplit(self.path).path
        body = self.read_body()
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        model, stream = request.get("model"), bool(request.get("stream"))
        fault = state.faults.take() if path == "/v1/messages" else None
        state.record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                     body, model, stream, fault.mode if fault else None))
        if path != "/v1/messages":
            return self.send_json(404, _error("not_found_error", f"no route for POST {path}"))
        bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        if state.api_key not in (self.headers.get("x-api-key"), bearer):
            return self.send_json(401, _error("authentication_error", "invalid x-api-key"))
        if not request.get("messages") or not isinstance(request.get("max_tokens"), int):
            return self.send_json(400, _error("invalid_request_error", "messages and max_tokens are required"))
        reply_fault = fault.mode if fault is not None and fault.mode in REPLY_FAULTS else None
        if fault is not None and reply_fault is None:
            return self._fault(fault)
        reply = state.reply_for(model, request)
        extra = OVER_REPORT_TOKENS if reply_fault == "over_report" else 0
        input_tokens = math.ceil(len(_request_text(request).encode()) / 4) + extra
        default_stop = "tool_use" if isinstance(reply, ToolUse) else "end_turn"
        stop = "max_tokens" if reply_fault == "truncate" else (state.stop_reason or default_stop)
        output_tokens = (len(reply.split()) if isinstance(reply, str) else 8) + extra
        if stream:
            return self._stream(model, reply, input_tokens, output_tokens, stop, final=reply_fault != "no_final")
        return self.send_json(200, state.message(model, reply, input_tokens, output_tokens, stop))

    def _fault(self, fault: Any) -> None:
        if fault.mode == "rate_limit":
            self.send_json(429, _error("rate_limit_error", "Number of requests has exceeded your rate limit"),
                           headers={"retry-after": f"{fault.retry_after_s:g}"})
        elif fault.mode == "server":
            self.send_json(500, _error("api_error", "Internal server error"))
        elif fault.mode == "unavailable":
            self.send_json(529, _error("overloaded_error", "Overloaded"),
                           headers={"retry-after": f"{fault.retry_after_s:g}"})
        elif fault.mode == "malformed":
            self.send_bytes(200, b'{"id": "msg_1", "type": "message", "content": [{"type": "te')
        elif fault.mode == "hang":
            self.server_state.stopping.wait(fault.hang_s)
            self.drop_connection()
        elif fault.mode == "disconnect":
            self.drop_connection()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self.write_chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    def _stream(self, model: str, reply: str | ToolUse, input_tokens: int, output_tokens: int, stop: str,
                *, final: bool) -> None:
        state = self.server_state
        self.start_chunked(200, "text/event-stream")
        start = state.message(model, "", input_tokens, 1, None)
        start["content"] = []
        self._event("message_start", {"type": "message_start", "message": start})
        if isinstance(reply, ToolUse):
            block = {"type": "tool_use", "id": reply.id, "name": reply.name, "input": {}}
            text = json.dumps(reply.input)
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in _pieces(text, 2)]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(reply, state.stream_chunks)]
        self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        for delta in deltas:
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if final:
            self._event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": stop, "stop_sequence": None},
                                          "usage": {"output_tokens": output_tokens}})
            self._event("message_stop", {"type": "message_stop"})
        self.end_chunked()


def _pieces(text: str, n: int) -> list[str]:
    if not text:
        return [""]
    size = max(1, math.ceil(len(text) / n))
    return [text[i:i + size] for i in range(0, len(text), size)]


class AnthropicTestServer(ThreadedTestServer):
    """An Anthropic Messages endpoint on 127.0.0.1; ``base_url`` is what ``ChatAnthropic(base_url=...)``
    takes (the client adds ``/v1/messages``)."""

    handler_class = _AnthropicHandler

    def __init__(self, api_key: str = "test-anthropic-key", *, stream_chunks: int = 3) -> None:
        super().__init__()
        self.api_key = api_key
        self.stream_chunks = stream_chunks
        self.stop_reason: str | None = None
        self._replies: dict[str | None, str | ReplyFn | ToolUse] = {None: DEFAULT_REPLY}
        self._reply_lock = threading.Lock()

    def start(self) -> AnthropicTestServer:
        super().start()
        return self

    def __enter__(self) -> AnthropicTestServer:
        return self.start()

    @property
    def base_url(self) -> str:
        return self.origin

    def reply(self, reply: str | ReplyFn | ToolUse, model: str | None = None) -> None:
        with self._reply_lock:
            self._replies[model] = reply

    def reset(self) -> None:
        super().reset()
        self.stop_reason = None
        with self._reply_lock:
            self._replies = {None: DEFAULT_REPLY}

    def reply_for(self, model: str, request: dict[str, Any]) -> str | ToolUse:
        with self._reply_lock:
            reply = self._replies.get(model, self._replies[None])
        return reply(model, request) if callable(reply) else reply

    @staticmethod
    def message(model: str, reply: str | ToolUse, input_tokens: int, output_tokens: int,
                stop: str | None) -> dict[str, Any]:
        """One Messages API ``Message``."""
        if isinstance(reply, ToolUse):
            content = [{"type": "tool_use", "id": reply.id, "name": reply.name, "input": reply.input}]
        else:
            content = [{"type": "text", "text": reply}]
        return {"id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}
