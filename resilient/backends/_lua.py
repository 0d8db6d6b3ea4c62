# The Lua scripts of RedisBackend, each written once here and run by SHA from redis.py.
#
# Rules:
# - A script touches only keys it is given in KEYS, all in one Cluster slot: a value key and
#   the keys derived from it (its claim) share the value key's hash tag. Index keys live in
#   other slots, so on Cluster they get a script call of their own (INDEX).
# - The wake-up channel is passed in ARGV with the publish command to use: PUBLISH on
#   standalone and Sentinel, SPUBLISH (sharded, same slot as the key) on Cluster.
# - Every script is safe to run twice: redis-py re-sends a command after a connection error,
#   and the first run may have happened. A claim taken again by its own token reports taken;
#   a release or a put finds the claim already gone and does nothing more; a value written
#   twice is the same value. A lock's or a slot's release also says whether it released,
#   and a re-sent one must not report a loss its first run caused: each release carries a
#   random receipt, kept `receipt_ms` once it released, which the same release sent again
#   finds. Any other release (a second call, an operator's) carries another.
# - Time comes from the server (TIME), never from the client, so index scores compare with
#   the expiry Redis itself applies to the values they name.
# - Shared pieces are Lua functions in fragments below, composed into the scripts by string
#   concatenation; a fragment is never copied.
from __future__ import annotations

from typing import Final

__all__ = [
    "EXTEND",
    "GET",
    "GET_VERSIONED",
    "INDEX",
    "LOCK",
    "PUT",
    "RELEASE",
    "SET_VERSIONED",
    "SLOTS",
    "THROTTLE",
    "UNLOCK",
]

# Delete the claim (and the keys given after *channel*) if *token* holds it, and publish on
# *channel* to wake its waiters; return whether it did.
_RELEASE_FUNCTION: Final = """
local function release(claim, token, publish, channel, ...)
  if redis.call('GET', claim) == token then
    redis.call('DEL', claim, ...)
    redis.call(publish, channel, '1')
    return true
  end
  return false
end
"""

# How long a release's receipt is kept: well past when a re-send of it arrives (redis-py
# re-sends at once, on a new connection, within its connect timeout: 1 s by default).
_RECEIPT: Final = """
local receipt_ms = 10000
"""

# Record *member* in the index keys KEYS[first..], scored by its expiry in server milliseconds;
# drop members already expired; keep each index alive at least as long as *member*.
_INDEX_FUNCTION: Final = """
local function index(member, ttl_ms, first)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local ttl = tonumber(ttl_ms)
  local expiry = string.format('%d', now + ttl)
  local past = '(' .. string.format('%d', now)
  for i = first, #KEYS do
    redis.call('ZADD', KEYS[i], expiry, member)
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', past)
    if redis.call('PTTL', KEYS[i]) < ttl then
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
"""

GET: Final = """
-- KEYS: the value key [, its claim key when claiming]
-- ARGV when claiming: token, claim ttl ms, below ms, '1' to act as if no value were stored
-- Returns {value or nil, the value's PTTL, 1 when the caller holds the claim else 0
-- [, the holder's token when another token holds the claim]}.
local value = redis.call('GET', KEYS[1])
local ttl = -2
if value then
  ttl = redis.call('PTTL', KEYS[1])
end
if #KEYS == 1 then
  return {value, ttl, 0}
end
local due = ARGV[4] == '1' or not value or (ttl >= 0 and ttl <= tonumber(ARGV[3]))
if not due then
  return {value, ttl, 0}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {value, ttl, 1}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {value, ttl, 1}
end
return {value, ttl, 0, redis.call('GET', KEYS[2])}
"""

PUT: Final = (
    _RELEASE_FUNCTION
    + _INDEX_FUNCTION
    + """
-- KEYS: the value key, its claim key, then the index keys (standalone only)
-- ARGV: encoded value, ttl ms, token or '', publish command, wake-up channel, '1' to store
-- only if no value is stored
-- Returns 1 if the value was stored, else 0 (the claim is released either way).
local stored = 1
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  stored = 0
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if ARGV[3] ~= '' then
  release(KEYS[2], ARGV[3], ARGV[4], ARGV[5])
end
if stored == 1 and #KEYS > 2 then
  index(KEYS[1], ARGV[2], 3)
end
return stored
"""
)

INDEX: Final = (
    _INDEX_FUNCTION
    + """
-- KEYS: index keys of one slot. ARGV: the value key to record, its ttl ms
index(ARGV[1], ARGV[2], 1)
return 1
"""
)

