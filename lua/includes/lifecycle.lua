-- Helpers of the stock lifecycle scripts (transfers, returns, damage, write-offs, counts,
-- purchase orders). Include after "common", "write" and, where a script uses the stock
-- layout, "holds" and "stock".

-- A hash as a table; nil when the key does not exist.
local function read_record(key)
  local raw = rcall('HGETALL', key)
  if #raw == 0 then
    return nil
  end
  local record = {}
  for i = 1, #raw, 2 do
    record[raw[i]] = raw[i + 1]
  end
  return record
end

-- Moves units of one place (see stock_place): applies the deltas to its current buckets
-- (read here), indexes the record, records the event.
local function move(ctx, place, etype, qty, deltas, extra)
  local levels = apply(place.stock, read_levels(place.stock), deltas, place.log)
  index_stock(place.index, place.locations, place.sku, place.location)
  emit(ctx, etype, place.sku, place.location, qty, deltas, extra)
  check_low_stock(ctx, place.stock, place.sku, place.location, levels, 0)
end

-- Units promised beyond what is on hand that a change of on_hand by `delta` adds
-- (0 when it adds none; a change that restores stock never adds any).
local function exposure_added(levels, delta)
  local before = available(levels)
  return math.max(0, -(before + delta)) - math.max(0, -before)
end

-- The record of an exposure: no bucket moves (deltas {}), so the alerting that reads it
-- never double counts; qty = units promised beyond on hand that the change added.
local function emit_exposure(ctx, sku, loc, units, cause, reason)
  emit(ctx, 'oversell_exposure', sku, loc, units, {}, {'cause', cause, 'reason', reason})
end

-- Moves qty units of a place out of on_hand into bucket `to`, as event `etype`. Refused
-- when on_hand is short (even forced), or when available would go below zero unless
-- forced; a forced one also records the exposure. `levels` are the place's current
-- buckets; `more`: expired holds there are still counted (reclaim_at), so an exposure
-- would be false: the reply is then reclaim_more. Returns the reply table (an error, or
-- {ok, levels, exposure}).
local function take_on_hand(ctx, place, levels, more, etype, qty, to, forced, reason, extra)
  if levels.on_hand < qty then
    return {error = 'insufficient_on_hand', on_hand = levels.on_hand, requested = qty}
  end
  local exposure = exposure_added(levels, -qty)
  if exposure > 0 and more then
    return reclaim_more()
  end
  if exposure > 0 and not forced then
    return {error = 'would_oversell', available = math.max(available(levels), 0),
            requested = qty}
  end
  local deltas = {on_hand = -qty}
  deltas[to] = qty
  local result = change_stock(ctx, place, levels, etype, qty, deltas, extra)
  if exposure > 0 then
    emit_exposure(ctx, place.sku, place.location, exposure, etype, reason)
  end
  result.exposure = exposure
  return result
end

-- on_hand of a stock key as it stood at `version`, from its on_hand log; nil when the
-- log cannot answer (older than its oldest entry, newer than the stock, or a log that
-- disagrees with the stock, e.g. after a restore).
local function on_hand_at(log_key, levels, version)
  if version == levels.version then
    return levels.on_hand
  end
  if version > levels.version then
    return nil
  end
  local newest = rcall('ZREVRANGE', log_key, 0, 0)
  if #newest == 0 then
    return nil
  end
  local v, n = log_entry(newest[1])
  if v > levels.version or n ~= levels.on_hand then
    return nil
  end
  local found = rcall('ZREVRANGEBYSCORE', log_key, version, '-inf', 'LIMIT', 0, 1)
  if #found == 0 then
    return nil
  end
  local _, on_hand = log_entry(found[1])
  return on_hand
end

-- The oldest version a count may name (for the stale_count reply).
local function oldest_countable(log_key, levels)
  local newest = rcall('ZREVRANGE', log_key, 0, 0)
  if #newest == 0 then
    return levels.version
  end
  local v, n = log_entry(newest[1])
  if v > levels.version or n ~= levels.on_hand then
    return levels.version
  end
  local oldest = rcall('ZRANGE', log_key, 0, 0)
  return (log_entry(oldest[1]))
end
