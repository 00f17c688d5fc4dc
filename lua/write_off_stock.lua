--[[
  write_off_stock: units leave the books for good, from on_hand or from damaged.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] reason, [10] source: 'on_hand' | 'damaged',
    [11] forced: '1' lets a write-off from on_hand eat into units already promised
  Returns {json, replayed}; json is
    {ok, levels, exposure}: exposure = units promised beyond on hand that this added
    {error = 'would_oversell', available, requested}: from on_hand, more than available,
      not forced
    {error = 'insufficient_on_hand', on_hand, requested}: from on_hand, more than on hand
    {error = 'insufficient_units', bucket = 'damaged', available, requested}: from damaged,
      more than are damaged
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'written_off' (source -qty, written_off +qty;
    reason, source); 'oversell_exposure' (no deltas) when forced past available.
  Invariants: no bucket goes negative; source + written_off is unchanged; available goes
    below zero only when forced, and then the exposure is recorded in the same script.
]]
--- @include "common"
--- @include "stock"
--- @include "lifecycle"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local qty, reason, source, forced = tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11] == '1'
local extra = {'reason', reason, 'source', source, 'forced', forced and '1' or '0'}
if source == 'on_hand' then
  return stock_done(take_on_hand(ctx, 'written_off', qty, 'written_off', forced, reason, extra))
end
if source ~= 'damaged' then
  error('earmark: unknown write-off source ' .. source)
end
local damaged = read_levels(KEYS[4]).damaged
if damaged < qty then
  return stock_done({error = 'insufficient_units', bucket = 'damaged', available = damaged,
                     requested = qty})
end
local result = change_stock(ctx, 'written_off', qty, {damaged = -qty, written_off = qty}, extra)
result.exposure = 0
return stock_done(result)
