--[[
  adjust_stock: a correction of on_hand (a count found more or fewer units).

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location),
    [10] the partition's drop index, [11] its reservation expiries, then the offer
    part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] delta (units, non-zero), [9] reason,
    [10] forced: '1' lets a decrease eat into units already promised, [11] reservation
    retention (ms) of offers, [12..] the offer part ('' none)
  Returns {json, replayed}; json is
    {ok, levels}: every bucket after the change (and the offers it made)
    {error = 'offer_keys', drop}: the SKU is a drop's and the call did not bring its
      offer keys (or the queue's head moved): nothing written, call again with them
    {error = 'would_oversell', available, requested}: a decrease larger than available, not forced
    {error = 'insufficient_on_hand', on_hand, requested}: a decrease larger than on_hand
      (refused even when forced: on_hand counts physical units and is never negative)
    {error = 'reclaim_more'}: the answer depends on expired holds beyond ARGV[7] still
      counted; those given back stay given back, nothing else is written: call again
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold (expired holds never make a decrease look
    unsafe); 'adjusted' (on_hand +delta, reason; forced = 1 and exposure = units promised
    but no longer on hand, when forced); for a drop's SKU with customers waiting, the
    offers' events (lua/includes/offers.lua) of what is free after the change.
  Invariants: on_hand never negative; available goes below zero only through a forced
    decrease, which records the exposure on its event; offers take only available
    units (none after a decrease that left none).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"
--- @include "drops"
--- @include "waitlist"
--- @include "offers"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = stock_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[6])
local index_key, expiries_key, retention_ms = KEYS[STOCK_KEYS + 1], KEYS[STOCK_KEYS + 2], ARGV[11]
local offer = offer_call_at(KEYS, STOCK_KEYS + 3, ARGV, 12)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
local refusal = stock_offer_check(offer, index_key, place)
if refusal then
  return finish(ctx, refusal)
end
-- Expired holds stop counting before this change is checked against available.
local levels, more = reclaim_at(ctx, place, ARGV[7])
local delta, reason, forced = tonumber(ARGV[8]), ARGV[9], ARGV[10] == '1'

if levels.on_hand + delta < 0 then
  return finish(ctx, {error = 'insufficient_on_hand', on_hand = levels.on_hand,
                      requested = -delta})
end
local free_before = available(levels)
local free_after = free_before + delta
if delta < 0 and free_after < 0 and more then
  -- Refused, or forced with an exposure: either answer depends on holds still counted.
  return finish(ctx, reclaim_more())
end
if delta < 0 and free_after < 0 and not forced then
  return finish(ctx, {error = 'would_oversell', available = math.max(free_before, 0),
                      requested = -delta})
end
local extra = {'reason', reason}
if forced then
  extra[#extra + 1] = 'forced'
  extra[#extra + 1] = '1'
  extra[#extra + 1] = 'exposure'
  extra[#extra + 1] = math.max(0, -free_after) - math.max(0, -free_before)
end
local result = change_stock(ctx, place, levels, 'adjusted', math.abs(delta), {on_hand = delta},
                            extra)
return finish(ctx, stock_offers(ctx, offer, place, result, retention_ms, expiries_key))
