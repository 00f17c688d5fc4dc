--[[
  receive_stock: units arrive and become sellable.

  KEYS: [1] meta, [2] events, [3] idempotency, [4] stock of (sku, location),
    [5] stock index of the partition, [6] hold expiries, [7] hold qty,
    [8] locations of the sku (set), [9] on_hand log of the (sku, location) (the stock layout)
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] reference ('' none)
  Returns {json, replayed}; json is {ok, levels} with every bucket after the receipt, or
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'received' (on_hand +qty, reason = reference).
  Invariants: on_hand only grows; available grows by exactly qty.
]]
--- @include "common"
--- @include "stock"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local qty, reference = tonumber(ARGV[8]), ARGV[9]
return stock_done(change_stock(ctx, 'received', qty, {on_hand = qty}, {'reason', reference}))
