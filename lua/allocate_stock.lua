--[[
  allocate_stock: moves units of one (sku, location) between the shared pool and one
  channel's allocation (docs/channels.md).

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] channel, [9] mode: 'move' (by ARGV[10]) or 'release_all',
    [10] qty (units, signed, not 0: > 0 ring-fences units, < 0 gives them back; '' for
    release_all)
  Returns {json, replayed}; json is
    {ok, levels, allocation = {channel, sku, location, allocated, moved}}
    {error = 'sku_not_found', sku, location, at}: no stock record at the (sku, location)
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}: more
      than available to fence
    {error = 'allocation_short', channel, allocated, requested}: more to give back than
      the channel's allocation holds
    {error = 'reclaim_more'}: a short fence still counts expired holds beyond ARGV[7]
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'allocated' (qty |moved|, deltas reserved
    +moved, flags allocation = the channel's units after, moved; none when nothing moves): the ledger's reserved stays what
    Redis holds, so `earmark verify --replay` stays exact.
  Invariants: the allocated units of every channel are counted in reserved (never more
    than on_hand - committed when fenced: a fence takes available units only); an
    allocation never goes below 0.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = stock_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[6])
check_keys(#KEYS, STOCK_KEYS)
local channel, mode = ARGV[8], ARGV[9]
local field = 'alloc:' .. channel
if channel == '' or (mode ~= 'move' and mode ~= 'release_all') then
  error('earmark: allocate_stock needs a channel and a mode of move or release_all')
end
local qty = tonumber(ARGV[10])
if mode == 'move' and (not qty or qty == 0 or qty ~= math.floor(qty)) then
  error('earmark: allocate_stock moves a whole, non-zero number of units')
end

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
ctx.channel = channel
if rcall('EXISTS', place.stock) == 0 then
  return finish(ctx, {error = 'sku_not_found', sku = place.sku, location = place.location,
                      at = 'at ' .. place.location})
end
local levels, more, values = reclaim_holds(ctx, place.stock, place.hexp, place.hqty,
                                           place.sku, place.location, ARGV[7], {field})
local allocated = tonumber(values[1] or '0')
if mode == 'release_all' then
  qty = -allocated
end
if qty > 0 and available(levels) < qty then
  if more then
    return finish(ctx, reclaim_more())
  end
  return finish(ctx, {error = 'insufficient_stock', lines = {{sku = place.sku,
                      location = place.location, requested = qty,
                      available = math.max(available(levels), 0)}}})
end
if -qty > allocated then
  return finish(ctx, {error = 'allocation_short', channel = channel, allocated = allocated,
                      requested = -qty})
end
local after = allocated + qty
if qty ~= 0 then
  apply(place.stock, levels, {reserved = qty}, nil, {field, after})
  if after == 0 then
    rcall('HDEL', place.stock, field)
  end
  emit(ctx, 'allocated', place.sku, place.location, math.abs(qty), {reserved = qty},
       {'allocation', after, 'moved', qty})
  check_low_stock(ctx, place.stock, place.sku, place.location, levels, 0)
end
return finish(ctx, {ok = true, levels = levels_view(levels, place.sku, place.location),
                    allocation = {channel = channel, sku = place.sku,
                                  location = place.location, allocated = after,
                                  moved = qty}})
