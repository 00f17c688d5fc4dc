--[[
  count_stock: a cycle count. The counter read the stock at `version`, counted the shelf
  and reports `counted`. on_hand moves by counted - (on_hand as it stood at that version),
  so changes since the read (a ship, a receipt) are kept, not counted twice or undone.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] expired holds reclaimed first (at most),
    [8] counted (units, >= 0), [9] version the counter read (StockLevel.version), [10] reason
  Returns {json, replayed}; json is
    {ok, levels, counted, expected, delta, exposure}: expected = on_hand at the version,
      delta = counted - expected, exposure = units promised beyond on hand it added
    {error = 'stale_count', version, current, oldest}: the version is older than the
      on_hand log remembers (oldest) or newer than the stock (current); nothing written
    {error = 'insufficient_on_hand', on_hand, requested}: the delta would take on_hand
      below zero (the count contradicts what happened since the read; recount)
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'counted' (on_hand +delta, possibly 0; reason,
    counted, expected, counted_version); 'oversell_exposure' (no deltas; cause 'counted')
    when the count leaves fewer units on hand than are promised. A count is physical
    truth: it is never refused for pushing available below zero.
  Invariants: on_hand never negative; a count is answered only from a log that saw every
    on_hand change since the version (ONHAND_LOG_MAX most recent changes).
]]
--- @include "common"
--- @include "stock"
--- @include "lifecycle"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local counted, version, reason = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
local levels = read_levels(KEYS[4])
local expected = on_hand_at(KEYS[9], levels, version)
if expected == nil then
  return stock_done({error = 'stale_count', version = version, current = levels.version,
                     oldest = oldest_countable(KEYS[9], levels)})
end
local delta = counted - expected
if levels.on_hand + delta < 0 then
  return stock_done({error = 'insufficient_on_hand', on_hand = levels.on_hand,
                     requested = -delta})
end
local exposure = math.max(0, exposure_added(levels, delta))
local result = change_stock(ctx, 'counted', math.abs(delta), {on_hand = delta},
                            {'reason', reason, 'counted', counted, 'expected', expected,
                             'delta', delta, 'counted_version', version})
if exposure > 0 then
  emit_exposure(ctx, ARGV[1], ARGV[2], exposure, 'counted', reason)
end
result.counted, result.expected, result.delta, result.exposure = counted, expected, delta, exposure
return stock_done(result)
