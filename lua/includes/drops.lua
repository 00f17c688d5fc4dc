-- Drops (include after "common"): a named set of SKUs of one partition with rules, kept
-- in the SKU's partition slot (docs/drops.md). Every helper takes its keys as parameters.
--
--   drop index (hash)     sku -> drop id, one per partition: reserve reads it every call
--   drop rules (hash)     opens_at, closes_at ('' none), limit ('' none), hold_ttl_ms,
--                         waitlist ('1'|'0'), offer_ttl_ms, skus (json), created_at, ...
--   customer entries      reservation id -> units ('c:<units>' once seen committed): the
--     (hash, per customer) holds a customer took of the drop, settled lazily against the
--                         reservation parts, so a released or expired hold gives its
--                         units back to the allowance without any other script's help
--   rate (string)         '<second>:<attempts>' of one customer on one drop
--   at limit (set)        customers whose last hold (a reserve's or an offer's)
--                         brought their units to the drop's limit (and none since left
--                         them below it): the candidates the
--                         `customers_at_limit` figure re-checks when it is read

-- The drop part of a reserve call, from the KEYS after the lines (`first_key`) and the
-- ARGV after the lines (`first_arg`):
--   KEYS  [first_key] drop index; when the call names a drop: [+1] drop rules,
--         [+2] customer entries, [+3] rate, [+4] customers at the limit, [+5] the
--         drop's waitlist, then one
--         reservation part per pending entry.
--   ARGV  [first_arg] customer ('' none), [+1] drop id the keys are for ('' none),
--         [+2] attempts per second allowed (0: no rate limit), [+3] pending entry count
--         m, [+4 ..] their reservation ids.
-- Fails the script unless the call sent exactly those keys.
local function drop_call_at(keys, first_key, argv, first_arg)
  local call = {index = keys[first_key], customer = argv[first_arg],
                drop = argv[first_arg + 1], rate = tonumber(argv[first_arg + 2]),
                rids = {}, parts = {}}
  local m = bounded(argv[first_arg + 3], 'pending entry count', 0, DROP_CUSTOMER_LIMIT_MAX)
  if call.drop == '' then
    check_keys(#keys, first_key)
    return call
  end
  check_keys(#keys, first_key + 5 + m)
  call.rules, call.entries, call.rate_key = keys[first_key + 1], keys[first_key + 2],
                                            keys[first_key + 3]
  call.at_limit = keys[first_key + 4]
  call.waitlist = keys[first_key + 5]
  for i = 1, m do
    call.rids[i] = argv[first_arg + 3 + i]
    call.parts[i] = keys[first_key + 5 + i]
  end
  return call
end

-- The (sku, qty) of each of n lines laid out as sku, location, qty from argv[first].
local function drop_lines(argv, first, n)
  local lines = {}
  for i = 1, n do
    local a = first + (i - 1) * 3
    lines[i] = {sku = argv[a], qty = tonumber(argv[a + 2])}
  end
  return lines
end

local function read_hash(key)
  local raw = rcall('HGETALL', key)
  local record = {}
  for i = 1, #raw, 2 do
    record[raw[i]] = raw[i + 1]
  end
  return record
end

-- The rules the reserve gate reads (one HMGET of these fields, not the whole rules hash:
-- reserve reads them on every call of a drop's SKU). A missing field is nil.
local GATE_RULE_FIELDS = {'opens_at', 'closes_at', 'limit', 'hold_ttl_ms', 'waitlist'}
local function read_gate_rules(key)
  local raw = rcall('HMGET', key, unpack(GATE_RULE_FIELDS))
  local rules = {}
  for i, field in ipairs(GATE_RULE_FIELDS) do
    rules[field] = raw[i] or nil
  end
  return rules
end

-- The customer's entries not yet seen committed, as a sorted list of reservation ids.
local function pending_rids(entries)
  local ids = {}
  for rid, value in pairs(entries) do
    if string.sub(value, 1, 2) ~= 'c:' then
      ids[#ids + 1] = rid
    end
  end
  table.sort(ids)
  return ids
end

-- Units the customer's entries still count against the limit at `now`: live or pinned
-- holds and committed ones. Entries whose hold was released or expired are dropped, and
-- committed ones marked so (their parts may age out).
local function settle_customer(entries_key, entries, rids, parts, now)
  local used = 0
  for rid, value in pairs(entries) do
    if string.sub(value, 1, 2) == 'c:' then
      used = used + tonumber(string.sub(value, 3))
    end
  end
  for i, rid in ipairs(rids) do
    local qty = tonumber(entries[rid])
    local part = rcall('HMGET', parts[i], 'status', 'expires_at')
    local status, expires_at = part[1], tonumber(part[2] or '0')
    if status == 'pinned' or (status == 'held' and expires_at > now) then
      used = used + qty
    elseif status == 'committed' or status == 'shipped' then
      rcall('HSET', entries_key, rid, 'c:' .. qty)
      used = used + qty
    else
      rcall('HDEL', entries_key, rid)
    end
  end
  return used
end

-- One more attempt of a customer on a drop within the current second of `now`; the
-- refusal when it is past `per_second` (0: no limit).
local function drop_rate(rate_key, per_second, now, drop_id)
  if per_second <= 0 then
    return nil
  end
  local second = math.floor(now / 1000)
  local raw = rcall('GET', rate_key)
  local attempts = 0
  if raw then
    local s, a = string.match(raw, '^(%d+):(%d+)$')
    if tonumber(s) == second then
      attempts = tonumber(a)
    end
  end
  if attempts >= per_second then
    return {error = 'rate_limited', drop = drop_id, per_second = per_second,
            retry_after_ms = 1000 - now % 1000}
  end
  rcall('SET', rate_key, second .. ':' .. (attempts + 1), 'PX', 2000)
  return nil
end

-- The drop rules a reserve call must obey, decided on the server clock (ctx.now).
-- Returns the drop's state for drop_record (nil: no line is a drop's SKU) or nil and the
-- reply: a refusal, or {error = 'drop_keys', drop, rids}: the call did not bring the
-- drop's keys (or the customer's pending entries changed); Python calls again with them.
local function drop_gate(ctx, call, lines)
  local skus, requested = {}, 0
  for i, line in ipairs(lines) do
    skus[i] = line.sku
  end
  local ids = rcall('HMGET', call.index, unpack(skus))
  local drop_id = nil
  for i, id in ipairs(ids) do
    if id then
      if drop_id and id ~= drop_id then
        return nil, {error = 'cart_spans_drops', drops = {drop_id, id}}
      end
      drop_id = id
      requested = requested + lines[i].qty
    end
  end
  if not drop_id then
    return nil, nil
  end
  if call.drop ~= drop_id then
    return nil, {error = 'drop_keys', drop = drop_id, rids = {}}
  end
  if call.customer == '' then
    return nil, {error = 'customer_required', drop = drop_id}
  end
  local rules = read_gate_rules(call.rules)
  if not rules.opens_at then
    error('earmark: drop ' .. drop_id .. ' is indexed but has no rules')
  end
  local limit = tonumber(rules.limit or '')
  local entries = {}
  if limit then
    entries = read_hash(call.entries)
    local pending = pending_rids(entries)
    local sent = {}
    for i, rid in ipairs(call.rids) do
      sent[i] = rid
    end
    table.sort(sent)
    if table.concat(pending, ' ') ~= table.concat(sent, ' ') then
      return nil, {error = 'drop_keys', drop = drop_id, rids = pending}
    end
  end
  local rate_refusal = drop_rate(call.rate_key, call.rate, ctx.now, drop_id)
  if rate_refusal then
    return nil, rate_refusal
  end
  local opens_at, closes_at = tonumber(rules.opens_at), tonumber(rules.closes_at or '')
  if ctx.now < opens_at or (closes_at and ctx.now >= closes_at) then
    return nil, {error = 'drop_not_open', drop = drop_id, opens_at = opens_at,
                 closes_at = closes_at}
  end
  local used = 0
  if limit then
    used = settle_customer(call.entries, entries, call.rids, call.parts, ctx.now)
    if used + requested > limit then
      return nil, {error = 'customer_limit_exceeded', drop = drop_id, limit = limit,
                   used = used, requested = requested}
    end
  end
  local waitlist = nil
  if rules.waitlist == '1' then
    waitlist = call.waitlist
  end
  return {id = drop_id, entries = call.entries, at_limit = call.at_limit,
          customer = call.customer, limit = limit, used = used, qty = requested,
          hold_ttl_ms = tonumber(rules.hold_ttl_ms), waitlist = waitlist}, nil
end

-- The hold TTL of a part: the drop's when the cart takes any of its SKUs.
local function drop_hold_ttl(drop, ttl_ms)
  if drop then
    return drop.hold_ttl_ms
  end
  return ttl_ms
end

-- Records a hold the gate allowed: the customer's entry (when the drop has a limit) and
-- the customer among those at the limit when this hold reaches it (or no longer, when
-- their settled units were below it). The caller writes the customer and drop on the
-- reservation part (drop_part_fields) with the part's other fields.
local function drop_record(drop, rid)
  if not drop or not drop.limit then
    return
  end
  rcall('HSET', drop.entries, rid, drop.qty)
  if drop.used + drop.qty >= drop.limit then
    rcall('SADD', drop.at_limit, drop.customer)
  else
    rcall('SREM', drop.at_limit, drop.customer)
  end
end

-- `fields` (a part's HSET field-value list) with the customer and drop of the gate's
-- drop appended; unchanged when the cart takes no drop's SKU.
local function drop_part_fields(drop, fields)
  if drop then
    fields[#fields + 1] = 'customer'
    fields[#fields + 1] = drop.customer
    fields[#fields + 1] = 'drop'
    fields[#fields + 1] = drop.id
  end
  return fields
end
