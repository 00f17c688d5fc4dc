--[[
  close_purchase_order: one partition's part of a purchase order stops expecting units,
  either closed (the supplier delivered what it will) or cancelled (nothing more wanted).

  KEYS (5 + 3 per line), the purchase order layout of includes/purchase_order.lua:
    [1] meta, [2] events, [3] idempotency, [4] purchase order part, [5] stock index,
    then per line of the part, in the part's order: stock, locations of the line's sku,
    on_hand log.
  ARGV: [1] purchase order id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] mode: 'close' | 'cancel', [7] reason,
    [8] retention (ms) of the finished part, [9] line count n,
    [10..9+2n] per line: sku, location (must match the part's lines, in order)
  Returns {json, replayed}; json is
    {ok, purchase_order}: status 'closed' / 'cancelled' (also when it already was)
    {error = 'purchase_order_closed', status}: already finished the other way
    {error = 'purchase_order_not_found' | 'lines_mismatch' | 'not_ready' |
      'idempotency_conflict'}
  Events, per line with units still outstanding (purchase_order, reason):
    'po_closed' or 'po_cancelled' (inbound -outstanding);
    on close only, 'supplier_discrepancy' short (no deltas; qty = units never delivered).
  Invariants: a finished part holds nothing in inbound; it is finished once.
]]
--- @include "common"
--- @include "lifecycle"
--- @include "purchase_order"

local po_id, actor, idem = ARGV[1], ARGV[3], ARGV[4]
local mode, reason, retention_ms, n = ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local target = mode == 'cancel' and 'cancelled' or 'closed'

local ctx, reply = open_write(ARGV[2], actor, idem)
if not ctx then
  return reply
end
local part = read_po(KEYS[4])
if not part then
  return po_done({error = 'purchase_order_not_found'})
end
if part.status == target then
  return po_done({ok = true, purchase_order = po_view(part)})
end
if part.status ~= 'open' then
  return po_done({error = 'purchase_order_closed', status = part.status})
end
if n ~= #part.lines or (#KEYS - PO_KEYS) ~= n * 3 then
  return po_done({error = 'lines_mismatch'})
end
for i, line in ipairs(part.lines) do
  if line.sku ~= ARGV[10 + (i - 1) * 2] or line.location ~= ARGV[11 + (i - 1) * 2] then
    return po_done({error = 'lines_mismatch'})
  end
end

local extra = {'purchase_order', po_id, 'reason', reason}
for i, line in ipairs(part.lines) do
  local outstanding = math.max(line.expected - line.received, 0)
  if outstanding > 0 then
    move(ctx, po_line_at(i, line.sku, line.location), 'po_' .. target, outstanding,
         {inbound = -outstanding}, extra)
    if mode == 'close' then
      emit(ctx, 'supplier_discrepancy', line.sku, line.location, outstanding, {},
           {'purchase_order', po_id, 'reason', reason, 'discrepancy', 'short'})
    end
  end
end
rcall('HSET', KEYS[4], 'status', target, 'closed_at', ctx.now)
rcall('PEXPIRE', KEYS[4], retention_ms)
part.status, part.closed_at = target, ctx.now
return po_done({ok = true, purchase_order = po_view(part)})
