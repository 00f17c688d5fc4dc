-- The purchase order layout: scripts that act on one partition's part of a purchase
-- order (include after "common", "write" and "lifecycle"). Their KEYS and ARGV:
--   KEYS[1-3] the write prefix (meta, events, idempotency),
--   KEYS[4] purchase order part, KEYS[5] stock index of the partition, then 3 keys per
--   line: stock, locations of the line's sku, on_hand log;
--   ARGV[1-4] the write prefix, ARGV[5] purchase order id, then the script's own.

local PO_KEYS = 5
local KEYS_PER_PO_LINE = 3

-- The place (see lifecycle's move) of line i of a call on this layout.
local function po_line_at(keys, index_key, i, sku, loc)
  local base = PO_KEYS + (i - 1) * KEYS_PER_PO_LINE
  return {stock = keys[base + 1], locations = keys[base + 2], log = keys[base + 3],
          index = index_key, sku = sku, location = loc}
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
local function po_view(part, po_id)
  return {id = po_id, status = part.status, supplier = part.supplier,
          expected_date = part.expected_date, reference = part.reference,
          created_at = part.created_at, closed_at = part.closed_at, lines = part.lines}
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
