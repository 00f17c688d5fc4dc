--[[
  receive_stock: units arrive and become sellable.

  KEYS: [1] meta, [2] events, [3] idempotency, [4] stock of (sku, location),
    [5] stock index of the partition
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] qty (units, > 0), [8] reference ('' none)
  Returns {json, replayed}; json is {ok, levels} with every bucket after the receipt, or
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'received' (on_hand +qty, reason = reference).
  Invariants: on_hand only grows; available grows by exactly qty.
]]
--- @include "common"
--- @include "stock"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local qty, reference = tonumber(ARGV[7]), ARGV[8]
return stock_done(change_stock(ctx, 'received', qty, {on_hand = qty}, {'reason', reference}))
