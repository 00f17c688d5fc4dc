--[[
  offer_waitlist: the sweeper's offer pass on one (sku, location) of a drop: units free
  there while customers wait for the SKU become offers to the head of its queue. The
  scripts that free a drop's units offer them themselves; this pass serves what they
  could not (more waiting customers than OFFERS_PER_CALL_MAX, units a restock, a return
  or an expiry outside those scripts freed).

  KEYS (7 + the offer part): [1] meta, [2] events, [3] idempotency (the write prefix;
    the sweeper sends no key), [4] expiries (the partition's reservation index),
    [5] stock of (sku, location), [6] its hold expiries, [7] its hold qty, then the
    offer part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation retention (ms) of the offers' parts, then [6..] the
    offer part (drop, sku, location, candidates), which must name a drop
  Returns {json, replayed}; json is
    {ok, offered = n}: the offers made (0 when nothing is free, nobody waits or the
      waitlist is off)
    {error = 'offer_keys', drop}: the queue's head is not the one sent; nothing written
    {error = 'store_not_ready' | 'idempotency_conflict'}
  Events: per offer 'reserved' (reserved +qty, reason 'offer') and 'waitlist_offered';
    per customer passed over (limit full) 'waitlist_skipped'.
  Invariants: units are offered in queue order and never past a customer's limit;
    available never goes below zero (expired holds not yet given back still count).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "drops"
--- @include "waitlist"
--- @include "offers"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local expiries_key = KEYS[4]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retention_ms = ARGV[5]
local offer = offer_call_at(KEYS, 8, ARGV, 6)
if offer.drop == '' then
  error('earmark: offer_waitlist needs a drop')
end
local line = {sku = offer.sku, location = offer.location, stock = KEYS[5], hexp = KEYS[6],
              hqty = KEYS[7]}

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end
local refusal = offer_check(offer, {drop = offer.drop}, {line}, true)
if refusal then
  return finish(ctx, refusal)
end
local in_drop = false
for _, s in ipairs(cjson.decode(rcall('HGET', offer.rules, 'skus'))) do
  in_drop = in_drop or s == offer.sku
end
if not in_drop then
  error('earmark: ' .. offer.sku .. ' is not a SKU of drop ' .. offer.drop)
end
return finish(ctx, {ok = true, offered = make_offers(ctx, offer, retention_ms, expiries_key)})
