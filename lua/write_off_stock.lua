--[[
  write_off_stock: units leave the books for good, from on_hand or from damaged.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] reason, [10] source: 'on_hand' or 'damaged',
    [11] forced: '1' lets a write-off from on_hand eat into units already promised
  Returns {json, replayed}; json is
    {ok, levels, exposure}: exposure = units promised beyond on hand that this added
    {error = 'would_oversell', available, requested}: from on_hand, more than available,
      not forced
    {error = 'insufficient_on_hand', on_hand, requested}: from on_hand, more than on hand
    {error = 'insufficient_units', bucket = 'damaged', available, requested}: from damaged,
      more than are damaged
    {error = 'reclaim_more'}: the answer depends on expired holds beyond ARGV[7] still
      counted; those given back stay given back, nothing else is written: call again
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'written_off' (source -qty, written_off +qty;
    reason, source); 'oversell_exposure' (no deltas) when forced past available.
  Invariants: no bucket goes negative; source + written_off is unchanged; available goes
    below zero only when forced, and then the exposure is recorded in the same script.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"
--- @include "lifecycle"

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
local levels, more = reclaim_at(ctx, place, ARGV[7])
local qty, reason, source, forced = tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11] == '1'
local extra = {'reason', reason, 'source', source, 'forced', forced and '1' or '0'}
if source == 'on_hand' then
  return finish(ctx, take_on_hand(ctx, place, levels, more, 'written_off', qty,
                                  'written_off', forced, reason, extra))
end
if source ~= 'damaged' then
  error('earmark: unknown write-off source ' .. source)
end
if levels.damaged < qty then
  return finish(ctx, {error = 'insufficient_units', bucket = 'damaged',
                      available = levels.damaged, requested = qty})
end
local result = change_stock(ctx, place, levels, 'written_off', qty,
                            {damaged = -qty, written_off = qty}, extra)
result.exposure = 0
return finish(ctx, result)
