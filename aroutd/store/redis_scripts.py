"""The Lua scripts of the Redis state store (:mod:`aroutd.store.redis`), as text.

Each script is one atomic step on the server (EVALSHA): no other client's command runs
between its reads and writes, so a check and the write it guards never race, whichever
process or host sends them. Every key a script writes is passed in ``KEYS``; the two
feed readers (``KEY_PAGE``, ``USAGE_PAGE``) also read the rows their feed names, built
from a prefix in ``ARGV``: all names carry the ``{aroutd}`` hash tag, so every one of
them lives in the same Redis Cluster slot as the feed.

Lua numbers are doubles: a script returns counts and change numbers as integers and
every float (usd) as the string Redis gave it, never as a Lua number (Redis would
truncate it to an integer).
"""

from __future__ import annotations

__all__ = [
    "CLAIM_PAYMENT",
    "CREATE_KEY",
    "CREDIT",
    "CREDIT_PAYMENT",
    "DELETE_KEY",
    "ENSURE_WALLET",
    "KEY_PAGE",
    "MARK_PAYMENT",
    "RELEASE_PAYMENT",
    "UPDATE_KEY",
    "USAGE_PAGE",
    "USAGE_STEP",
    "USE_NONCE",
]

# add_row(seq, feed, row, member, usd, input, output, cached, requests, ttl_s): the delta
# added to its row (created at zero) under the next change number; ttl_s > 0 (re)sets
# the row's expiry. Returns {seq, usd, input, output, cached, requests}.
_ADD_ROW = """
local function add_row(seq_key, feed_key, row_key, member, usd, i, o, c, r, ttl)
  local seq = redis.call('INCR', seq_key)
  local total = redis.call('HINCRBYFLOAT', row_key, 'usd', usd)
  local ti = redis.call('HINCRBY', row_key, 'input_tokens', i)
  local to = redis.call('HINCRBY', row_key, 'output_tokens', o)
  local tc = redis.call('HINCRBY', row_key, 'cached_input_tokens', c)
  local tr = redis.call('HINCRBY', row_key, 'requests', r)
  redis.call('HSET', row_key, 'seq', seq)
  redis.call('ZADD', feed_key, seq, member)
  if tonumber(ttl) > 0 then redis.call('EXPIRE', row_key, ttl) end
  return {seq, total, ti, to, tc, tr}
end
"""

# log_tx(lines, log, counter, id, line, created_at): the line kept once per id (the
# lines hash is the index of every logged id); a new one is appended to the account's
# log, whose member "<insert number, 16 digits>:<id>" orders equal times by insertion.
_LOG_TX = """
local function log_tx(lines_key, log_key, counter_key, id, line, created_at)
  if redis.call('HSETNX', lines_key, id, line) == 0 then return false end
  local n = redis.call('INCR', counter_key)
  redis.call('ZADD', log_key, created_at, string.format('%016d', n) .. ':' .. id)
  return true
end
"""

# KEYS: nonce. ARGV: expires_at (unix s), now (unix s), ttl_ms. The stored expiry, not
# the key's TTL, decides (the caller's clock, as the sqlite store); the TTL only
# collects the record once it is past.
USE_NONCE = """
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# KEYS: wallet. ARGV: the record to create. Returns the record held.
ENSURE_WALLET = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""

# KEYS: row, key seq, key feed. ARGV: hex digest, tenant, entry JSON. Returns the seq.
CREATE_KEY = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR aroutd: key already stored')
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'seq', seq, 'deleted', '0', 'tenant', ARGV[2], 'entry', ARGV[3])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return seq
"""

# KEYS: row, key seq, key feed. ARGV: hex, the seq read, tenant, entry JSON. A compare
# and set: false when another write came between the caller's read and this one.
UPDATE_KEY = """
if redis.call('HGET', KEYS[1], 'seq') ~= ARGV[2] then return false end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'seq', seq, 'tenant', ARGV[3], 'entry', ARGV[4])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return seq
"""

# KEYS: row, key seq, key feed. ARGV: hex[, tenant] (none: any tenant). The tombstone
# keeps seq and tenant, drops the entry. The seq, or false: no such key (of that tenant).
DELETE_KEY = """
local row = redis.call('HMGET', KEYS[1], 'deleted', 'tenant')
if row[1] ~= '0' or (#ARGV >= 2 and row[2] ~= ARGV[2]) then return false end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'seq', seq, 'deleted', '1')
redis.call('HDEL', KEYS[1], 'entry')
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return seq
"""

