--[[
  create_purchase_order: one partition's lines of a purchase order; the units are
  expected (inbound) until received.

  KEYS (5 + 3 per line), the purchase order layout of includes/purchase_order.lua:
    [1] meta, [2] events, [3] idempotency, [4] purchase order part, [5] stock index,
    then per line: stock, locations of the line's sku, on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] purchase order id, [6] supplier, [7] expected date (YYYY-MM-DD),
    [8] reference, [9] reason, [10] line count n, [11..] per line: sku, location, qty
  Returns {json, replayed}; json is
    {ok, purchase_order = {id, status = 'open', supplier, expected_date, reference,
      created_at, lines = [{sku, location, expected, received = 0}]}}
    {error = 'idempotency_conflict' (also for an order id that exists) | 'store_not_ready' | 'durability_backlog'}
  Events: 'po_expected' per line (inbound +qty; purchase_order, supplier, expected_date,
    reference, reason).
  Invariants: inbound grows by exactly what the part's lines expect; the part and its
    events are written in one script.
]]
--- @include "common"
--- @include "write"
--- @include "lifecycle"
--- @include "purchase_order"

local meta_key, events_key, idem_key, part_key, index_key = KEYS[1], KEYS[2], KEYS[3],
                                                            KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local po_id, supplier, expected_date, reference, reason = ARGV[5], ARGV[6], ARGV[7],
                                                          ARGV[8], ARGV[9]
local n = bounded(ARGV[10], 'line count', 1, LINES_MAX)
check_keys(#KEYS, PO_KEYS + KEYS_PER_PO_LINE * n)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
if rcall('EXISTS', part_key) == 1 then
  return reply_error('idempotency_conflict')
end

local lines = {}
local extra = {'purchase_order', po_id, 'supplier', supplier, 'expected_date', expected_date,
               'reference', reference, 'reason', reason}
for i = 1, n do
  local a = 11 + (i - 1) * 3
  local sku, loc, qty = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  lines[i] = {sku = sku, location = loc, expected = qty, received = 0}
  move(ctx, po_line_at(KEYS, index_key, i, sku, loc), 'po_expected', qty, {inbound = qty}, extra)
end
rcall('HSET', part_key, 'status', 'open', 'supplier', supplier, 'expected_date', expected_date,
      'reference', reference, 'created_at', ctx.now, 'actor', actor,
      'lines', cjson.encode(lines))
local part = {status = 'open', supplier = supplier, expected_date = expected_date,
              reference = reference, created_at = ctx.now, lines = lines}
return finish(ctx, {ok = true, purchase_order = po_view(part, po_id)})
