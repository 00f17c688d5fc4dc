--[[
  receive_purchase_order: a delivery against one partition's lines of a purchase order
  (partial, complete or more than ordered).

  KEYS (5 + 3 per received line), the purchase order layout of includes/purchase_order.lua:
    [1] meta, [2] events, [3] idempotency, [4] purchase order part, [5] stock index,
    then per received line: stock, locations of the line's sku, on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] purchase order id, [6] reason, [7] line count n,
    [8..] per received line: sku, location, qty (units delivered)
  Returns {json, replayed}; json is
    {ok, purchase_order}: with each line's received total
    {error = 'purchase_order_not_found'}
    {error = 'purchase_order_closed', status}: closed or cancelled; nothing received
    {error = 'no_line', sku, location}: the part has no such line; nothing received
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events, per received line (purchase_order, reason):
    'po_received' (inbound -n, on_hand +n; n = min(qty, outstanding), if n > 0)
    'supplier_discrepancy' over (on_hand +extra) for units beyond what was outstanding.
  Invariants: inbound never goes below what the order still expects elsewhere (only this
    order's outstanding units leave it); every delivered unit lands in on_hand.
]]
--- @include "common"
--- @include "write"
--- @include "lifecycle"
--- @include "purchase_order"

local meta_key, events_key, idem_key, part_key, index_key = KEYS[1], KEYS[2], KEYS[3],
                                                            KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local po_id, reason = ARGV[5], ARGV[6]
local n = bounded(ARGV[7], 'line count', 1, LINES_MAX)
check_keys(#KEYS, PO_KEYS + KEYS_PER_PO_LINE * n)

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
return finish(ctx, {ok = true, purchase_order = po_view(part, po_id)})
