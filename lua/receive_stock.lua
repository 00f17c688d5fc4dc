--[[
  receive_stock: units arrive and become sellable.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] reference ('' none)
  Returns {json, replayed}; json is {ok, levels} with every bucket after the receipt, or
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'received' (on_hand +qty, reason = reference).
  Invariants: on_hand only grows; available grows by exactly qty.
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
local levels = reclaim_at(ctx, place, ARGV[7])
local qty, reference = tonumber(ARGV[8]), ARGV[9]
return finish(ctx, change_stock(ctx, place, levels, 'received', qty, {on_hand = qty},
                               {'reason', reference}))
