"""How many threads a local generation uses, chosen from the cores that are free right now.

llama.cpp's threads wait for each other at every step of every token: with all cores in use and
one of them busy with another process, each step waits for the preempted thread, and generation
ran 1.9x slower than with one thread (71 s against 1 s for 48 tokens on a loaded 2-core box);
on a quiet machine all cores are 1.6x faster than one. So when a policy does not set
``n_threads``, :class:`ThreadTuner` chooses at call time and re-checks while generating:

* what others use is read from ``/proc/stat`` (busy time of the cores this process may run on,
  ``os.sched_getaffinity``) minus this process's own CPU time, over the window since a recent
  sample (samples are taken at model load, at each call's start and end, and every
  :data:`RECHECK_S` while generating; one read costs ~30 µs);
* threads = the allowed cores minus what others use, rounded so that others using more than 0.4
  of a core take that core away (``max(1, allowed - ceil(others - 0.4))``);
* the choice is applied between tokens with ``llama_cpp.llama_set_n_threads`` (both the
  generation and the batch count). The thread count does not change llama.cpp's results
  (each row of a product is computed by one thread): text and logprobs stay identical.

Without ``/proc/stat`` (not Linux) the count stays all allowed cores.

Example:
    >>> tuner = ThreadTuner(loaded.llm.ctx, allowed_cores())
    >>> tuner.begin()       # at a call's start
    >>> tuner.tick()        # after each token: re-checks every RECHECK_S
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

RECHECK_S = 0.1
"""Seconds of generation between two looks at the cores' load."""
MIN_WINDOW_S = 0.05
"""A window shorter than this says too little (``/proc/stat`` counts in 10 ms ticks)."""
MAX_WINDOW_S = 30.0
"""A sample older than this no longer describes now."""
TAKEN_AT = 0.4
"""Others using more than this much of a core take it away from the model."""


def allowed_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class _Sample:
    at: float  # time.monotonic()
    busy_s: float  # busy time of the allowed cores since boot, seconds
    own_s: float  # this process's CPU time, seconds


class _CoreLoad:
    """Recent samples of the allowed cores' busy time, shared by every model in the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[_Sample] = deque(maxlen=16)
        self._tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.available = os.path.exists("/proc/stat")

    def _read(self) -> _Sample | None:
        try:
            cpus = os.sched_getaffinity(0)
            with open("/proc/stat", "rb") as f:
                text = f.read()
        except (AttributeError, OSError):
            self.available = False
            return None
        busy = 0
        for line in text.split(b"\n")[1:]:
            if not line.startswith(b"cpu"):
                break
            name, *fields = line.split()
            if int(name[3:]) in cpus:
                # user nice system idle iowait irq softirq steal: idle and iowait are free time
                values = [int(v) for v in fields[:8]]
                busy += sum(values) - values[3] - values[4]
        return _Sample(time.monotonic(), busy / self._tick, time.process_time())

    def sample(self) -> _Sample | None:
        """Read the cores now and remember the sample."""
        now = self._read()
        if now is not None:
            with self._lock:
                self._samples.append(now)
        return now

    def others(self) -> float | None:
        """Cores' worth of CPU used by other processes since the newest usable sample."""
        now = self.sample()
        if now is None:
            return None
        with self._lock:
            usable = [s for s in self._samples if MIN_WINDOW_S <= now.at - s.at <= MAX_WINDOW_S]
        if not usable:
            return None
        then = usable[-1]
        window = now.at - then.at
        return max(0.0, ((now.busy_s - then.busy_s) - (now.own_s - then.own_s)) / window)


LOAD = _CoreLoad()


def threads_for(allowed: int, others: float) -> int:
    """Threads for a model when other processes use ``others`` cores out of ``allowed``."""
    return max(1, allowed - max(0, math.ceil(others - TAKEN_AT)))


class ThreadTuner:
    """Keeps one llama.cpp context's thread count matched to the free cores."""

    def __init__(self, ctx: Any, allowed: int) -> None:
        self._ctx = ctx
        self.allowed = allowed
        self.current = allowed
        self._next_check = 0.0

    def _set(self, n: int) -> None:
        if n != self.current:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._ctx, n, n)
            self.current = n

    def _check(self) -> None:
        others = LOAD.others()
        if others is not None:
            self._set(threads_for(self.allowed, others))
        self._next_check = time.monotonic() + RECHECK_S

    def begin(self) -> None:
        """At a call's start: choose from the latest window (else keep the last choice)."""
        if self.allowed > 1 and LOAD.available:
            self._check()

    def tick(self) -> None:
        """After a token: re-check once :data:`RECHECK_S` has passed."""
        if self.allowed > 1 and LOAD.available and time.monotonic() >= self._next_check:
            self._check()

    def end(self) -> None:
        """At a call's end: leave a sample for the next call's window."""
        if self.allowed > 1 and LOAD.available:
            LOAD.sample()