# KEYS: key feed. ARGV: after, limit, row prefix. Returns {cursor, scanned, {hex, seq,
# entry or false}...}: one page of the feed, each row as it is now (the same moment).
KEY_PAGE = """
local page = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf',
  'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out, cursor = {}, tonumber(ARGV[1])
for i = 1, #page, 2 do
  local row = redis.call('HMGET', ARGV[3] .. page[i], 'seq', 'entry')
  cursor = tonumber(page[i + 1])
  out[#out + 1] = {page[i], tonumber(row[1]), row[2]}
end
return {cursor, #page / 2, out}
"""

# KEYS: usage feed. ARGV: after, limit, row prefix. As KEY_PAGE, {member, seq, usd,
# input, output, cached, requests} per row; a member whose row has expired is dropped
# from the feed here (the only place it is).
USAGE_PAGE = """
local page = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf',
  'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out, cursor = {}, tonumber(ARGV[1])
for i = 1, #page, 2 do
  cursor = tonumber(page[i + 1])
  local row = redis.call('HMGET', ARGV[3] .. page[i], 'seq', 'usd', 'input_tokens',
    'output_tokens', 'cached_input_tokens', 'requests')
  if row[1] then
    out[#out + 1] = {page[i], tonumber(row[1]), row[2], tonumber(row[3]),
      tonumber(row[4]), tonumber(row[5]), tonumber(row[6])}
  else
    redis.call('ZREM', KEYS[1], page[i])
  end
end
return {cursor, #page / 2, out}
"""

# KEYS: usage seq, usage feed, tx lines, tx counter, then each delta's row, then each
# debit's account log. ARGV: n deltas, n debits, then per delta (member, usd, input,
# output, cached, requests, ttl_s), then per debit (id, line, created_at).
USAGE_STEP = (
    _ADD_ROW
    + _LOG_TX
    + """
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for d = 0, n - 1 do
  local a = 3 + 7 * d
  out[#out + 1] = add_row(KEYS[1], KEYS[2], KEYS[5 + d], ARGV[a], ARGV[a + 1], ARGV[a + 2],
    ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
end
for t = 0, m - 1 do
  local a = 3 + 7 * n + 3 * t
  log_tx(KEYS[3], KEYS[5 + n + t], KEYS[4], ARGV[a], ARGV[a + 1], ARGV[a + 2])
end
return out
"""
)

# KEYS: usage seq, usage feed, credits row, tx lines, tx counter, account log. ARGV:
# member, usd, id, line, created_at. The row's totals; its current ones (or {}: no row)
# when the id was logged before, and then nothing is written.
CREDIT = (
    _ADD_ROW
    + _LOG_TX
    + """
if log_tx(KEYS[4], KEYS[6], KEYS[5], ARGV[3], ARGV[4], ARGV[5]) then
  return add_row(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], 0, 0, 0, 0, 0)
end
local row = redis.call('HMGET', KEYS[3], 'seq', 'usd', 'input_tokens', 'output_tokens',
  'cached_input_tokens', 'requests')
if not row[1] then return {} end
return {tonumber(row[1]), row[2], tonumber(row[3]), tonumber(row[4]), tonumber(row[5]),
  tonumber(row[6])}
"""
)

# KEYS: payment. ARGV: its fields and values. 1: claimed; 0: seen before, untouched.
CLAIM_PAYMENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: payment.
RELEASE_PAYMENT = """
if redis.call('HGET', KEYS[1], 'state') == 'pending' then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: payment, settled set. ARGV: id, state, updated_at[, transaction]. The settled
# set holds exactly the ids whose state is settled.
MARK_PAYMENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
if #ARGV >= 4 then redis.call('HSET', KEYS[1], 'tx_hash', ARGV[4]) end
if ARGV[2] == 'settled' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"""

# KEYS: payment, settled set, then as CREDIT. ARGV: id, updated_at, then as CREDIT.
# False when the payment is not settled, and nothing written; else the credits row (the
# credit added even if its id was logged before, as the sqlite store does).
CREDIT_PAYMENT = (
    _ADD_ROW
    + _LOG_TX
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'settled' then return false end
redis.call('HSET', KEYS[1], 'state', 'credited', 'updated_at', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
log_tx(KEYS[6], KEYS[8], KEYS[7], ARGV[5], ARGV[6], ARGV[7])
return add_row(KEYS[3], KEYS[4], KEYS[5], ARGV[3], ARGV[4], 0, 0, 0, 0, 0)
"""
)
