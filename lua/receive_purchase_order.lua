--[[
  receive_purchase_order: a delivery against one partition's lines of a purchase order
  (partial, complete or more than ordered).

  KEYS, the purchase order layout of includes/purchase_order.lua: [1] meta, [2] events,
    [3] idempotency, [4] purchase order part, [5] stock index, then per received line:
    stock, locations of the line's sku, on_hand log; after the n lines (r = 5 + 3n):
    [r+1] the partition's drop index, [r+2] its reservation expiries; when the offer
    part names a drop: [r+3] hold expiries and [r+4] hold qty of the offer line; then
    the offer part's KEYS (lua/includes/offers.lua).
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] purchase order id, [6] reason, [7] line count n,
    [8..] per received line: sku, location, qty (units delivered); after them
    (s = 8 + 3n): [s] reservation retention (ms) of offers, [s+1..] the offer part
    ('' none). The offer line is the first received line whose SKU is a drop's (a
    delivery of several drops' SKUs offers that line's units; the sweeper's offer pass
    serves the others).
  Returns {json, replayed}; json is
    {ok, purchase_order}: with each line's received total (and the offers made)
    {error = 'offer_keys', drop}: a received SKU is a drop's and the call did not bring
      the offer keys of its first such line (or the queue's head moved): nothing
      written, call again with them
    {error = 'purchase_order_not_found'}
    {error = 'purchase_order_closed', status}: closed or cancelled; nothing received
    {error = 'no_line', sku, location}: the part has no such line; nothing received
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events, per received line (purchase_order, reason):
    'po_received' (inbound -n, on_hand +n; n = min(qty, outstanding), if n > 0)
    'supplier_discrepancy' over (on_hand +extra) for units beyond what was outstanding.
    For the offer line, with customers waiting, the offers' events
    (lua/includes/offers.lua).
  Invariants: inbound never goes below what the order still expects elsewhere (only this
    order's outstanding units leave it); every delivered unit lands in on_hand; offers
    take only units available at the offer line (reserved + committed <= on_hand).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "lifecycle"
--- @include "purchase_order"
--- @include "drops"
--- @include "waitlist"
--- @include "offers"

local meta_key, events_key, idem_key, part_key, index_key = KEYS[1], KEYS[2], KEYS[3],
                                                            KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local po_id, reason = ARGV[5], ARGV[6]
local n = bounded(ARGV[7], 'line count', 1, LINES_MAX)
local r, s = PO_KEYS + KEYS_PER_PO_LINE * n, 8 + 3 * n
local drop_index_key, expiries_key, offer_retention_ms = KEYS[r + 1], KEYS[r + 2], ARGV[s]
local offer_hexp, offer_hqty, offer_first = nil, nil, r + 3
if (ARGV[s + 1] or '') ~= '' then
  offer_hexp, offer_hqty, offer_first = KEYS[r + 3], KEYS[r + 4], r + 5
end
local offer = offer_call_at(KEYS, offer_first, ARGV, s + 1)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
local part = read_po(part_key)
if not part then
  return finish(ctx, {error = 'purchase_order_not_found'})
end
if part.status ~= 'open' then
  return finish(ctx, {error = 'purchase_order_closed', status = part.status})
end
local found = {}
for i = 1, n do
  local a = 8 + (i - 1) * 3
  found[i] = po_line_index(part, ARGV[a], ARGV[a + 1])
  if not found[i] then
    return finish(ctx, {error = 'no_line', sku = ARGV[a], location = ARGV[a + 1]})
  end
end
-- The offer line: the first received line of a drop's SKU.
local offer_at = nil
for i = 1, n do
  local a = 8 + (i - 1) * 3
  if rcall('HEXISTS', drop_index_key, ARGV[a]) == 1 then
    offer_at = po_line_at(KEYS, index_key, i, ARGV[a], ARGV[a + 1])
    offer_at.hexp, offer_at.hqty = offer_hexp, offer_hqty
    break
  end
end
if offer_at then
  local refusal = stock_offer_check(offer, drop_index_key, offer_at)
  if refusal then
    return finish(ctx, refusal)
  end
else
  offer.active = false
end

for i = 1, n do
  local a = 8 + (i - 1) * 3
  local sku, loc, qty = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local line = part.lines[found[i]]
  local place = po_line_at(KEYS, index_key, i, sku, loc)
  local taken = math.min(qty, math.max(line.expected - line.received, 0))
  if taken > 0 then
    move(ctx, place, 'po_received', taken, {inbound = -taken, on_hand = taken},
         {'purchase_order', po_id, 'reason', reason})
  end
  if qty > taken then
    move(ctx, place, 'supplier_discrepancy', qty - taken, {on_hand = qty - taken},
         {'purchase_order', po_id, 'reason', reason, 'discrepancy', 'over'})
  end
  line.received = line.received + qty
end
rcall('HSET', part_key, 'lines', cjson.encode(part.lines))
make_offers(ctx, offer, offer_retention_ms, expiries_key)
return finish(ctx, {ok = true, purchase_order = po_view(part, po_id)})
