"""A circuit breaker per network model, across requests: a dead endpoint costs its timeout a
few times, not on every request.

States, per endpoint (provider, model id and base URL, so policies naming the same endpoint
share one breaker):

- **closed** — calls go through; failures of the policy's ``breaker.kinds`` (default: timeouts,
  5xx, failed connections) are counted over the last ``window_s``;
- **open** — after ``failures`` of them, the model is excluded for ``cooldown_s`` with a reason
  such as ``cooling down: 3 timeouts in 60 s (probe in 30 s)``;
- **half-open** — after the cooldown, one request is let through as a probe (others are still
  excluded while it runs): its success closes the breaker, its failure opens it again.

Any answer from the endpoint (also a 400 or a 429) counts as a success. The state lives in a
:class:`BreakerStore`: one per process by default (:class:`MemoryBreakerStore`), or Redis
(:class:`RedisBreakerStore`) when the policy's ``ledger:`` is a Redis URL, so every process
and host using that ledger shares it. A Redis that cannot be reached leaves the breaker closed
(calls go ahead; budgets still fail closed on their own).

Example:
    >>> gate = model_gate(catalog, "gpt-4")
    >>> gate.admit()               # None: go ahead (possibly as the half-open probe)
    >>> gate.after_try(error, retries_done=0)   # records the failure; a RetryNote or None
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from router.policy.breaker_settings import BreakerSettings
from router.providers.retries import RetryNote, plan_retry
from router.spend.config import redact

if TYPE_CHECKING:
    from router.errors import ProviderError
    from router.policy.policy_file import ModelSpec

logger = logging.getLogger(__name__)
Clock = Callable[[], float]
REDIS_RETRY_S = 5.0

_NAMES = {"timeout": ("timeout", "timeouts"), "server": ("server error", "server errors"),
          "connection": ("connection failure", "connection failures"),
          "rate_limit": ("rate limit", "rate limits"), "malformed": ("malformed reply", "malformed replies")}


@dataclass(frozen=True)
class BreakerState:
    """One endpoint's breaker. ``open_until`` > 0 means opened (excluded until then, half-open
    after); ``probe_until`` > now means a half-open probe is in flight."""

    failures: tuple[tuple[float, str], ...] = ()  # (time, kind) within the window
    open_until: float = 0.0
    reason: str = ""
    probe_until: float = 0.0

    @property
    def opened(self) -> bool:
        return self.open_until > 0

    def to_json(self) -> str:
        return json.dumps({"failures": self.failures, "open_until": self.open_until, "reason": self.reason,
                           "probe_until": self.probe_until})

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> BreakerState:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(tuple((float(t), str(k)) for t, k in data["failures"]), float(data["open_until"]),
                   str(data["reason"]), float(data["probe_until"]))


class BreakerStore(Protocol):
    """Where breaker states live. ``update`` is atomic: ``change`` may run more than once (an
    optimistic store retries on conflict); the state it returned last is stored and returned."""

    blocking: bool  # does I/O: keep calls off an event loop

    def read(self, key: str) -> BreakerState: ...

    def update(self, key: str, change: Callable[[BreakerState], BreakerState], ttl_s: float) -> BreakerState: ...


class MemoryBreakerStore:
    """Breaker states of this process."""

    blocking = False

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._lock = threading.Lock()

    def read(self, key: str) -> BreakerState:
        with self._lock:
            return self._states.get(key, BreakerState())

    def update(self, key: str, change: Callable[[BreakerState], BreakerState], ttl_s: float) -> BreakerState:
        with self._lock:
            new = change(self._states.get(key, BreakerState()))
            if new == BreakerState():
                self._states.pop(key, None)
            else:
                self._states[key] = new
            return new

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


class RedisBreakerStore:
    """Breaker states in Redis (one JSON value per endpoint, WATCH/MULTI updates, expiring
    once nothing about the endpoint is worth remembering)."""

    blocking = True

    def __init__(self, url: str, *, prefix: str = "router-breaker", timeout_s: float = 0.5,
                 client: Any = None) -> None:
        import redis

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._prefix = prefix
        self._redis = client if client is not None else redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._down_until = 0.0  # after a failure, skip Redis for a while instead of waiting on it

    def _key(self, key: str) -> str:
        return f"{{{self._prefix}}}:{key}"

    def _unavailable(self, err: BaseException) -> BreakerState:
        if self._down_until == 0.0:  # once per outage, not per call
            logger.warning("circuit breaker state unavailable in Redis (%s): treating breakers as closed "
                           "for %.0f s", type(err).__name__, REDIS_RETRY_S)
        self._down_until = time.monotonic() + REDIS_RETRY_S
        return BreakerState()

    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def read(self, key: str) -> BreakerState:
        if self._down():
            return BreakerState()
        try:
            state = BreakerState.from_json(self._redis.get(self._key(key)))
        except self._errors as err:
            return self._unavailable(err)
        self._down_until = 0.0
        return state

    def update(self, key: str, change: Callable[[BreakerState], BreakerState], ttl_s: float) -> BreakerState:
        name = self._key(key)

        def transact(pipe: Any) -> BreakerState:
            new = change(BreakerState.from_json(pipe.get(name)))
            pipe.multi()
            if new == BreakerState():
                pipe.delete(name)
            else:
                pipe.set(name, new.to_json(), px=max(1, int(ttl_s * 1000)))
            return new

        if self._down():
            return BreakerState()
        try:
            state: BreakerState = self._redis.transaction(transact, name, value_from_callable=True)
        except self._errors as err:
            return self._unavailable(err)
        self._down_until = 0.0
        return state


def _refusal(state: BreakerState, now: float) -> str | None:
    if not state.opened:
        return None
    if now < state.open_until:
        return f"cooling down: {state.reason} (probe in {math.ceil(state.open_until - now)} s)"
    if now < state.probe_until:
        return f"cooling down: {state.reason}; a probe request is testing it"
    return None


def _describe(failures: tuple[tuple[float, str], ...], window_s: float) -> str:
    counts = Counter(kind for _, kind in failures)
    parts = [f"{n} {_NAMES[kind][n != 1]}" for kind, n in counts.most_common()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} in {window_s:g} s"


@dataclass
class CircuitBreaker:
    """The breaker logic over a store; ``key`` names an endpoint."""

    settings: BreakerSettings
    store: BreakerStore
    clock: Clock = time.time

    @property
    def _ttl_s(self) -> float:
        return self.settings.window_s + self.settings.cooldown_s + 3600

    def exclusion(self, key: str) -> str | None:
        """Why the endpoint is excluded now, or None (read only: claims no probe)."""
        return _refusal(self.store.read(key), self.clock())

    def admit(self, key: str, probe_lease_s: float) -> str | None:
        """Let a call through (claiming the probe when half-open), or say why not."""
        now = self.clock()
        verdict: list[str | None] = [None]

        def change(state: BreakerState) -> BreakerState:
            verdict[0] = _refusal(state, now)
            if verdict[0] is None and state.opened:
                return replace(state, probe_until=now + probe_lease_s)
            return state

        self.store.update(key, change, self._ttl_s)
        return verdict[0]

    def abandon(self, key: str) -> None:
        """A call admitted as the probe was not made after all (its budget refused it)."""
        self.store.update(key, lambda s: replace(s, probe_until=0.0) if s.opened else s, self._ttl_s)

    def record(self, key: str, failure: str | None) -> BreakerState:
        """One try's outcome: ``failure`` is the error kind, None for an answer."""
        now, settings = self.clock(), self.settings

        def change(state: BreakerState) -> BreakerState:
            if failure is None or failure not in settings.kinds:
                return BreakerState() if state.opened else state  # the endpoint answers: closed
            if state.opened:
                if state.probe_until > 0:  # the probe failed: open again for a cooldown
                    return BreakerState((), now + settings.cooldown_s,
                                        f"the probe failed ({_NAMES[failure][0]})")
                return state  # a call from before it opened: already cooling down
            recent = (*(f for f in state.failures if f[0] > now - settings.window_s), (now, failure))
            if len(recent) >= settings.failures:
                logger.warning("circuit breaker opened for %s: %s", key, _describe(recent, settings.window_s))
                return BreakerState((), now + settings.cooldown_s, _describe(recent, settings.window_s))
            return replace(state, failures=recent)

        return self.store.update(key, change, self._ttl_s)


