--[[
  reserve: hold stock for one partition's lines of a cart, all or nothing.

  KEYS (6 + 4 per line):
    [1] meta               partition meta hash; its absence means "not ready"
    [2] events             partition event stream
    [3] idempotency        idempotency record of this request in this partition
    [4] reservation part   hash: this partition's part of the reservation
    [5] expiries           zset: reservation id -> expiry (ms), for the sweeper
    [6] pins               zset (unused here; kept for the shared layout)
    [6+4i-3] stock         hash of buckets for line i
    [6+4i-2] hold expiries zset: reservation id -> expiry (ms) of holds on line i
    [6+4i-1] hold qty      hash: reservation id -> units held on line i
    [6+4i]   on_hand log   (unused here: reserve never changes on_hand; shared layout)
  ARGV:
    [1] reservation id
    [2] request fingerprint (hex)
    [3] ttl (ms)
    [4] channel
    [5] actor
    [6] idempotency key as the client sent it ('' for none)
    [7] idempotency retention (ms)
    [8] reclaim limit: expired holds reclaimed per line before the check
    [9] reservation retention (ms): how long a finished part stays readable
    [10] line count n
    [11..] per line: sku, location, qty (units)
  Returns {json, replayed (0|1)}; json is one of
    {ok, reservation = {id, status = 'held', expires_at, created_at, channel, lines}}
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}
    {error = 'idempotency_conflict'} | {error = 'duplicate_reservation'} | {error = 'not_ready'}
  Events: 'expired' per reclaimed hold; 'reserved' per line (with expires_at, channel).
  Invariants: nothing is held unless every line has enough available; reserved
    never exceeds on_hand - committed; an expired hold never blocks a new one
    (expired holds on the cart's lines are reclaimed first, at most ARGV[8] per line).
]]
--- @include "common"
--- @include "reservation"

local meta_key, events_key, idem_key, part_key, expiries_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rid, fingerprint = ARGV[1], ARGV[2]
local ttl_ms, channel, actor, idem = tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local idem_retention_ms, reclaim_limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local retention_ms, n = tonumber(ARGV[9]), tonumber(ARGV[10])

if rcall('EXISTS', meta_key) == 0 then
  return not_ready()
end
local replay = idem_check(idem_key, idem, fingerprint)
if replay then
  return replay
end
if rcall('EXISTS', part_key) == 1 then
  return {cjson.encode({error = 'duplicate_reservation'}), 0}
end

local ctx = {events = events_key, actor = actor, idem = idem, channel = channel, now = now_ms()}
local lines, shortfalls = {}, {}
for i = 1, n do
  local a = 11 + (i - 1) * 3
  local sku, loc, qty = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  lines[i] = {sku = sku, location = loc, qty = qty}
  reclaim_expired(ctx, i, sku, loc, reclaim_limit)
  local stock_key = line_keys(i)
  local free = available(read_levels(stock_key))
  if free < qty then
    shortfalls[#shortfalls + 1] = {sku = sku, location = loc, requested = qty,
                                   available = math.max(free, 0)}
  end
end
if #shortfalls > 0 then
  return finish(idem_key, idem, fingerprint, idem_retention_ms,
                {error = 'insufficient_stock', lines = shortfalls})
end

local expires_at = ctx.now + ttl_ms
for i, line in ipairs(lines) do
  local stock_key, hexp_key, hqty_key = line_keys(i)
  apply(stock_key, {reserved = line.qty})
  rcall('ZADD', hexp_key, expires_at, rid)
  rcall('HSET', hqty_key, rid, line.qty)
  emit(ctx, 'reserved', line.sku, line.location, line.qty, {reserved = line.qty},
       {'reservation', rid, 'expires_at', expires_at})
end
rcall('HSET', part_key, 'status', 'held', 'expires_at', expires_at, 'created_at', ctx.now,
      'channel', channel, 'actor', actor, 'retention_ms', retention_ms,
      'lines', cjson.encode(lines))
rcall('ZADD', expiries_key, expires_at, rid)

local part = read_part(part_key)
return finish(idem_key, idem, fingerprint, idem_retention_ms,
              {ok = true, reservation = part_view(part, rid)})
