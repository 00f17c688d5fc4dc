--[[
  transfer_stock: units leave one location of a SKU for another. They count in in_transit
  at the destination until receive_transfer books them in.

  KEYS: the stock layout of includes/stock.lua for the source (sku, from):
    [1] meta, [2] events, [3] idempotency, [4] stock at from, [5] stock index of the
    partition, [6] hold expiries at from, [7] hold qty at from, [8] locations of the sku,
    [9] on_hand log at from; then
    [10] stock at to, [11] on_hand log at to, [12] transfer record (hash)
  ARGV: [1] sku, [2] from location, [3] fingerprint, [4] actor, [5] idempotency key
    ('' none), [6] idempotency retention (ms), [7] expired holds reclaimed at from first
    (at most), [8] qty (units, > 0), [9] to location, [10] transfer id, [11] reference,
    [12] reason
  Returns {json, replayed}; json is
    {ok, transfer, levels}: levels at from after the transfer
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}: fewer
      units are available at from than qty (expired holds no longer count)
    {error = 'duplicate_transfer'}: a transfer with this id exists
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'transfer_out' at from (on_hand -qty) and
    'transfer_in' at to (in_transit +qty), both with transfer, from, to, reference, reason.
  Invariants: available at from never goes below zero; the units move from on_hand at
    from to in_transit at to in one script (the network total does not change).
]]
--- @include "common"
--- @include "stock"
--- @include "lifecycle"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local sku, from = ARGV[1], ARGV[2]
local qty, to, tid, reference, reason = tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if rcall('EXISTS', KEYS[12]) == 1 then
  return stock_done({error = 'duplicate_transfer'})
end
local free = available(read_levels(KEYS[4]))
if free < qty then
  return stock_done({error = 'insufficient_stock', lines = {
    {sku = sku, location = from, requested = qty, available = math.max(free, 0)}}})
end

local extra = {'transfer', tid, 'from', from, 'to', to, 'reference', reference, 'reason', reason}
local result = change_stock(ctx, 'transfer_out', qty, {on_hand = -qty}, extra)
change_location(ctx, KEYS[10], KEYS[11], to, 'transfer_in', qty, {in_transit = qty}, extra)
rcall('HSET', KEYS[12], 'sku', sku, 'from', from, 'to', to, 'qty_shipped', qty,
      'qty_received', 0, 'status', 'in_transit', 'reference', reference,
      'created_at', ctx.now, 'actor', ctx.actor)
result.transfer = read_record(KEYS[12])
result.transfer.id = tid
return stock_done(result)
