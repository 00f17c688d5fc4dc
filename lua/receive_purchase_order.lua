--[[
  receive_purchase_order: a delivery against one partition's lines of a purchase order
  (partial, complete or more than ordered).

  KEYS (5 + 3 per received line), the purchase order layout of includes/purchase_order.lua:
    [1] meta, [2] events, [3] idempotency, [4] purchase order part, [5] stock index,
    then per received line: stock, locations of the line's sku, on_hand log.
  ARGV: [1] purchase order id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] reason, [7] line count n,
    [8..7+3n] per received line: sku, location, qty (units, > 0)
  Returns {json, replayed}; json is
    {ok, purchase_order}: with each line's received total
    {error = 'purchase_order_not_found'}
    {error = 'purchase_order_closed', status}: closed or cancelled; nothing received
    {error = 'no_line', sku, location}: the part has no such line; nothing received
    {error = 'not_ready' | 'idempotency_conflict'}
  Events, per received line (purchase_order, reason):
    'po_received' (inbound -n, on_hand +n; n = min(qty, outstanding), if n > 0)
    'supplier_discrepancy' over (on_hand +extra) for units beyond what was outstanding.
  Invariants: inbound never goes below what the order still expects elsewhere (only this
    order's outstanding units leave it); every delivered unit lands in on_hand.
]]
--- @include "common"
--- @include "lifecycle"
--- @include "purchase_order"

local po_id, actor, idem = ARGV[1], ARGV[3], ARGV[4]
local reason, n = ARGV[6], tonumber(ARGV[7])

local ctx, reply = open_write(ARGV[2], actor, idem)
if not ctx then
  return reply
end
local part = read_po(KEYS[4])
if not part then
  return po_done({error = 'purchase_order_not_found'})
end
if part.status ~= 'open' then
  return po_done({error = 'purchase_order_closed', status = part.status})
end
local found = {}
for i = 1, n do
  local a = 8 + (i - 1) * 3
  found[i] = po_line_index(part, ARGV[a], ARGV[a + 1])
  if not found[i] then
    return po_done({error = 'no_line', sku = ARGV[a], location = ARGV[a + 1]})
  end
end

for i = 1, n do
  local a = 8 + (i - 1) * 3
  local sku, loc, qty = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local line = part.lines[found[i]]
  local at = po_line_at(i, sku, loc)
  local taken = math.min(qty, math.max(line.expected - line.received, 0))
  if taken > 0 then
    move(ctx, at, 'po_received', taken, {inbound = -taken, on_hand = taken},
         {'purchase_order', po_id, 'reason', reason})
  end
  if qty > taken then
    move(ctx, at, 'supplier_discrepancy', qty - taken, {on_hand = qty - taken},
         {'purchase_order', po_id, 'reason', reason, 'discrepancy', 'over'})
  end
  line.received = line.received + qty
end
rcall('HSET', KEYS[4], 'lines', cjson.encode(part.lines))
return po_done({ok = true, purchase_order = po_view(part)})
