--[[
  reserve: hold stock for one partition's lines of a cart, all or nothing.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins (unused here; the shared layout), then per line: stock, hold expiries,
    hold qty, on_hand log (unused: reserve never changes on_hand).
  ARGV:
    [1] request fingerprint (32 hex), [2] actor, [3] idempotency key as the client sent
    it, [4] idempotency retention (ms)
    [5] reservation id
    [6] ttl (ms)
    [7] channel
    [8] reclaim limit: expired holds reclaimed per line before the check
    [9] reservation retention (ms): how long a finished part stays readable
    [10] line count n (1..LINES_MAX)
    [11..] per line: sku, location, qty (units)
    then the drop part (lua/includes/drops.lua, drop_call_at): one more KEY (the
    partition's drop index) and, for a cart that takes a drop's SKU, the drop's keys;
    ARGV customer, drop id, attempts per second, pending entries
  Returns {json, replayed (0|1)}; json is one of
    {ok, reservation = {id, status = 'held', expires_at, created_at, channel, lines}}
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}: only
      when no short line still counts an expired hold
    {error = 'reclaim_more'}: a short line has more expired holds than ARGV[8]; the ones
      given back stay given back, nothing is held and nothing stored: call again
    {error = 'idempotency_conflict'} (also for a part id that exists already)
    {error = 'store_not_ready' | 'durability_backlog'}
    {error = 'drop_keys', drop, rids}: call again with that drop's keys (never stored)
    {error = 'customer_required' | 'drop_not_open' | 'customer_limit_exceeded' |
     'rate_limited' | 'cart_spans_drops', ...}: the drop's rules (docs/drops.md)
  Events: 'expired' per reclaimed hold; 'reserved' per line (with expires_at, channel).
  Invariants: nothing is held unless every line has enough available; reserved
    never exceeds on_hand - committed; an expired hold never blocks a new one
    (expired holds on the cart's lines are reclaimed first, at most ARGV[8] per line per
    call, and a refusal is only given once none is left on a short line).
    Each stock hash is read once; the reply is built from what the script holds.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "reservation"
--- @include "drops"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local part_key, expiries_key = KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rid, ttl_ms, channel = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local reclaim_limit, retention_ms = ARGV[8], ARGV[9]
local n = bounded(ARGV[10], 'line count', 1, LINES_MAX)
-- [drops] the KEYS and ARGV after the lines, checked there (lua/includes/drops.lua)
local drop_call = drop_call_at(KEYS, PART_KEYS + KEYS_PER_LINE * n + 1, ARGV, 11 + 3 * n)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
if rcall('EXISTS', part_key) == 1 then
  return reply_error('idempotency_conflict')
end
ctx.channel = channel
-- [drops] the rules of a drop whose SKU the cart takes, before any hold
local drop, drop_refusal = drop_gate(ctx, drop_call, drop_lines(ARGV, 11, n))
if drop_refusal then
  return finish(ctx, drop_refusal)
end
ttl_ms = drop_hold_ttl(drop, ttl_ms)

local lines, held, shortfalls, more_to_reclaim = {}, {}, {}, false
for i = 1, n do
  local a = 11 + (i - 1) * 3
  local line = line_at(KEYS, PART_KEYS + 1, i, ARGV[a], ARGV[a + 1])
  local qty = tonumber(ARGV[a + 2])
  lines[i] = {sku = line.sku, location = line.location, qty = qty}
  local levels, more = reclaim_holds(ctx, line.stock, line.hexp, line.hqty, line.sku,
                                     line.location, reclaim_limit)
  local free = available(levels)
  if free < qty then
    shortfalls[#shortfalls + 1] = {sku = line.sku, location = line.location,
                                   requested = qty, available = math.max(free, 0)}
    more_to_reclaim = more_to_reclaim or more
  end
  held[i] = {line = line, levels = levels, qty = qty}
end
if more_to_reclaim then
  -- A short line still counts expired holds: a refusal now could be false.
  return finish(ctx, reclaim_more())
end
if #shortfalls > 0 then
  return finish(ctx, {error = 'insufficient_stock', lines = shortfalls})
end

local expires_at = ctx.now + ttl_ms
for _, h in ipairs(held) do
  local line = h.line
  apply(line.stock, h.levels, {reserved = h.qty})
  rcall('ZADD', line.hexp, expires_at, rid)
  rcall('HSET', line.hqty, rid, h.qty)
  emit(ctx, 'reserved', line.sku, line.location, h.qty, {reserved = h.qty},
       {'reservation', rid, 'expires_at', expires_at})
  check_low_stock(ctx, line.stock, line.sku, line.location, h.levels, h.qty)
end
rcall('HSET', part_key, 'status', 'held', 'expires_at', expires_at, 'created_at', ctx.now,
      'channel', channel, 'actor', actor, 'retention_ms', retention_ms,
      'lines', cjson.encode(lines))
rcall('ZADD', expiries_key, expires_at, rid)
drop_record(drop, part_key, rid) -- [drops]
return finish(ctx, {ok = true, reservation = {id = rid, status = 'held',
                    expires_at = expires_at, created_at = ctx.now, channel = channel,
                    lines = lines}})
