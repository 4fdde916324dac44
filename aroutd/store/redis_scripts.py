"""The Lua scripts of the Redis state store (:mod:`aroutd.store.redis`), as text.

Each script is one atomic step on the server (EVALSHA): no other client's command runs
between its reads and writes, so a check and the write it guards never race, whichever
process or host sends them. Every key a script writes is passed in ``KEYS``; the two
feed readers (``KEY_PAGE``, ``USAGE_PAGE``) also read the rows their feed names, built
from a prefix in ``ARGV``: all names carry the ``{aroutd}`` hash tag, so every one of
them lives in the same Redis Cluster slot as the feed.

The ``IMPORT_*`` scripts (``aroutd state migrate``, :mod:`aroutd.store.redis_import`)
set one item to an absolute state: left untouched (0) when it holds it already, else
written (1), so running them again changes nothing.

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
    "IMPORT_KEY",
    "IMPORT_NONCE",
    "IMPORT_PAYMENT",
    "IMPORT_TX",
    "IMPORT_USAGE",
    "IMPORT_WALLET",
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

# KEYS: row, key seq, key feed. ARGV: hex, last, deleted (0|1), tenant, entry JSON
# ("" for a tombstone). {seq, 0}: the row holds this state under a seq above ``last``
# (the seq of the key imported before it), left as it is; else {seq, 1}: written under
# the next seq. So the feed holds the imported keys in the order they were sent.
IMPORT_KEY = """
local row = redis.call('HMGET', KEYS[1], 'seq', 'deleted', 'entry')
local seq = tonumber(row[1])
if seq and seq > tonumber(ARGV[2]) and row[2] == ARGV[3] and (row[3] or '') == ARGV[5] then
  return {seq, 0}
end
seq = redis.call('INCR', KEYS[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'seq', seq, 'deleted', '1')
  redis.call('HDEL', KEYS[1], 'entry')
else
  redis.call('HSET', KEYS[1], 'seq', seq, 'deleted', '0', 'tenant', ARGV[4], 'entry', ARGV[5])
end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return {seq, 1}
"""

# KEYS: usage seq, usage feed, row. ARGV: member, last, usd, input, output, cached,
# requests, ttl_s. As IMPORT_KEY: the totals set (not added), under the next seq,
# unless the row holds them already under a seq above ``last``.
IMPORT_USAGE = """
local row = redis.call('HMGET', KEYS[3], 'seq', 'usd', 'input_tokens', 'output_tokens',
  'cached_input_tokens', 'requests')
local seq = tonumber(row[1])
if seq and seq > tonumber(ARGV[2]) then
  local same = true
  for i = 2, 6 do
    if tonumber(row[i]) ~= tonumber(ARGV[i + 1]) then same = false end
  end
  if same then return {seq, 0} end
end
seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], 'seq', seq, 'usd', ARGV[3], 'input_tokens', ARGV[4],
  'output_tokens', ARGV[5], 'cached_input_tokens', ARGV[6], 'requests', ARGV[7])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
if tonumber(ARGV[8]) > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[8])
else
  redis.call('PERSIST', KEYS[3])
end
return {seq, 1}
"""

# KEYS: wallet. ARGV: the record (JSON {id, created_at}). Another id held for the same
# account is replaced.
IMPORT_WALLET = """
local held = redis.call('GET', KEYS[1])
if held then
  local h, w = cjson.decode(held), cjson.decode(ARGV[1])
  if h.id == w.id and h.created_at == w.created_at then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# KEYS: tx lines, tx counter, the account's log. ARGV: id, line, created_at, the log
# names' prefix. The same line held: 0. Another line held under the id: its member
# leaves its account's log (found at its created_at score) before the new one goes in.
IMPORT_TX = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held == ARGV[2] then return 0 end
if held then
  local old = cjson.decode(held)
  local log, at = ARGV[4] .. old.account, string.format('%.17g', old.created_at)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', log, at, at)) do
    if string.sub(m, string.find(m, ':', 1, true) + 1) == ARGV[1] then
      redis.call('ZREM', log, m)
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[3], string.format('%016d', n) .. ':' .. ARGV[1])
return 1
"""

# KEYS: payment, settled set. ARGV: id, updated_at, then the row's fields and values
# (no updated_at; an absent field is not passed). The same fields held (usd and
# created_at compared as numbers): 0. Else the row is replaced and the settled set
# follows its state.
IMPORT_PAYMENT = """
local want, have, same = {}, {}, true
for i = 3, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
local held = redis.call('HGETALL', KEYS[1])
for i = 1, #held, 2 do have[held[i]] = held[i + 1] end
have['updated_at'] = nil
for k, v in pairs(have) do
  local w = want[k]
  if k == 'usd' or k == 'created_at' then
    if tonumber(w) ~= tonumber(v) then same = false end
  elseif w ~= v then
    same = false
  end
end
for k, _ in pairs(want) do if have[k] == nil then same = false end end
if same then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2], unpack(ARGV, 3))
if want['state'] == 'settled' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"""

# KEYS: nonce. ARGV: expires_at (unix s), ttl_ms. A record held that expires as late or
# later is kept (refusing the nonce longer is the safe side): 0.
IMPORT_NONCE = """
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