_process_store = MemoryBreakerStore()
_redis_stores: dict[str, RedisBreakerStore] = {}
_stores_lock = threading.Lock()


def store_for(ledger_url: str | None) -> BreakerStore:
    """Redis when the ledger is Redis (shared with every process using it), else this process's."""
    if ledger_url and ledger_url.split(":", 1)[0] in ("redis", "rediss"):
        base = str(ledger_url).split("?", 1)[0]
        with _stores_lock:
            if base not in _redis_stores:
                try:
                    _redis_stores[base] = RedisBreakerStore(base)
                except ImportError:  # no redis client (policy-router[redis]): the ledger says so itself
                    return _process_store
            return _redis_stores[base]
    return _process_store


def reset_process_breakers() -> None:
    """Forget every breaker state of this process (tests; an operator who fixed an endpoint)."""
    _process_store.clear()


def endpoint_key(name: str, spec: ModelSpec, base_url: str | None) -> str:
    """``provider:model@base_url`` (any password in the URL removed: keys show in logs and Redis)."""
    return f"{spec.provider}:{spec.model or name}@{redact(base_url) if base_url else 'default'}"


@dataclass
class ModelGate:
    """What the caller asks about one model call: may it go ahead, and after a failed try,
    retry or escalate. ``breaker`` is None for local models or with ``breaker.enabled: false``."""

    spec: ModelSpec
    settings: BreakerSettings
    breaker: CircuitBreaker | None
    key: str

    @property
    def blocking(self) -> bool:
        return self.breaker is not None and self.breaker.store.blocking

    def exclusion(self) -> str | None:
        return self.breaker.exclusion(self.key) if self.breaker is not None else None

    def admit(self) -> str | None:
        if self.breaker is None:
            return None
        spec = self.spec
        lease = spec.timeout_s * (spec.max_retries + 1) + self.settings.max_retry_wait_s * spec.max_retries
        return self.breaker.admit(self.key, lease)

    def abandon(self) -> None:
        if self.breaker is not None:
            self.breaker.abandon(self.key)

    def after_try(self, error: ProviderError | None, retries_done: int) -> RetryNote | None:
        """Record the try's outcome; then whether to retry (see :func:`plan_retry`). A breaker
        that this failure opened stops the retries."""
        if self.breaker is not None:
            self.breaker.record(self.key, error.kind if error is not None else None)
        note = plan_retry(self.spec.max_retries, error, retries_done, self.settings.max_retry_wait_s)
        if note is not None and note.retries and error is not None:
            refusal = self.exclusion()
            if refusal is not None:
                return RetryNote(error.kind, "escalated", refusal, retry_after_s=error.retry_after_s)
        return note


def model_gate(catalog: Any, name: str) -> ModelGate:
    """The gate for catalog model ``name`` (``catalog``: a :class:`router.routing.catalog.Catalog`)."""
    policy = catalog.policy
    spec = catalog.spec(name)
    settings: BreakerSettings = policy.breaker
    if not spec.is_network or not settings.enabled:
        return ModelGate(spec, settings, None, name)
    base_url = getattr(catalog.adapter(name), "base_url", None)
    key = endpoint_key(name, spec, base_url(spec) if callable(base_url) else None)
    return ModelGate(spec, settings, CircuitBreaker(settings, store_for(policy.ledger)), key)


def cooling_down(catalog: Any, name: str) -> str | None:
    """Selection's question: is ``name`` excluded by its breaker right now?"""
    return model_gate(catalog, name).exclusion()
