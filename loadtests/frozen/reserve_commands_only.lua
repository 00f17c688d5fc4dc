--[[
  The commands lua/reserve.lua sends to Redis for a one-line cart (no channel, no drop,
  nothing to reclaim), with the same keys and the same arguments, and none of its logic:
  no checks, no branches, no tables; numbers only where the stored values are numbers. Measurement only
  (loadtests.bench.instructions): what a reserve costs Redis when only the stored
  contract is paid for (docs/design/keys.md: the meta and idempotency checks, the
  stock hash read and written once, the hold's expiry and quantity, the part, the
  expiries index, the event, the idempotency record). It is not a reserve: it never
  refuses.

  KEYS and ARGV: reserve.lua's for one line (see its header).
  Returns {reply json, 0}, as reserve.lua does.
]]
local meta = redis.call('HMGET', KEYS[1], 'generation', 'fenced', 'replid', 'backlog_max')
local seen = redis.call('GET', KEYS[3])
local t = redis.call('TIME')
local now = t[1] .. '000'
redis.call('EXISTS', KEYS[4])
redis.call('HMGET', KEYS[11], ARGV[11])
local s = redis.call('HMGET', KEYS[7], 'on_hand', 'reserved', 'committed', 'version',
                     'reorder_point', 'rearm_above', 'lead_time_days', 'alert_low', 'dh6', 'du6')
redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', '0', ARGV[8])
redis.call('HSET', KEYS[7], 'reserved', (tonumber(s[2]) or 0) + 1,
           'version', (tonumber(s[4]) or 0) + 1,
           'dh6', now, 'du6', ARGV[13])
redis.call('ZADD', KEYS[8], now, ARGV[5])
redis.call('HSET', KEYS[9], ARGV[5], ARGV[13])
redis.call('XADD', KEYS[2], '*', 'type', 'reserved', 'sku', ARGV[11], 'location', ARGV[12],
           'qty', ARGV[13], 'deltas', '{"reserved":1}', 'actor', ARGV[2],
           'idempotency_key', ARGV[3], 'channel', ARGV[7], 'at', now,
           'reservation', ARGV[5], 'expires_at', now)
local lines = '[{"location":"' .. ARGV[12] .. '","qty":' .. ARGV[13] .. ',"sku":"' .. ARGV[11] .. '"}]'
redis.call('HSET', KEYS[4], 'status', 'held', 'expires_at', now, 'created_at', now,
           'channel', ARGV[7], 'actor', ARGV[2], 'retention_ms', ARGV[9], 'lines', lines)
redis.call('ZADD', KEYS[5], now, ARGV[5])
local reply = '{"ok":true,"reservation":{"lines":' .. lines .. ',"expires_at":' .. now ..
              ',"id":"' .. ARGV[5] .. '","channel":"' .. ARGV[7] .. '","created_at":' .. now ..
              ',"status":"held"}}'
redis.call('SET', KEYS[3], ARGV[1] .. reply, 'PX', ARGV[4])
return {reply, 0}