RELEASE: Final = (
    _RELEASE_FUNCTION
    + """
-- KEYS: the claim key. ARGV: token, publish command, wake-up channel
release(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

GET_VERSIONED: Final = """
-- KEYS: the versioned key (a hash: v the version, d the encoded value, w its writer)
-- Returns {version or false, value or false, seconds, microseconds} (the TIME of the read).
local record = redis.call('HMGET', KEYS[1], 'v', 'd')
local time = redis.call('TIME')
return {record[1], record[2], time[1], time[2]}
"""

SET_VERSIONED: Final = """
-- KEYS: the versioned key. ARGV: the version expected now, the encoded value, ttl ms, writer
-- Returns {1 if stored else 0, the version now, the value now when not stored, seconds,
-- microseconds}. A write found stored by the same writer (sent twice) reports stored.
local record = redis.call('HMGET', KEYS[1], 'v', 'd', 'w')
local time = redis.call('TIME')
local version = tonumber(record[1]) or 0
local expected = tonumber(ARGV[1])
if version == expected then
  redis.call('HSET', KEYS[1], 'v', version + 1, 'd', ARGV[2], 'w', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, version + 1, false, time[1], time[2]}
end
if version == expected + 1 and record[3] == ARGV[4] then
  return {1, version, false, time[1], time[2]}
end
return {0, version, record[2], time[1], time[2]}
"""

THROTTLE: Final = """
-- KEYS: the rate limit (its theoretical arrival time, in microseconds of the server's TIME).
-- ARGV: the interval and max_wait in microseconds, the burst. The GCRA decision of
-- resilient/_core/ratelimit.py. Returns {1 if admitted else 0, microseconds to wait}. Run twice
-- (re-sent after a lost reply), it counts the call twice: fewer calls are admitted, never more.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local start = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local wait = start + interval - tonumber(ARGV[3]) * interval - now
if wait <= 0.001 then
  wait = 0
elseif wait > tonumber(ARGV[2]) then
  return {0, math.ceil(wait)}
end
local full = start + interval
-- at least 1 ms: an interval lost in the float of the time still gets a key that expires
local ttl = math.max(1, math.ceil((full - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.3f', full), 'PX', ttl)
return {1, math.ceil(wait)}
"""

LOCK: Final = """
-- KEYS: the lock (the claim key), its fencing token, the fencing counter
-- ARGV: owner, ttl ms
-- Returns {token or false, PTTL, holder}: the token taken (or held already by this owner),
-- else false, the holder's PTTL and the holder's token. A counter that is missing (new, or
-- lost in a restart without persistence, or expired) starts from the server's time in
-- microseconds, above any token handed out before unless more than a million were handed out
-- per second since that one started. The counter expires a day after the last lease it gave
-- (or after that lease's ttl, if longer), so that a key served once (a shared single flight's)
-- leaves nothing behind for good.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('PTTL', KEYS[1])}
end
if holder then
  return {false, redis.call('PTTL', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  local time = redis.call('TIME')
  redis.call('SET', KEYS[3], time[1] .. string.format('%06d', tonumber(time[2])))
end
local token = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], math.max(tonumber(ARGV[2]), 86400000))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
return {token, tonumber(ARGV[2])}
"""

UNLOCK: Final = (
    _RELEASE_FUNCTION
    + _RECEIPT
    + """
-- KEYS: the lock (the claim key), its fencing token, its receipts (a sorted set: receipt ->
--   when it is dropped, server ms)
-- ARGV: owner, publish command, channel, receipt (random, per release)
-- Returns 1 if the owner held the lock (now released, the receipt kept receipt_ms), or if the
-- receipt is kept already (this release, sent twice, released on its first run); else 0.
-- Every release keeps its own receipt: a holder that took the lock and released it between
-- a release's first run and its re-send does not hide the first one's.
if release(KEYS[1], ARGV[1], ARGV[2], ARGV[3], KEYS[2]) then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now))
  redis.call('ZADD', KEYS[3], string.format('%d', now + receipt_ms), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], receipt_ms)
  return 1
end
if redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  return 1
end
return 0
"""
)

EXTEND: Final = """
-- KEYS: the lock (the claim key), its fencing token. ARGV: owner, ttl ms
-- Returns 1 if the owner held the lock (now lasting ttl ms more), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

SLOTS: Final = (
    _RECEIPT
    + """
-- A counting semaphore whose places are leases (a shared bulkhead's slots).
-- KEYS: the holders, a sorted set: owner -> when its lease runs out (server ms), and a
--   release's receipt -> minus when it is dropped
-- ARGV: the operation ('acquire', 'release', 'extend' or 'full'), owner, limit, ttl ms,
--   publish command, wake-up channel, receipt (random, per release)
-- A lease is live while its score is above now, a receipt kept while its score is below -now;
-- each release drops the others (scored from -now to now). Counting live leases (ZCOUNT) needs
-- no dropping first, so that taking a slot costs TIME, ZCOUNT, ZADD and PEXPIRE.
-- 'acquire': admit the owner if fewer than limit leases are live, or if it holds one (the same
--   request sent twice), its lease lasting ttl ms from now; 1 if admitted, else 0.
-- 'release': drop the owner's live lease, keep the receipt receipt_ms and publish on the
--   channel; 1 if it did, or if the receipt is kept already (this release, sent twice,
--   released on its first run); else 0.
-- 'extend': make the owner's live lease last ttl ms from now; 1 if it held one, else 0.
-- 'full': -1 if fewer than limit leases are live, else the ms until the first runs out.
-- The key lasts as long as its longest lease and its receipts (at least receipt_ms).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local operation, owner, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local live = '(' .. string.format('%d', now)
if operation == 'release' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], string.format('%d', -now), string.format('%d', now))
  if redis.call('ZREM', KEYS[1], owner) == 1 then
    redis.call('ZADD', KEYS[1], string.format('%d', -(now + receipt_ms)), ARGV[7])
    redis.call(ARGV[5], ARGV[6], '1')
    return 1
  end
  if redis.call('ZSCORE', KEYS[1], ARGV[7]) then
    return 1
  end
  return 0
end
local count = -1
if operation == 'extend' then
  local held = tonumber(redis.call('ZSCORE', KEYS[1], owner))
  if not held or held <= now then
    return 0
  end
else
  count = redis.call('ZCOUNT', KEYS[1], live, '+inf')
  if operation == 'full' then
    if count < limit then
      return -1
    end
    local first = redis.call('ZRANGEBYSCORE', KEYS[1], live, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    return tonumber(first[2]) - now
  end
  if count >= limit then
    local held = tonumber(redis.call('ZSCORE', KEYS[1], owner))
    if not held or held <= now then
      return 0
    end
  end
end
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), owner)
local lasting = math.max(ttl, receipt_ms)
-- with no other live lease, no lease needs the key to last longer
if count == 0 or redis.call('PTTL', KEYS[1]) < lasting then
  redis.call('PEXPIRE', KEYS[1], lasting)
end
return 1
"""
)
