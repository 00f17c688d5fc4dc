-- Low-stock alerts (include after "common", before "holds"): the reorder settings and
-- the alert state of a (sku, location) live in its stock hash beside the buckets, so
-- every write script that changes availability already holds the key the check needs
-- (no script gains KEYS for it). Fields:
--   reorder_point, rearm_above (units), lead_time_days (absent: none),
--   alert_low ('1' while the alert has fired and is disarmed), alert_at (ms it fired),
--   dh<i>, du<i> for i in [0, DEMAND_HOURS): the hour (ms / 3,600,000) and the units
--   reserved in it, a ring of DEMAND_HOURS slots, so demand memory is bounded.

local DEMAND_HOURS = 24
local HOUR_MS = 3600000

-- Adds `units` reserved now to the demand ring of a stock key.
local function record_demand(stock_key, now, units)
  local hour = math.floor(now / HOUR_MS)
  local slot = hour % DEMAND_HOURS
  local raw = rcall('HMGET', stock_key, 'dh' .. slot, 'du' .. slot)
  local total = units
  if tonumber(raw[1] or '-1') == hour then
    total = total + tonumber(raw[2] or '0')
  end
  rcall('HSET', stock_key, 'dh' .. slot, hour, 'du' .. slot, total)
end

-- Units reserved in this hour and the DEMAND_HOURS - 1 before it.
local function demand_24h(stock_key, now)
  local hour = math.floor(now / HOUR_MS)
  local fields = {}
  for i = 0, DEMAND_HOURS - 1 do
    fields[#fields + 1] = 'dh' .. i
    fields[#fields + 1] = 'du' .. i
  end
  local raw = rcall('HMGET', stock_key, unpack(fields))
  local total = 0
  for i = 0, DEMAND_HOURS - 1 do
    if tonumber(raw[2 * i + 1] or '-1') > hour - DEMAND_HOURS then
      total = total + tonumber(raw[2 * i + 2] or '0')
    end
  end
  return total
end

-- The stock-hash fields the alert check reads, in this order (see low_stock_check).
local ALERT_FIELDS = {'reorder_point', 'rearm_above', 'lead_time_days', 'alert_low'}

-- The demand-ring fields of `now`'s hour and the value to write there once `units` more
-- are reserved, from that slot's current (hour, units) `hour_raw`, `units_raw`.
local function demand_slot(now, units, hour_raw, units_raw)
  local hour = math.floor(now / HOUR_MS)
  local slot = hour % DEMAND_HOURS
  local total = units
  if tonumber(hour_raw or '-1') == hour then
    total = total + tonumber(units_raw or '0')
  end
  return {'dh' .. slot, hour, 'du' .. slot, total}
end

-- The demand-ring field names of `now`'s hour (to read beside the buckets).
local function demand_fields(now)
  local slot = math.floor(now / HOUR_MS) % DEMAND_HOURS
  return 'dh' .. slot, 'du' .. slot
end

-- The alert decision on a stock key whose ALERT_FIELDS the caller read (`raw`, in that
-- order) after its last write to them: `levels` are the buckets after the change. With
-- a reorder point set: an armed alert whose available fell to or below it fires ONE
-- 'stock_low' event (no deltas) and disarms; a disarmed one re-arms ('stock_rearmed')
-- only once available is above rearm_above (hysteresis).
local function low_stock_check(ctx, stock_key, sku, loc, levels, raw)
  if not raw[1] then
    return
  end
  local point, rearm = tonumber(raw[1]), tonumber(raw[2])
  local free = available(levels)
  if raw[4] ~= '1' and free <= point then
    local demand = demand_24h(stock_key, ctx.now)
    local cover = ''
    if demand > 0 then
      cover = string.format('%.2f', math.max(free, 0) / demand)
    end
    rcall('HSET', stock_key, 'alert_low', 1, 'alert_at', ctx.now)
    emit(ctx, 'stock_low', sku, loc, 0, {},
         {'available', free, 'on_hand', levels.on_hand, 'reorder_point', point,
          'rearm_above', rearm, 'demand_24h', demand, 'days_of_cover', cover,
          'lead_time_days', raw[3] or ''})
  elseif raw[4] == '1' and free > rearm then
    rcall('HDEL', stock_key, 'alert_low', 'alert_at')
    emit(ctx, 'stock_rearmed', sku, loc, 0, {},
         {'available', free, 'on_hand', levels.on_hand, 'rearm_above', rearm})
  end
end

-- The check every availability change runs once its stock hash is written: `levels` are
-- the buckets after the change, `reserved_units` the units this change reserved (demand;
-- 0 for any other write). See low_stock_check; reserve reads the fields with the buckets
-- and calls low_stock_check itself.
local function check_low_stock(ctx, stock_key, sku, loc, levels, reserved_units)
  if reserved_units > 0 then
    record_demand(stock_key, ctx.now, reserved_units)
  end
  low_stock_check(ctx, stock_key, sku, loc, levels,
                  rcall('HMGET', stock_key, unpack(ALERT_FIELDS)))
end
