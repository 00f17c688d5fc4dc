-- The waitlist of a drop (include after "common"; docs/drops.md, "Waitlist"). Every
-- helper takes its keys as parameters.
--
--   waitlist (hash, per drop)   '<sku>|<customer>' -> entry json {qty, seq, status,
--                               joined_at, changed_at, actor (who put the customer in
--                               line), reservation and expires_at (of its offer)};
--                               '#seq' -> the last arrival number, '#offered' -> the
--                               entries 'offered', '#queued|<sku>' -> the units the SKU's
--                               queue waits for ('|' and '#' are outside every SKU name)
--   queue (sorted set, per sku) customer -> arrival number, of the entries 'waiting'
--
-- An entry's status: 'waiting' (in the queue), then 'declined' (the customer left the
-- line or released its offer), 'offered' (a hold for it, lua/includes/offers.lua), then
-- 'converted' (committed) or 'expired'; 'skipped': its turn came while its limit left
-- no room.

local WAITLIST_SEQ_FIELD = '#seq'
local WAITLIST_QUEUED_PREFIX = '#queued|'

-- Keeps '#queued|<sku>': the units the SKU's queue waits for (its waiting entries' qty).
local function waitlist_queued_add(waitlist_key, sku, units)
  rcall('HINCRBY', waitlist_key, WAITLIST_QUEUED_PREFIX .. sku, units)
end

-- Units of `sku` a reserve under `drop` (drop_gate's state, nil: no drop) does not see as
-- available: while customers wait for the SKU, its free units are theirs first (they
-- become offers), so a reserve only takes what is free beyond what the line waits for.
-- No Redis work for a cart that takes no drop's SKU, or whose drop has no waitlist.
local function waitlist_line_units(drop, sku)
  if not drop or not drop.waitlist then
    return 0
  end
  return tonumber(rcall('HGET', drop.waitlist, WAITLIST_QUEUED_PREFIX .. sku) or '0')
end

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
