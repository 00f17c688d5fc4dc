-- Holds on one (sku, location) (include after "common"). A hold is counted in the stock
-- hash's `reserved` while its reservation id is in the hold-quantity hash (units) and the
-- hold-expiry sorted set (expiry, ms).

local EXPIRY_ACTOR = 'earmark:expiry'

-- Takes one reservation's hold off one (sku, location) if it is still counted in
-- `reserved`; returns the units given back (0 when already taken off). `levels` are the
-- stock key's current buckets when the caller has them (nil: read here).
local function give_back(ctx, etype, rid, stock_key, hexp_key, hqty_key, sku, loc, reason,
                         levels)
  local raw = rcall('HGET', hqty_key, rid)
  if not raw then
    return 0
  end
  local qty = tonumber(raw)
  rcall('HDEL', hqty_key, rid)
  rcall('ZREM', hexp_key, rid)
  local after = apply(stock_key, levels or read_levels(stock_key), {reserved = -qty})
  emit(ctx, etype, sku, loc, qty, {reserved = -qty}, {'reservation', rid, 'reason', reason})
  check_low_stock(ctx, stock_key, sku, loc, after, 0)
  return qty
end

-- Gives back at most `limit` holds of one (sku, location) whose expiry has passed, so
-- they stop counting before the caller checks stock. Their events name the expiry, not
-- the request that happened to trigger it. Returns the stock's buckets afterwards (read
-- once) and `more`: true when expired holds are still counted after this call (the
-- bound was reached). A caller whose answer depends on `reserved` (a refusal, an
-- exposure) must not give it while `more`: it returns RECLAIM_MORE instead, and Python
-- calls again (each call gave back `limit` holds: progress), RECLAIM_ROUNDS_MAX times.
-- `extra` (optional): further fields of the stock hash to return as of after the
-- reclaim (read with the buckets; read again only when a hold was given back).
-- `buckets` (optional): the buckets to read (read_levels; all by default).
local function reclaim_holds(ctx, stock_key, hexp_key, hqty_key, sku, loc, limit, extra,
                             buckets)
  limit = bounded(limit, 'reclaim limit', 0, RECLAIM_PER_LINE_LIMIT)
  local levels, values = read_levels(stock_key, extra, buckets)
  if limit == 0 then
    return levels, false, values
  end
  local ids = rcall('ZRANGEBYSCORE', hexp_key, '-inf', ctx.now, 'LIMIT', 0, limit + 1)
  local expiry_ctx = {events = ctx.events, actor = EXPIRY_ACTOR, idem = '', channel = '',
                      now = ctx.now}
  local given = math.min(#ids, limit)
  for i = 1, given do
    give_back(expiry_ctx, 'expired', ids[i], stock_key, hexp_key, hqty_key, sku, loc, 'ttl',
              levels)
  end
  if extra and given > 0 then
    values = rcall('HMGET', stock_key, unpack(extra))
  end
  return levels, #ids > limit, values
end

-- The reply of a write that cannot answer yet: expired holds it may not reclaim in this
-- call (the bound) could change the answer. Never stored (it is not a success); the
-- holds it did give back stay given back.
local RECLAIM_MORE = 'reclaim_more'
local function reclaim_more()
  return {error = RECLAIM_MORE}
end
