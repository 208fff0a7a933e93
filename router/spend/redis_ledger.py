"""The Redis ledger: budgets shared by every process on every host that reaches one Redis.

Each operation is one Lua script, which Redis runs atomically: check every bucket and hold in
all of them, or in none. Per bucket there is a hash (``spent``, ``reserved`` and one
``hold:<id>`` field per live reservation) and a sorted set of hold ids by expiry; expired holds
are purged inside the scripts before anything is counted. Settled entries go to one sorted
set by time, for reports. Every key shares one hash tag, so the scripts also run on a cluster.

Example:
    >>> ledger = RedisLedger("redis://127.0.0.1:6379/0")
    >>> ledger.reserve(hold, now=time.time()) is None   # it fitted
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from router.spend.config import DEFAULT_TTL_S, redact
from router.spend.ledger import Bucket, BucketUsage, Hold, LedgerError, Shortfall, SpendEntry

T = TypeVar("T")
_KEEP_AFTER_PERIOD_S = 86_400  # keep a bucket's counters a day past its period (late settles)

_PURGE = """
local function purge(b, h, now)
  local expired = redis.call('ZRANGEBYSCORE', h, '-inf', now)
  for _, hid in ipairs(expired) do
    local held = redis.call('HGET', b, 'hold:' .. hid)
    if held then
      redis.call('HINCRBY', b, 'reserved', -tonumber(held))
      redis.call('HDEL', b, 'hold:' .. hid)
    end
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', h, '-inf', now) end
end
"""

# KEYS: bucket1, holds1, bucket2, holds2, ...   ARGV: now, amount, id, expires_at, (limit, keep_until)...
_RESERVE = _PURGE + """
local now, amount, id, expires_at = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = #KEYS / 2
for i = 1, n do
  local b, h = KEYS[2 * i - 1], KEYS[2 * i]
  purge(b, h, now)
  local spent = tonumber(redis.call('HGET', b, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', b, 'reserved') or '0')
  local left = tonumber(ARGV[3 + 2 * i]) - spent - reserved
  if amount > left then return {i, left} end
end
for i = 1, n do
  local b, h = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HINCRBY', b, 'reserved', amount)
  redis.call('HSET', b, 'hold:' .. id, amount)
  redis.call('ZADD', h, expires_at, id)
  redis.call('EXPIREAT', b, ARGV[4 + 2 * i])
  redis.call('EXPIREAT', h, ARGV[4 + 2 * i])
end
return {0, 0}
"""

# KEYS: bucket1, holds1, ..., entries, settled-marker   ARGV: id, cost (-1: release), ts, entry_json,
# keep_until...   A settle marks its hold id settled: a retried settle drops the hold, counts nothing.
_FINISH = """
local id, cost = ARGV[1], tonumber(ARGV[2])
local n = (#KEYS - 2) / 2
if cost >= 0 and not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', 3456000) then cost = -1 end
for i = 1, n do
  local b, h = KEYS[2 * i - 1], KEYS[2 * i]
  local held = redis.call('HGET', b, 'hold:' .. id)
  if held then
    redis.call('HINCRBY', b, 'reserved', -tonumber(held))
    redis.call('HDEL', b, 'hold:' .. id)
  end
  redis.call('ZREM', h, id)
  if cost >= 0 then
    redis.call('HINCRBY', b, 'spent', cost)
    redis.call('EXPIREAT', b, ARGV[4 + i])
  end
end
if cost >= 0 then redis.call('ZADD', KEYS[#KEYS - 1], ARGV[3], ARGV[4]) end
return 0
"""

# KEYS: bucket, holds   ARGV: now
_USAGE = _PURGE + """
purge(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return {tonumber(redis.call('HGET', KEYS[1], 'spent') or '0'),
        tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')}
"""


class RedisLedger:
    """A :class:`router.spend.ledger.Ledger` in Redis (redis-py, Lua scripts)."""

    def __init__(self, url: str, *, ttl_s: float = DEFAULT_TTL_S, prefix: str = "router-spend",
                 timeout_s: float = 5.0, client: Any = None) -> None:
        import redis

        self.url = redact(url)
        self.ttl_s = ttl_s
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._tag = "{" + prefix + "}"
        # Bounded waits: an unreachable Redis must refuse paid calls soon, not hang them.
        self._redis = client if client is not None else redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._reserve = self._redis.register_script(_RESERVE)
        self._finish = self._redis.register_script(_FINISH)
        self._usage = self._redis.register_script(_USAGE)

    def __repr__(self) -> str:
        return f"RedisLedger({self.url!r}, ttl_s={self.ttl_s})"

    def _keys(self, bucket: Bucket) -> list[str]:
        base = (f"{self._tag}:bucket:{quote(bucket.budget, safe='')}:{bucket.period}:"
                f"{quote(bucket.subject or '', safe='')}")
        return [base, base + ":holds"]

    def _run(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except self._errors as err:
            raise LedgerError(f"{type(err).__name__}: {err}", backend="redis", url=self.url) from err

    def reserve(self, hold: Hold, now: float) -> Shortfall | None:
        keys = [k for b in hold.buckets for k in self._keys(b)]
        args: list[Any] = [repr(now), hold.amount, hold.id, repr(hold.expires_at)]
        for b in hold.buckets:
            args += [b.limit, _keep_until(b, hold.expires_at)]
        index, left = self._run(lambda: self._reserve(keys=keys, args=args))
        return None if index == 0 else Shortfall(hold.buckets[index - 1], max(0, int(left)))

    def settle(self, hold: Hold, cost: int, now: float) -> None:
        entry = SpendEntry.from_hold(hold, cost, now)
        self._finish_hold(hold, [cost, repr(now), entry.to_json()])

    def release(self, hold: Hold) -> None:
        self._finish_hold(hold, [-1, "0", ""])

    def _finish_hold(self, hold: Hold, args: list[Any]) -> None:
        keys = [k for b in hold.buckets for k in self._keys(b)] + [f"{self._tag}:entries",
                                                                 f"{self._tag}:settled:{hold.id}"]
        keeps = [_keep_until(b, hold.expires_at) for b in hold.buckets]
        self._run(lambda: self._finish(keys=keys, args=[hold.id, *args, *keeps]))

    def usage(self, bucket: Bucket, now: float) -> BucketUsage:
        spent, reserved = self._run(lambda: self._usage(keys=self._keys(bucket), args=[repr(now)]))
        return BucketUsage(int(spent), int(reserved))

    def entries(self, since: float | None = None) -> list[SpendEntry]:
        low = repr(since) if since is not None else "-inf"
        raw = self._run(lambda: self._redis.zrangebyscore(f"{self._tag}:entries", low, "+inf"))
        return [SpendEntry.from_dict(json.loads(item)) for item in raw]

    def close(self) -> None:
        self._redis.close()


def _keep_until(bucket: Bucket, expires_at: float) -> int:
    return int(max(bucket.keep_until, expires_at)) + _KEEP_AFTER_PERIOD_S
