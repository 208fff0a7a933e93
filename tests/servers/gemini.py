"""A Gemini REST test server: the wire protocol ``ChatGoogleGenerativeAI`` speaks, on 127.0.0.1.

Serves ``POST /{v1,v1beta}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with Gemini's JSON shapes (``candidates``, ``usageMetadata``
with running totals in streams, ``modelVersion``). The ``x-goog-api-key`` header is checked:
missing → 401 ``UNAUTHENTICATED``, wrong → 403 ``PERMISSION_DENIED``; a key in the query
string is refused (400) so a test proves the client sends the header. Errors use Google's
``{"error": {"code", "message", "status"}}`` body.

Why the standard library's ``ThreadingHTTPServer`` rather than uvicorn/starlette: it runs in
a plain daemon thread with no event loop shared with the code under test (which may run its
own loops for ``ainvoke``), a "hang" is just a blocking wait, and SSE is a few chunked writes.

Example:
    >>> with GeminiTestServer(api_key="test-key") as server:
    ...     server.reply("Paris.", model="gemini-2.0-flash")
    ...     server.fail("rate_limit", times=1, retry_after_s=2)   # the next request gets a 429
    ...     llm = ChatGoogleGenerativeAI(model="gemini-2.0-flash", google_api_key="test-key",
    ...                                  base_url=server.base_url, max_retries=0)
    ...     server.count(), server.count("gemini-2.0-flash")

Replies: :meth:`reply` sets the text for one model or all, as a string or a callable
``(model, request_json) -> str``; the default answers ``"Paris is the capital of France."``.
Token counts: ``promptTokenCount`` is ``ceil(chars / 4)`` of the request's text parts, or
``prompt_counter(text)`` when given (e.g. Gemma 3's tokenizer, Gemini's own, or one per
character), ``candidatesTokenCount`` the number of whitespace-separated words of the reply.
Reply faults (see ``fail``): ``truncate`` answers with ``finishReason: MAX_TOKENS``, ``no_final``
streams without a ``finishReason`` (non-streamed: none either), ``over_report`` adds
``OVER_REPORT_TOKENS`` to both usage counts.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._base import OVER_REPORT_TOKENS, REPLY_FAULTS, QuietHandler, RecordedRequest, ThreadedTestServer

ReplyFn = Callable[[str, dict[str, Any]], str]
DEFAULT_REPLY = "Paris is the capital of France."
_ROUTE = re.compile(r"^/(?P<version>v1|v1beta)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}}


def _prompt_text(body: dict[str, Any]) -> str:
    parts = [p.get("text", "") for c in body.get("contents") or [] for p in c.get("parts") or []]
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    parts += [p.get("text", "") for p in system.get("parts") or []]
    return "".join(parts)


def _pieces(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` consecutive pieces at word boundaries."""
    words = re.findall(r"\S+\s*|\s+", text) or [""]
    size = max(1, math.ceil(len(words) / n))
    return ["".join(words[i:i + size]) for i in range(0, len(words), size)]


