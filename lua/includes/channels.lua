-- Channels (include after "common"): what one sales channel may sell of a (sku, location)
-- (docs/channels.md). Every helper takes its keys and values as parameters.
--
--   channel settings (hash, one per channel per partition)
--     '*'            'buffer_units:buffer_percent:floor', the channel's default; written
--                    to every partition by the PUT, so a reserve finds it in its slot
--     'sku:<sku>'    the same for one SKU (an override; only in the SKU's partition)
--   allocations (fields of the stock hash of the (sku, location))
--     'alloc:<channel>'  units ring-fenced for the channel; they are counted in
--                    `reserved` (so every other channel, and a reserve with no channel,
--                    sees them as unavailable with no extra read), drawn down first by
--                    the channel's own reserves.
--
-- The view of a channel with rule {units, percent, floor} over `free` shared units:
--   0 when free <= floor, else max(0, free - max(units, ceil(free * percent / 100)));
-- its allocation is added on top (a buffer covers the shared pool, not the fence).

-- Bounds checked in Lua as well as in Python (earmark/limits.py, same names; a test
-- checks they agree). Rules (the default and overrides) one channel keeps per partition.
local CHANNEL_RULES_PER_PARTITION_MAX = 10000

-- A rule as stored ('u:p:f'), or nil when unset.
local function channel_rule(raw)
  if not raw then
    return nil
  end
  local u, p, f = string.match(raw, '^(%d+):(%d+):(%d+)$')
  if not u then
    error('earmark: malformed channel rule ' .. tostring(raw))
  end
  return {units = tonumber(u), percent = tonumber(p), floor = tonumber(f)}
end

-- Units of `free` (shared, may be negative) the rule lets the channel see.
local function channel_shared_view(rule, free)
  if free < 0 then
    free = 0
  end
  if not rule then
    return free
  end
  if free <= rule.floor then
    return 0
  end
  local buffer = math.max(rule.units, math.ceil(free * rule.percent / 100))
  return math.max(0, free - buffer)
end

-- The channel part of a reserve call: nil for no channel (no key, nothing read);
-- otherwise the channel's rules for the cart's n SKUs (laid out as sku, location, qty
-- from argv[first]), read in one HMGET of its settings key.
local function channel_open(settings_key, channel, argv, first, n)
  if channel == '' then
    return nil
  end
  local fields, skus = {'*'}, {}
  for i = 1, n do
    skus[i] = argv[first + (i - 1) * 3]
    fields[i + 1] = 'sku:' .. skus[i]
  end
  local raw = rcall('HMGET', settings_key, unpack(fields))
  local default = channel_rule(raw[1])
  local rules = {}
  for i, sku in ipairs(skus) do
    rules[sku] = channel_rule(raw[i + 1]) or default
  end
  return {name = channel, field = 'alloc:' .. channel, rules = rules}
end

-- KEYS a reserve call carries for its channel (the settings key, or none).
local function channel_key_count(channel)
  if channel == '' then
    return 0
  end
  return 1
end

-- The stock-hash fields a reserve reads per line, with the channel's allocation field
-- appended (read in the same HMGET); `fields` as is for no channel.
local function channel_fields(chan, fields)
  if not chan then
    return fields
  end
  local out = {unpack(fields)}
  out[#out + 1] = chan.field
  return out
end

-- What the channel may take of one line: its view (the shared part through its rule
-- plus what of its allocation still stands) and the allocation units (`fenced`).
-- `free` is available(levels), `alloc_raw` the line's 'alloc:<channel>' field.
local function channel_free(chan, sku, free, alloc_raw)
  if not chan then
    return free, 0
  end
  local fenced = tonumber(alloc_raw or '0')
  -- units short of on_hand (a forced decrease) eat into the fence first
  local standing = math.max(0, math.min(fenced, fenced + free))
  return channel_shared_view(chan.rules[sku], free) + standing, fenced
end

-- The deltas of a hold of `qty` by the channel and the event's flags: the allocation is
-- drawn down first (its units are already counted in `reserved`); the allocation field
-- joins `extra`, the other fields the same HSET writes.
local function channel_take(chan, qty, fenced, extra)
  if not chan or fenced <= 0 then
    return {reserved = qty}, nil
  end
  local drawn = math.min(qty, fenced)
  extra[#extra + 1] = chan.field
  extra[#extra + 1] = fenced - drawn
  return {reserved = qty - drawn}, {'allocation_drawn', drawn, 'allocation', fenced - drawn}
end

-- The event flags of a hold, with the channel's (nil: none) appended.
local function channel_flags(flags, more)
  if more then
    for i = 1, #more do
      flags[#flags + 1] = more[i]
    end
  end
  return flags
end
