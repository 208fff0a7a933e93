"""Reloading a policy file when it changes on disk (opt-in).

A :class:`PolicyWatcher` is polled at the start of each request: when the file's signature
(modification time, size, inode) changed, it reads and validates the new text first; only a
valid policy replaces the current one, in one reference assignment, so a request sees either
the old policy or the new one, never a mix. A broken or missing file keeps the old policy; the
error is logged once per broken version and kept in :attr:`PolicyWatcher.last_error`.

Polling costs one ``stat`` per request (``interval_s`` spaces them further); there is no
background thread to stop.

Example:
    >>> watcher = PolicyWatcher("my-policy.yaml")
    >>> watcher.poll().name          # the current policy, re-read if the file changed
    'mine'
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router.errors import PolicyError, PolicyIssue
from router.policy.policy_file import Policy, loads_policy

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int]
MISSING: Signature = (-1, -1, -1)
# A file read within this long of its modification time may change again in the same timestamp
# tick (coarse on some file systems) without changing its signature: until it is read again
# later than that, its text is compared too (git's "racy" entries).
RACY_NS = 2_000_000_000


def _signature(path: Path) -> Signature:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


def _decode(raw: bytes, path: Path) -> str:
    """The file's text; a :class:`PolicyError` at the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise PolicyError([PolicyIssue(f"not UTF-8 text: byte 0x{raw[err.start]:02x} cannot be decoded",
                                       str(path), line, column)]) from None


class PolicyWatcher:
    """The current policy of one file, re-validated and swapped when the file changes.

    ``load_options`` pass through to :func:`~router.policy.loads_policy` (``environ=``, ...).
    ``clock`` is for tests of ``interval_s``.
    """

    def __init__(self, path: str | os.PathLike[str], policy: Policy | None = None, *,
                 interval_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 **load_options: Any) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._clock = clock
        self._load_options = load_options
        self._lock = threading.Lock()
        try:
            self._signature = _signature(self.path)
            raw = self.path.read_bytes()
        except OSError as err:
            raise PolicyError([PolicyIssue(f"cannot read policy file: {err.strerror}", str(self.path))]) from None
        self._text = _decode(raw, self.path)
        self._racy = self._read_soon_after_write(self._signature)
        self._policy = policy if policy is not None else self._load(self._text)
        self._failed: Signature | None = None
        self._failed_text: str | None = None
        self._next_check = 0.0
        self.last_error: PolicyError | None = None
        self.reloads = 0

    def __repr__(self) -> str:
        return f"PolicyWatcher({str(self.path)!r}, policy={self._policy.name!r}, reloads={self.reloads})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        """The current policy, without looking at the file."""
        return self._policy

    def poll(self) -> Policy:
        """The current policy, after re-reading the file if it changed since the last look.

        While another thread reloads, this returns the policy in place (it never waits).
        """
        if self.interval_s and self._clock() < self._next_check:
            return self._policy
        if not self._lock.acquire(blocking=False):
            return self._policy
        try:
            self._next_check = self._clock() + self.interval_s
            self._refresh()
        finally:
            self._lock.release()
        return self._policy

    def _refresh(self) -> None:
        """Re-read and re-validate the file if it changed. Whatever is wrong with the new
        version (unreadable, not UTF-8, invalid) keeps the policy in force; the error is typed
        (a :class:`PolicyError`), logged once and kept in :attr:`last_error`."""
        try:
            signature = _signature(self.path)
            if signature in (self._signature, self._failed) and not self._racy:
                return
            raw = self.path.read_bytes()
            self._racy = self._read_soon_after_write(signature)
        except OSError as err:
            self._reject(MISSING, None, PolicyError([PolicyIssue(f"cannot read policy file: {err.strerror}",
                                                                 str(self.path))]))
            return
        try:
            text = _decode(raw, self.path)
        except PolicyError as err:
            self._reject(signature, None, err)
            return
        if text == self._text:  # touched, or restored to the text in force
            self._signature, self._failed, self._failed_text, self.last_error = signature, None, None, None
            return
        if text == self._failed_text:
            self._failed = signature
            return
        try:
            policy = self._load(text)
        except PolicyError as err:
            self._reject(signature, text, err)
            return
        self._policy, self._signature, self._text = policy, signature, text
        self._failed, self._failed_text, self.last_error = None, None, None
        self.reloads += 1
        logger.info("policy file %s reloaded (policy %r)", self.path, policy.name)

    def _reject(self, signature: Signature, text: str | None, err: PolicyError) -> None:
        if (signature, text) != (self._failed, self._failed_text):  # each broken version logged once
            logger.error("policy file %s is invalid; keeping policy %r:\n%s", self.path, self._policy.name, err)
        self._failed, self._failed_text, self.last_error = signature, text, err

    @staticmethod
    def _read_soon_after_write(signature: Signature) -> bool:
        return time.time_ns() - signature[0] < RACY_NS

    def _load(self, text: str) -> Policy:
        return loads_policy(text, str(self.path), **self._load_options)
