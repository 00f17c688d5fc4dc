--[[
  create_purchase_order: one partition's lines of a purchase order; the units are
  expected (inbound) until received.

  KEYS (5 + 3 per line), the purchase order layout of includes/purchase_order.lua:
    [1] meta, [2] events, [3] idempotency, [4] purchase order part (created),
    [5] stock index, then per line: stock, locations of the line's sku, on_hand log.
  ARGV: [1] purchase order id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] supplier, [7] expected date (ISO), [8] reference,
    [9] reason, [10] line count n, [11..10+3n] per line: sku, location, qty (units, > 0)
  Returns {json, replayed}; json is
    {ok, purchase_order = {id, status = 'open', supplier, expected_date, reference,
      created_at, lines = [{sku, location, expected, received = 0}]}}
    {error = 'duplicate_purchase_order' | 'not_ready' | 'idempotency_conflict'}
  Events: 'po_expected' per line (inbound +qty; purchase_order, supplier, expected_date,
    reference, reason).
  Invariants: inbound grows by exactly what the part's lines expect; the part and its
    events are written in one script.
]]
--- @include "common"
--- @include "lifecycle"
--- @include "purchase_order"

local po_id, actor, idem = ARGV[1], ARGV[3], ARGV[4]
local supplier, expected_date, reference, reason = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local n = tonumber(ARGV[10])

local ctx, reply = open_write(ARGV[2], actor, idem)
if not ctx then
  return reply
end
if rcall('EXISTS', KEYS[4]) == 1 then
  return po_done({error = 'duplicate_purchase_order'})
end

local lines = {}
local extra = {'purchase_order', po_id, 'supplier', supplier, 'expected_date', expected_date,
               'reference', reference, 'reason', reason}
for i = 1, n do
  local a = 11 + (i - 1) * 3
  local sku, loc, qty = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  lines[i] = {sku = sku, location = loc, expected = qty, received = 0}
  move(ctx, po_line_at(i, sku, loc), 'po_expected', qty, {inbound = qty}, extra)
end
rcall('HSET', KEYS[4], 'status', 'open', 'supplier', supplier, 'expected_date', expected_date,
      'reference', reference, 'created_at', ctx.now, 'actor', actor,
      'lines', cjson.encode(lines))
return po_done({ok = true, purchase_order = po_view(read_po(KEYS[4]))})
