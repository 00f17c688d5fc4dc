--[[
  adjust_stock: a correction of on_hand (a count found more or fewer units).

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] delta (units, non-zero), [9] reason,
    [10] forced: '1' lets a decrease eat into units already promised
  Returns {json, replayed}; json is
    {ok, levels}
    {error = 'would_oversell', available, requested}: a decrease larger than available, not forced
    {error = 'insufficient_on_hand', on_hand, requested}: a decrease larger than on_hand
      (refused even when forced: on_hand counts physical units and is never negative)
    {error = 'reclaim_more'}: the answer depends on expired holds beyond ARGV[7] still
      counted; those given back stay given back, nothing else is written: call again
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold (expired holds never make a decrease look
    unsafe); 'adjusted' (on_hand +delta, reason; forced = 1 and exposure = units promised
    but no longer on hand, when forced).
  Invariants: on_hand never negative; available goes below zero only through a forced
    decrease, which records the exposure on its event.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = stock_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[6])
check_keys(#KEYS, STOCK_KEYS)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
-- Expired holds stop counting before this change is checked against available.
local levels, more = reclaim_at(ctx, place, ARGV[7])
local delta, reason, forced = tonumber(ARGV[8]), ARGV[9], ARGV[10] == '1'

if levels.on_hand + delta < 0 then
  return finish(ctx, {error = 'insufficient_on_hand', on_hand = levels.on_hand,
                      requested = -delta})
end
local free_before = available(levels)
local free_after = free_before + delta
if delta < 0 and free_after < 0 and more then
  -- Refused, or forced with an exposure: either answer depends on holds still counted.
  return finish(ctx, reclaim_more())
end
if delta < 0 and free_after < 0 and not forced then
  return finish(ctx, {error = 'would_oversell', available = math.max(free_before, 0),
                      requested = -delta})
end
local extra = {'reason', reason}
if forced then
  extra[#extra + 1] = 'forced'
  extra[#extra + 1] = '1'
  extra[#extra + 1] = 'exposure'
  extra[#extra + 1] = math.max(0, -free_after) - math.max(0, -free_before)
end
return finish(ctx, change_stock(ctx, place, levels, 'adjusted', math.abs(delta),
                               {on_hand = delta}, extra))