class _GeminiHandler(QuietHandler):
    server_state: GeminiTestServer

    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        self.send_json(404, _error(404, f"no route for GET {urlsplit(self.path).path}"))

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        state = self.server_state
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self.read_body()
        match = _ROUTE.match(url.path)
        model = match["model"] if match else None
        stream = bool(match and match["method"] == "streamGenerateContent")
        fault = state.faults.take() if match else None
        state.record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                     body, model, stream, fault.mode if fault else None))
        if match is None:
            return self.send_json(404, _error(404, f"no route for POST {url.path}"))
        if "key" in query:
            return self.send_json(400, _error(400, "send the API key in the x-goog-api-key header"))
        key = self.headers.get("x-goog-api-key")
        if not key:
            return self.send_json(401, _error(401, "missing x-goog-api-key header"))
        if key != state.api_key:
            return self.send_json(403, _error(403, "API key not valid"))
        if stream and query.get("alt") != ["sse"]:
            return self.send_json(400, _error(400, "this server streams only with alt=sse"))
        reply_fault = fault.mode if fault is not None and fault.mode in REPLY_FAULTS else None
        if fault is not None and reply_fault is None and self._fault(fault):
            return None
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self.send_json(400, _error(400, "request body is not JSON"))
        text = state.reply_for(model, request)
        prompt = _prompt_text(request)
        prompt_tokens = state.prompt_counter(prompt) if state.prompt_counter else math.ceil(len(prompt) / 4)
        extra = OVER_REPORT_TOKENS if reply_fault == "over_report" else 0
        final = {"truncate": "MAX_TOKENS", "no_final": None}.get(reply_fault or "", "STOP")
        if stream:
            return self._stream(model, text, prompt_tokens + extra, final, extra)
        return self.send_json(200, state.response(model, text, prompt_tokens + extra,
                                                  len(text.split()) + extra, final))

    def _fault(self, fault: Any) -> bool:
        """Apply ``fault``; True when the request has been answered (or abandoned)."""
        if fault.mode == "rate_limit":
            self.send_json(429, _error(429, "Resource has been exhausted (e.g. check quota)."),
                           headers={"Retry-After": f"{fault.retry_after_s:g}"})
        elif fault.mode in ("server", "unavailable"):
            code = 500 if fault.mode == "server" else 503
            self.send_json(code, _error(code, "An internal error has occurred."))
        elif fault.mode == "malformed":
            self.send_bytes(200, b'{"candidates": [{"content": {"parts": [{"text": "Par')
        elif fault.mode == "hang":
            self.server_state.stopping.wait(fault.hang_s)
            self.drop_connection()
        elif fault.mode == "disconnect":
            self.drop_connection()
        return True

    def _stream(self, model: str, text: str, prompt_tokens: int, final: str | None = "STOP",
                extra_output: int = 0) -> None:
        state = self.server_state
        pieces = _pieces(text, state.stream_chunks)
        self.start_chunked(200, "text/event-stream")
        emitted = 0
        for i, piece in enumerate(pieces):
            emitted += len(piece.split())
            last = i == len(pieces) - 1
            event = state.response(model, piece, prompt_tokens, emitted + (extra_output if last else 0),
                                   final if last else None)
            self.write_chunk(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
        self.end_chunked()


class GeminiTestServer(ThreadedTestServer):
    """A Gemini REST endpoint on 127.0.0.1 (see the module docstring).

    ``base_url`` is what ``ChatGoogleGenerativeAI(base_url=...)`` or
    ``GOOGLE_GEMINI_BASE_URL`` takes; the client adds ``/v1beta/models/...`` (or ``/v1/`` with
    ``api_version="v1"``).
    """

    handler_class = _GeminiHandler

    def __init__(self, api_key: str = "test-gemini-key", *, default_reply: str | ReplyFn = DEFAULT_REPLY,
                 stream_chunks: int = 3, prompt_counter: Callable[[str], int] | None = None) -> None:
        super().__init__()
        self.prompt_counter = self._initial_counter = prompt_counter
        self.api_key = api_key
        self.stream_chunks = stream_chunks
        self.default_reply = default_reply
        self._replies: dict[str | None, str | ReplyFn] = {None: default_reply}
        self._reply_lock = threading.Lock()

    def start(self) -> GeminiTestServer:
        super().start()
        return self

    def __enter__(self) -> GeminiTestServer:
        return self.start()

    @property
    def base_url(self) -> str:
        return self.origin

    def reply(self, text: str | ReplyFn, model: str | None = None) -> None:
        """Answer ``model`` (or every model without its own reply) with ``text``, or with
        ``text(model, request_json)`` when it is callable."""
        with self._reply_lock:
            self._replies[model] = text

    def reset(self) -> None:
        """Forget requests, faults and replies set by :meth:`reply` (back to ``default_reply``)."""
        super().reset()
        self.prompt_counter = self._initial_counter
        with self._reply_lock:
            self._replies = {None: self.default_reply}

    def reply_for(self, model: str, request: dict[str, Any]) -> str:
        with self._reply_lock:
            reply = self._replies.get(model, self._replies[None])
        return reply(model, request) if callable(reply) else reply

    @staticmethod
    def response(model: str, text: str, prompt_tokens: int, output_tokens: int,
                 finish_reason: str | None) -> dict[str, Any]:
        """One ``GenerateContentResponse`` (or one SSE event of a stream)."""
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if finish_reason:
            candidate["finishReason"] = finish_reason
        return {"candidates": [candidate],
                "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                                  "totalTokenCount": prompt_tokens + output_tokens},
                "modelVersion": model, "responseId": f"test-{model}"}
