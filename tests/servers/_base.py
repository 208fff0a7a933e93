"""What every test server here shares: a threaded HTTP server on 127.0.0.1, a request log,
and a fault plan (fail the next N requests, or all of them, in a chosen way).

Built on the standard library's ``ThreadingHTTPServer``: no event loop to share with the code
under test, a handler that can simply block to simulate a hung upstream, and nothing to install.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

FailMode = Literal["rate_limit", "server", "unavailable", "hang", "malformed", "disconnect",
                   "truncate", "no_final", "over_report"]
FAIL_MODES: tuple[str, ...] = ("rate_limit", "server", "unavailable", "hang", "malformed", "disconnect",
                               "truncate", "no_final", "over_report")
# Modes that answer (200) but wrongly: a reply cut at the token limit, a stream without its
# final marker, usage reported above what was asked for. Handlers apply them to a real reply.
REPLY_FAULTS = ("truncate", "no_final", "over_report")
OVER_REPORT_TOKENS = 1000  # added to both usage counts by ``over_report``


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (headers lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    model: str | None = None
    stream: bool = False
    failed_with: str | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class _Fault:
    mode: str
    remaining: int | None  # None: every request from now on
    retry_after_s: float = 1.0
    hang_s: float = 30.0


@dataclass
class FaultPlan:
    """Thread-safe: which failure (if any) the next request gets."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fault: _Fault | None = None

    def set(self, mode: str, times: int | None, *, retry_after_s: float, hang_s: float) -> None:
        if mode not in FAIL_MODES:
            raise ValueError(f"unknown fail mode {mode!r}; one of {FAIL_MODES}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for always")
        with self._lock:
            self._fault = _Fault(mode, times, retry_after_s, hang_s)

    def clear(self) -> None:
        with self._lock:
            self._fault = None

    def take(self) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: with 200 clients connecting at once on a loaded machine
    # the accept queue overflows, dropped SYNs are retried after 1, 3, 7, 15, 31 s, and a client
    # can hit its 60 s timeout before the server ever sees it (a flaky budget test on CI).
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) closes the socket under us: expected in these tests.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive handler with TCP_NODELAY (delayed ACK otherwise adds ~40 ms a request)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), headers=headers)

    def start_chunked(self, status: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def drop_connection(self) -> None:
        """Close the socket without any reply (a reset or truncated upstream)."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # already gone: that is the point
            self.connection.shutdown(socket.SHUT_RDWR)


class ThreadedTestServer:
    """Lifecycle, request log and fault plan; subclasses provide the handler class."""

    handler_class: type[QuietHandler]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self.faults = FaultPlan()
        self.stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ThreadedTestServer:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        handler = type(self.handler_class.__name__, (self.handler_class,), {"server_state": self})
        self.stopping.clear()
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hung handlers are released."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> ThreadedTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # -- request log -------------------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy), oldest first."""
        with self._lock:
            return list(self._requests)

    def count(self, model: str | None = None) -> int:
        """Requests received in total, or for ``model``."""
        with self._lock:
            return sum(1 for r in self._requests if model is None or r.model == model)

    def counts_by_model(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for r in self._requests:
                out[r.model or "?"] = out.get(r.model or "?", 0) + 1
            return out

    def reset(self) -> None:
        """Forget the request log and any pending fault."""
        with self._lock:
            self._requests.clear()
        self.faults.clear()

    # -- faults ------------------------------------------------------------------------------

    def fail(self, mode: FailMode, times: int | None = 1, *, retry_after_s: float = 1.0,
             hang_s: float = 30.0) -> None:
        """Fail the next ``times`` requests (``None``: all, until :meth:`heal`).

        Modes: ``rate_limit`` (429 with ``Retry-After``), ``server`` (500), ``unavailable``
        (503), ``hang`` (no reply for ``hang_s`` or until stop), ``malformed`` (200 with a body
        that is not JSON), ``disconnect`` (close the socket without a reply); replies that are
        wrong: ``truncate`` (finish reason ``length`` / ``MAX_TOKENS``), ``no_final`` (a stream
        that ends without its final event), ``over_report`` (usage counts plus
        ``OVER_REPORT_TOKENS``).
        """
        self.faults.set(mode, times, retry_after_s=retry_after_s, hang_s=hang_s)

    def heal(self) -> None:
        """Cancel any pending fault."""
        self.faults.clear()
