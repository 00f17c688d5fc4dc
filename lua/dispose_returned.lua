--[[
  dispose_returned: decide what becomes of returned units waiting in quarantine.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location),
    [10] the partition's drop index, [11] its reservation expiries, then the offer
    part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] qty (units, > 0), [9] disposition: 'restock', 'damaged' or 'write_off',
    [10] reason, [11] reservation retention (ms) of offers, [12..] the offer part
  Returns {json, replayed}; json is
    {ok, levels} (after the offers a restock made)
    {error = 'offer_keys', drop}: the SKU is a drop's and the call did not bring its
      offer keys (or the queue's head moved): nothing written, call again with them
    {error = 'insufficient_units', bucket = 'returned', available, requested}: fewer units
      are in returned than qty
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; one of
    'return_restocked'   (returned -qty, on_hand +qty: available again at once)
    'return_damaged'     (returned -qty, damaged +qty)
    'return_written_off' (returned -qty, written_off +qty)
    each with reason and disposition; after a restock of a drop's SKU with customers
    waiting, the offers' events (lua/includes/offers.lua).
  Invariants: returned never goes negative; units only move between buckets; restocked
    units go to the SKU's waitlist first.
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
if ARGV[9] == 'restock' then
  local refusal = stock_offer_check(offer, index_key, place)
  if refusal then
    return finish(ctx, refusal)
  end
else
  offer.active = false
end
-- Expired holds stop counting before this change is checked against available.
local levels = reclaim_at(ctx, place, ARGV[7])
local MOVES = {
  restock = {'return_restocked', 'on_hand'},
  damaged = {'return_damaged', 'damaged'},
  write_off = {'return_written_off', 'written_off'},
}
local qty, disposition, reason = tonumber(ARGV[8]), ARGV[9], ARGV[10]
local target = MOVES[disposition]
if not target then
  error('earmark: unknown disposition ' .. disposition)
end
if levels.returned < qty then
  return finish(ctx, {error = 'insufficient_units', bucket = 'returned',
                      available = levels.returned, requested = qty})
end
local deltas = {returned = -qty}
deltas[target[2]] = qty
local changed = change_stock(ctx, place, levels, target[1], qty, deltas,
                             {'reason', reason, 'disposition', disposition})
return finish(ctx, stock_offers(ctx, offer, place, changed, retention_ms, expiries_key))
