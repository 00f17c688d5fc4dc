--[[
  dispose_returned: decide what becomes of returned units waiting in quarantine.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] disposition: 'restock' | 'damaged' | 'write_off', [10] reason
  Returns {json, replayed}; json is
    {ok, levels}
    {error = 'insufficient_units', bucket = 'returned', available, requested}: fewer units
      are in returned than qty
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; one of
    'return_restocked'   (returned -qty, on_hand +qty: available again at once)
    'return_damaged'     (returned -qty, damaged +qty)
    'return_written_off' (returned -qty, written_off +qty)
    each with reason and disposition.
  Invariants: returned never goes negative; units only move between buckets.
]]
--- @include "common"
--- @include "stock"

local MOVES = {
  restock = {'return_restocked', 'on_hand'},
  damaged = {'return_damaged', 'damaged'},
  write_off = {'return_written_off', 'written_off'},
}

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local qty, disposition, reason = tonumber(ARGV[8]), ARGV[9], ARGV[10]
local target = MOVES[disposition]
if not target then
  error('earmark: unknown disposition ' .. disposition)
end
local returned = read_levels(KEYS[4]).returned
if returned < qty then
  return stock_done({error = 'insufficient_units', bucket = 'returned', available = returned,
                     requested = qty})
end
local deltas = {returned = -qty}
deltas[target[2]] = qty
return stock_done(change_stock(ctx, target[1], qty, deltas,
                               {'reason', reason, 'disposition', disposition}))
