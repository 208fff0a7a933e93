"""A loopback server speaking the Hugging Face Hub's resolve protocol, for ``router pull``.

``HEAD``/``GET /{owner}/{name}/resolve/{revision}/{path}`` as ``huggingface_hub`` expects from an
LFS file: ``X-Repo-Commit``, ``ETag`` and ``X-Linked-Etag`` (the file's sha256), ``X-Linked-Size``,
``Content-Length``, ``Accept-Ranges``; ``Range: bytes=N-`` answered with 206 (resume). Files are
served from disk in chunks (the bundled SmolLM2 GGUF is 98 MB). Faults for tests:

- ``corrupt``: the body has one byte flipped (same size; the metadata keeps the true sha256);
- ``drop``: the next GET sends its headers and half the body, then closes the connection.

Example:
    >>> with HubTestServer({"owner/repo": {"model.gguf": path}}) as hub:
    ...     os.environ["HF_ENDPOINT"] = hub.origin
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any

from ._base import QuietHandler, RecordedRequest, ThreadedTestServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CHUNK = 1 << 20


class _HubHandler(QuietHandler):
    server_state: HubTestServer

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        state = self.server_state
        state.record(RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, b""))
        match = _RESOLVE.match(self.path.split("?")[0])
        entry = state.lookup(match["repo"], match["file"]) if match else None
        if entry is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}
            if body:
                self.send_json(404, {"error": "Entry not found"}, headers=headers)
            else:  # a reply to HEAD has no body: one left on a kept-alive connection breaks the next reply
                self.send_response(404)
                for key, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(key, value)
                self.end_headers()
            return
        path, sha256, size = entry
        start = 0
        status = 200
        rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if body and rng:
            start, status = int(rng.group(1)), 206
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"',
                   "X-Linked-Size": str(size), "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self._write_body(path, start, size, state.take_fault())

    def _write_body(self, path: Path, start: int, size: int, fault: str | None) -> None:
        stop_at = start + (size - start) // 2 if fault == "drop" else size
        flip_at = size // 3 if fault == "corrupt" else -1
        with open(path, "rb") as f:
            f.seek(start)
            pos = start
            while pos < stop_at:
                block = bytearray(f.read(min(_CHUNK, stop_at - pos)))
                if pos <= flip_at < pos + len(block):
                    block[flip_at - pos] ^= 0xFF
                self.wfile.write(block)
                pos += len(block)
        self.wfile.flush()
        if fault == "drop":
            self.drop_connection()


class HubTestServer(ThreadedTestServer):
    """Serves ``{repo_id: {path_in_repo: local_file}}`` at commit :data:`COMMIT`."""

    handler_class = _HubHandler

    def __init__(self, repos: dict[str, dict[str, Path]]) -> None:
        super().__init__()
        self._files: dict[tuple[str, str], tuple[Path, str, int]] = {}
        for repo, files in repos.items():
            for name, path in files.items():
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                self._files[(repo, name)] = (Path(path), digest, Path(path).stat().st_size)
        self._fault_lock = threading.Lock()
        self._next_faults: list[str] = []

    def lookup(self, repo: str, name: str) -> tuple[Path, str, int] | None:
        return self._files.get((repo, name))

    def sha256(self, repo: str, name: str) -> str:
        return self._files[(repo, name)][1]

    def serve_fault(self, *faults: str) -> None:
        """The next GETs get these faults, one each (``corrupt``, ``drop``)."""
        with self._fault_lock:
            self._next_faults.extend(faults)

    def take_fault(self) -> str | None:
        with self._fault_lock:
            return self._next_faults.pop(0) if self._next_faults else None

    def gets(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "GET"]

    def __enter__(self) -> Any:
        return self.start()
