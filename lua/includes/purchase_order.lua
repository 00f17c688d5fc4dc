-- Helpers for the scripts that act on one partition's part of a purchase order.
-- Layout shared by those scripts:
--   KEYS[1] meta, KEYS[2] events, KEYS[3] idempotency, KEYS[4] purchase order part,
--   KEYS[5] stock index of the partition, then 3 keys per line:
--   stock, locations of the line's sku, on_hand log.
--   ARGV[1] purchase order id, ARGV[2] fingerprint, ARGV[3] actor,
--   ARGV[4] idempotency key ('' none), ARGV[5] idempotency retention (ms), then the
--   script's own arguments.

local PO_KEYS = 5

-- The `at` of lifecycle's move() for line i of the call.
local function po_line_at(i, sku, loc)
  local base = PO_KEYS + (i - 1) * 3
  return {stock = KEYS[base + 1], locations = KEYS[base + 2], log = KEYS[base + 3],
          index = KEYS[5], sku = sku, location = loc}
end

-- The part as a table (lines decoded); nil when this partition holds no such part.
local function read_po(part_key)
  local part = read_record(part_key)
  if part then
    part.lines = cjson.decode(part.lines)
    part.created_at = tonumber(part.created_at)
    part.closed_at = tonumber(part.closed_at or '')
  end
  return part
end

-- The public view of a part, as returned to Python.
local function po_view(part)
  return {id = ARGV[1], status = part.status, supplier = part.supplier,
          expected_date = part.expected_date, reference = part.reference,
          created_at = part.created_at, closed_at = part.closed_at, lines = part.lines}
end

local function po_done(result)
  return finish(KEYS[3], ARGV[4], ARGV[2], tonumber(ARGV[5]), result)
end

-- Index of the part's line for (sku, loc), or nil.
local function po_line_index(part, sku, loc)
  for j, line in ipairs(part.lines) do
    if line.sku == sku and line.location == loc then
      return j
    end
  end
  return nil
end
