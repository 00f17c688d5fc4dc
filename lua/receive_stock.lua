--[[
  receive_stock: units arrive and become sellable.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location),
    [10] the partition's drop index, [11] its reservation expiries, then the offer
    part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] reference ('' none), [10] reservation retention (ms) of
    offers, [11..] the offer part ('' none)
  Returns {json, replayed}; json is {ok, levels} with every bucket after the receipt
    (and the offers it made), or
    {error = 'offer_keys', drop}: the SKU is a drop's and the call did not bring its
      offer keys (or the queue's head moved): nothing written, call again with them
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'received' (on_hand +qty, reason = reference);
    for a drop's SKU with customers waiting, the offers' events (lua/includes/offers.lua).
  Invariants: on_hand only grows; available grows by exactly qty, less what is offered
    to the SKU's waitlist in the same call.
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
local index_key, expiries_key, retention_ms = KEYS[STOCK_KEYS + 1], KEYS[STOCK_KEYS + 2], ARGV[10]
local offer = offer_call_at(KEYS, STOCK_KEYS + 3, ARGV, 11)

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
local levels = reclaim_at(ctx, place, ARGV[7])
local qty, reference = tonumber(ARGV[8]), ARGV[9]
local reply = change_stock(ctx, place, levels, 'received', qty, {on_hand = qty},
                           {'reason', reference})
return finish(ctx, stock_offers(ctx, offer, place, reply, retention_ms, expiries_key))
