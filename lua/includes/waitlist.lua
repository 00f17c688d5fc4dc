-- The waitlist of a drop (include after "common"; docs/drops.md, "Waitlist"). Every
-- helper takes its keys as parameters.
--
--   waitlist (hash, per drop)   '<sku>|<customer>' -> entry json {qty, seq, status,
--                               joined_at, changed_at, actor (who put the customer in
--                               line), reservation and expires_at (of its offer)};
--                               '#seq' -> the last arrival number, '#offered' -> the
--                               entries 'offered' ('|' and '#' are outside every SKU name)
--   queue (sorted set, per sku) customer -> arrival number, of the entries 'waiting'
--
-- An entry's status: 'waiting' (in the queue), then 'declined' (the customer left the
-- line or released its offer), 'offered' (a hold for it, lua/includes/offers.lua), then
-- 'converted' (committed) or 'expired'; 'skipped': its turn came while its limit left
-- no room.

local WAITLIST_SEQ_FIELD = '#seq'

local function waitlist_field(sku, customer)
  return sku .. '|' .. customer
end

-- The entry of a customer for a SKU, as a table (nil: none).
local function waitlist_entry(waitlist_key, sku, customer)
  local raw = rcall('HGET', waitlist_key, waitlist_field(sku, customer))
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

local function waitlist_store(waitlist_key, sku, customer, entry)
  rcall('HSET', waitlist_key, waitlist_field(sku, customer), cjson.encode(entry))
end

-- The entry as returned to Python: its place in line (1 = next) while waiting, else 0.
local function waitlist_view(queue_key, sku, customer, entry)
  local position = 0
  if entry.status == 'waiting' then
    local rank = rcall('ZRANK', queue_key, customer)
    if not rank then
      error('earmark: a waiting entry of ' .. customer .. ' is not in its queue')
    end
    position = rank + 1
  end
  return {customer = customer, sku = sku, qty = entry.qty, status = entry.status,
          position = position, joined_at = entry.joined_at, changed_at = entry.changed_at,
          reservation = entry.reservation, expires_at = entry.expires_at}
end
