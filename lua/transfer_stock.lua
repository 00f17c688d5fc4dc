--[[
  transfer_stock: units leave one location of a SKU for another. They count in in_transit
  at the destination until receive_transfer books them in.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
    for the source (sku, from); then [10] stock at to, [11] on_hand log at to,
    [12] transfer record (hash)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] to location, [10] transfer id, [11] reference, [12] reason
  Returns {json, replayed}; json is
    {ok, transfer, levels}: levels at from after the transfer
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}: fewer
      units are available at from than qty (expired holds no longer count)
    {error = 'idempotency_conflict'}: also when a transfer with this id exists
    {error = 'reclaim_more'}: the answer depends on expired holds beyond ARGV[7] still
      counted; those given back stay given back, nothing else is written: call again
    {error = 'store_not_ready' | 'durability_backlog'}
  Events: 'expired' per reclaimed hold; 'transfer_out' at from (on_hand -qty) and
    'transfer_in' at to (in_transit +qty), both with transfer, from, to, reference, reason.
  Invariants: available at from never goes below zero; the units move from on_hand at
    from to in_transit at to in one script (the network total does not change).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"
--- @include "lifecycle"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = stock_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[6])
check_keys(#KEYS, STOCK_KEYS + 3)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
-- Expired holds stop counting before this change is checked against available.
local levels, more = reclaim_at(ctx, place, ARGV[7])
local to_stock_key, to_log_key, transfer_key = KEYS[10], KEYS[11], KEYS[12]
local qty, to, tid, reference, reason = tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if rcall('EXISTS', transfer_key) == 1 then
  return finish(ctx, {error = 'idempotency_conflict'})
end
local free = available(levels)
if free < qty and more then
  return finish(ctx, reclaim_more())
end
if free < qty then
  return finish(ctx, {error = 'insufficient_stock', lines = {
    {sku = place.sku, location = place.location, requested = qty,
     available = math.max(free, 0)}}})
end

local extra = {'transfer', tid, 'from', place.location, 'to', to, 'reference', reference,
               'reason', reason}
local result = change_stock(ctx, place, levels, 'transfer_out', qty, {on_hand = -qty}, extra)
local there = stock_place(to_stock_key, place.index, nil, nil, place.locations, to_log_key,
                          place.sku, to)
move(ctx, there, 'transfer_in', qty, {in_transit = qty}, extra)
local record = {sku = place.sku, from = place.location, to = to, qty_shipped = qty,
                qty_received = 0, status = 'in_transit', reference = reference,
                created_at = ctx.now, actor = ctx.actor}
rcall('HSET', transfer_key, 'sku', record.sku, 'from', record.from, 'to', to,
      'qty_shipped', qty, 'qty_received', 0, 'status', record.status,
      'reference', reference, 'created_at', ctx.now, 'actor', ctx.actor)
record.id = tid
result.transfer = record
return finish(ctx, result)
