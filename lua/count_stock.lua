--[[
  count_stock: a cycle count. The counter read the stock at `version`, counted the shelf
  and reports `counted`. on_hand moves by counted - (on_hand as it stood at that version),
  so changes since the read (a ship, a receipt) are kept, not counted twice or undone.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location),
    [10] the partition's drop index, [11] its reservation expiries, then the offer
    part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] counted (units, >= 0), [9] version the counter read, [10] reason,
    [11] reservation retention (ms) of offers, [12..] the offer part ('' none)
  Returns {json, replayed}; json is
    {ok, levels, counted, expected, delta, exposure}: expected = on_hand at the version,
      delta = counted - expected, exposure = units promised beyond on hand it added;
      levels after the count and the offers it made
    {error = 'offer_keys', drop}: the SKU is a drop's and the call did not bring its
      offer keys (or the queue's head moved): nothing written, call again with them
    {error = 'stale_count', version, current, oldest}: the version is older than the
      on_hand log remembers, not newer than the last applied count's (a later count of
      the shelf already answered for it), or newer than the stock (current); oldest is
      the oldest version a count may name now; nothing written
    {error = 'insufficient_on_hand', on_hand, requested}: the delta would take on_hand
      below zero (the count contradicts what happened since the read; recount)
    {error = 'reclaim_more'}: the answer depends on expired holds beyond ARGV[7] still
      counted; those given back stay given back, nothing else is written: call again
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'counted' (on_hand +delta, possibly 0; reason,
    counted, expected, counted_version); 'oversell_exposure' (no deltas; cause 'counted')
    when the count leaves fewer units on hand than are promised. A count is physical
    truth: it is never refused for pushing available below zero. For a drop's SKU with
    customers waiting, the offers' events (lua/includes/offers.lua) of what is free after
    the count.
  Invariants: on_hand never negative; a count is answered only from a log that saw every
    on_hand change since the version (ONHAND_LOG_MAX most recent changes); a count applies
    only when its version is newer than the last applied count's (the stock hash field
    counted_version), so no snapshot of the shelf is counted twice; offers take only
    available units (reserved + committed <= on_hand).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"
--- @include "drops"
--- @include "waitlist"
--- @include "offers"
--- @include "lifecycle"

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
local counted, version, reason = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
-- The version the last applied count was taken at (-1: never counted).
local last_counted = tonumber(rcall('HGET', place.stock, 'counted_version') or '-1')
local expected = nil
if version > last_counted then
  expected = on_hand_at(place.log, levels, version)
end
if expected == nil then
  local oldest = math.max(oldest_countable(place.log, levels), last_counted + 1)
  return finish(ctx, {error = 'stale_count', version = version, current = levels.version,
                      oldest = oldest})
end
local delta = counted - expected
if levels.on_hand + delta < 0 then
  return finish(ctx, {error = 'insufficient_on_hand', on_hand = levels.on_hand,
                      requested = -delta})
end
local exposure = math.max(0, exposure_added(levels, delta))
if exposure > 0 and more then
  -- The exposure would count holds that have expired.
  return finish(ctx, reclaim_more())
end
local result = change_stock(ctx, place, levels, 'counted', math.abs(delta), {on_hand = delta},
                            {'reason', reason, 'counted', counted, 'expected', expected,
                             'delta', delta, 'counted_version', version})
rcall('HSET', place.stock, 'counted_version', version)
if exposure > 0 then
  emit_exposure(ctx, place.sku, place.location, exposure, 'counted', reason)
end
result.counted, result.expected, result.delta, result.exposure = counted, expected, delta, exposure
return finish(ctx, stock_offers(ctx, offer, place, result, retention_ms, expiries_key))
