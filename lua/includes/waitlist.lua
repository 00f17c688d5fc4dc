-- The waitlist of a drop (include after "common"; docs/drops.md, "Waitlist"). Every
-- helper takes its keys as parameters.
--
--   waitlist (hash, per drop)   '<sku>|<customer>' -> entry json {qty, seq, status,
--                               joined_at, changed_at}; '#seq' -> the last arrival number
--                               ('|' and '#' are outside every SKU name)
--   queue (sorted set, per sku) customer -> arrival number, of the entries 'waiting'
--
-- An entry's status: 'waiting' (in the queue), then 'declined' (the customer left the
-- line); 'offered', 'converted' and 'expired' belong to offers.

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
          position = position, joined_at = entry.joined_at, changed_at = entry.changed_at}
end
