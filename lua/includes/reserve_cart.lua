-- One cart's part of a reserve call (include after "common", "write", "holds",
-- "reservation" and "drops"): the body of lua/reserve.lua as a function of its KEYS and
-- ARGV, so lua/reserve_batch.lua runs many carts in one call. reserve.lua's header
-- lists the layout, the replies, the events and the invariants.
--
-- Per line the stock hash is read once (buckets, alert settings and this hour's demand
-- slot in one HMGET), written once (buckets, version and demand in one HSET), and the
-- reply is built from what the function holds.

local function reserve_cart(keys, argv)
  local meta_key, events_key, idem_key = keys[1], keys[2], keys[3]
  local part_key, expiries_key = keys[4], keys[5]
  local fingerprint, actor, idem, idem_retention_ms = argv[1], argv[2], argv[3], argv[4]
  local rid, ttl_ms, channel = argv[5], tonumber(argv[6]), argv[7]
  local reclaim_limit, retention_ms = argv[8], argv[9]
  local n = bounded(argv[10], 'line count', 1, LINES_MAX)
  local chan_at = PART_KEYS + KEYS_PER_LINE * n + 1 -- [channels] its key, if any, first
  -- [drops] the keys and argv after the lines, checked there (lua/includes/drops.lua)
  local drop_call = drop_call_at(keys, chan_at + channel_key_count(channel), argv, 11 + 3 * n)

  local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                                idem_retention_ms, true)
  if not ctx then
    return reply
  end
  if rcall('EXISTS', part_key) == 1 then
    return reply_error('idempotency_conflict')
  end
  ctx.channel = channel
  -- [drops] the rules of a drop whose SKU the cart takes, before any hold
  local drop, drop_refusal = drop_gate(ctx, drop_call, drop_lines(argv, 11, n))
  if drop_refusal then
    return finish(ctx, drop_refusal)
  end
  ttl_ms = drop_hold_ttl(drop, ttl_ms)
  local chan = channel_open(keys[chan_at], channel, argv, 11, n) -- [channels]

  local lines, held, shortfalls, more_to_reclaim = {}, {}, {}, false
  local dh, du = demand_fields(ctx.now)
  local line_fields = {ALERT_FIELDS[1], ALERT_FIELDS[2], ALERT_FIELDS[3], ALERT_FIELDS[4],
                       dh, du}
  line_fields = channel_fields(chan, line_fields) -- [channels] + 'alloc:<channel>'
  for i = 1, n do
    local a = 11 + (i - 1) * 3
    local line = line_at(keys, PART_KEYS + 1, i, argv[a], argv[a + 1])
    local qty = tonumber(argv[a + 2])
    lines[i] = {sku = line.sku, location = line.location, qty = qty}
    local levels, more, fields = reclaim_holds(ctx, line.stock, line.hexp, line.hqty,
                                               line.sku, line.location, reclaim_limit,
                                               line_fields, HOLD_BUCKETS)
    local shared = available(levels) - waitlist_line_units(drop, line.sku) -- [waitlist]
    local free, fenced = channel_free(chan, line.sku, shared, fields[7]) -- [channels]
    if free < qty then
      shortfalls[#shortfalls + 1] = {sku = line.sku, location = line.location,
                                     requested = qty, available = math.max(free, 0)}
      more_to_reclaim = more_to_reclaim or more
    end
    held[i] = {line = line, levels = levels, qty = qty, fields = fields, fenced = fenced}
  end
  if more_to_reclaim then
    -- A short line still counts expired holds: a refusal now could be false.
    return finish(ctx, reclaim_more())
  end
  if #shortfalls > 0 then
    return finish(ctx, {error = 'insufficient_stock', lines = shortfalls})
  end

  local expires_at = ctx.now + ttl_ms
  local expires_text = tostring(expires_at) -- formatted once (now_text)
  for _, h in ipairs(held) do
    local line = h.line
    local extra = demand_slot(ctx.now, h.qty, h.fields[5], h.fields[6])
    local deltas, drawn = channel_take(chan, h.qty, h.fenced, extra) -- [channels]
    apply(line.stock, h.levels, deltas, nil, extra)
    rcall('ZADD', line.hexp, expires_text, rid)
    rcall('HSET', line.hqty, rid, h.qty)
    local event_fields = channel_flags({'reservation', rid, 'expires_at', expires_text}, drawn)
    if drop then -- [drops] whose hold it is
      customer_flags(event_fields, drop.customer, drop.id)
    end
    emit(ctx, 'reserved', line.sku, line.location, h.qty, deltas, event_fields)
    low_stock_check(ctx, line.stock, line.sku, line.location, h.levels, h.fields)
  end
  local part_fields = {'status', 'held', 'expires_at', expires_text, 'created_at', now_text(),
                       'channel', channel, 'actor', actor, 'retention_ms', retention_ms,
                       'lines', cjson.encode(lines)}
  rcall('HSET', part_key, unpack(drop_part_fields(drop, part_fields))) -- [drops] + customer
  rcall('ZADD', expiries_key, expires_text, rid)
  drop_record(drop, rid) -- [drops]
  return finish(ctx, {ok = true, reservation = {id = rid, status = 'held',
                      expires_at = expires_at, created_at = ctx.now, channel = channel,
                      lines = lines}})
end
