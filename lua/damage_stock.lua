--[[
  damage_stock: units on hand are found damaged; they leave on_hand for the damaged bucket.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] reason,
    [10] forced: '1' lets the move eat into units already promised
  Returns {json, replayed}; json is
    {ok, levels, exposure}: exposure = units promised beyond on hand that this added
    {error = 'would_oversell', available, requested}: more than available, not forced
    {error = 'insufficient_on_hand', on_hand, requested}: more than on hand (even forced)
    {error = 'reclaim_more'}: the answer depends on expired holds beyond ARGV[7] still
      counted; those given back stay given back, nothing else is written: call again
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'damaged' (on_hand -qty, damaged +qty, reason);
    'oversell_exposure' (no deltas; qty = exposure, cause 'damaged') when forced past
    available.
  Invariants: no bucket goes negative; on_hand + damaged is unchanged; available goes
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
local qty, reason, forced = tonumber(ARGV[8]), ARGV[9], ARGV[10] == '1'
local extra = {'reason', reason, 'forced', forced and '1' or '0'}
return finish(ctx, take_on_hand(ctx, place, levels, more, 'damaged', qty, 'damaged', forced,
                                reason, extra))
