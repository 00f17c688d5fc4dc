--[[
  adjust_stock: a correction of on_hand (a count found more or fewer units).

  KEYS: [1] meta, [2] events, [3] idempotency, [4] stock of (sku, location),
    [5] stock index of the partition, [6] hold expiries, [7] hold qty,
    [8] locations of the sku (set), [9] on_hand log of the (sku, location) (the stock layout)
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] expired holds reclaimed first (at most),
    [8] delta (units, non-zero), [9] reason,
    [10] forced: '1' lets a decrease eat into units already promised
  Returns {json, replayed}; json is
    {ok, levels}
    {error = 'would_oversell', available, requested}: a decrease larger than available, not forced
    {error = 'insufficient_on_hand', on_hand, requested}: a decrease larger than on_hand
      (refused even when forced: on_hand counts physical units and is never negative)
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold (expired holds never make a decrease look
    unsafe); 'adjusted' (on_hand +delta, reason; forced = 1 and exposure = units promised
    but no longer on hand, when forced).
  Invariants: on_hand never negative; available goes below zero only through a forced
    decrease, which records the exposure on its event.
]]
--- @include "common"
--- @include "stock"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local delta, reason, forced = tonumber(ARGV[8]), ARGV[9], ARGV[10] == '1'
local levels = read_levels(KEYS[4])

if levels.on_hand + delta < 0 then
  return stock_done({error = 'insufficient_on_hand', on_hand = levels.on_hand, requested = -delta})
end
local free_after = available(levels) + delta
if delta < 0 and free_after < 0 and not forced then
  return stock_done({error = 'would_oversell', available = math.max(available(levels), 0),
                     requested = -delta})
end
local extra = {'reason', reason}
if forced then
  extra[#extra + 1] = 'forced'
  extra[#extra + 1] = '1'
  extra[#extra + 1] = 'exposure'
  extra[#extra + 1] = math.max(0, -free_after) - math.max(0, -available(levels))
end
return stock_done(change_stock(ctx, 'adjusted', math.abs(delta), {on_hand = delta}, extra))
