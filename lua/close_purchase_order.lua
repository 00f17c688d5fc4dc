--[[
  close_purchase_order: one partition's part of a purchase order stops expecting units,
  either closed (the supplier delivered what it will) or cancelled (nothing more wanted).

  KEYS (5 + 3 per line), the purchase order layout of includes/purchase_order.lua:
    [1] meta, [2] events, [3] idempotency, [4] purchase order part, [5] stock index,
    then per line of the part, in the part's order: stock, locations of the line's sku,
    on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] purchase order id, [6] mode: 'close' or 'cancel', [7] reason,
    [8] retention (ms) of the finished part, [9] line count n,
    [10..] per line of the part: sku, location
  Returns {json, replayed}; json is
    {ok, purchase_order}: status 'closed' / 'cancelled' (also when it already was)
    {error = 'purchase_order_closed', status}: already finished the other way
    {error = 'purchase_order_not_found' | 'lines_mismatch' | 'store_not_ready' | 'durability_backlog' |
      'idempotency_conflict'}
  Events, per line with units still outstanding (purchase_order, reason):
    'po_closed' or 'po_cancelled' (inbound -outstanding);
    on close only, 'supplier_discrepancy' short (no deltas; qty = units never delivered).
  Invariants: a finished part holds nothing in inbound; it is finished once.
]]
--- @include "common"
--- @include "write"
--- @include "lifecycle"
--- @include "purchase_order"

local meta_key, events_key, idem_key, part_key, index_key = KEYS[1], KEYS[2], KEYS[3],
                                                            KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local po_id, mode, reason, retention_ms = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local n = bounded(ARGV[9], 'line count', 1, LINES_MAX)
check_keys(#KEYS, PO_KEYS + KEYS_PER_PO_LINE * n)
local target = mode == 'cancel' and 'cancelled' or 'closed'

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
local part = read_po(part_key)
if not part then
  return finish(ctx, {error = 'purchase_order_not_found'})
end
if part.status == target then
  return finish(ctx, {ok = true, purchase_order = po_view(part, po_id)})
end
if part.status ~= 'open' then
  return finish(ctx, {error = 'purchase_order_closed', status = part.status})
end
if n ~= #part.lines then
  return finish(ctx, {error = 'lines_mismatch'})
end
for i, line in ipairs(part.lines) do
  if line.sku ~= ARGV[10 + (i - 1) * 2] or line.location ~= ARGV[11 + (i - 1) * 2] then
    return finish(ctx, {error = 'lines_mismatch'})
  end
end

local extra = {'purchase_order', po_id, 'reason', reason}
for i, line in ipairs(part.lines) do
  local outstanding = math.max(line.expected - line.received, 0)
  if outstanding > 0 then
    move(ctx, po_line_at(KEYS, index_key, i, line.sku, line.location), 'po_' .. target,
         outstanding, {inbound = -outstanding}, extra)
    if mode == 'close' then
      emit(ctx, 'supplier_discrepancy', line.sku, line.location, outstanding, {},
           {'purchase_order', po_id, 'reason', reason, 'discrepancy', 'short'})
    end
  end
end
rcall('HSET', part_key, 'status', target, 'closed_at', ctx.now)
rcall('PEXPIRE', part_key, retention_ms)
part.status, part.closed_at = target, ctx.now
return finish(ctx, {ok = true, purchase_order = po_view(part, po_id)})
