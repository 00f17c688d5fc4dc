-- Offers (include after "common", "write", "holds", "drops" and "waitlist";
-- docs/drops.md, "Offers"): units of a drop's SKU that a script frees become
-- holds for the next customers in that SKU's queue, in the same script. An offer is an
-- ordinary reservation part (one line, the drop's offer TTL) with 'customer', 'drop'
-- and 'offer_sku' fields, counted in the customer's entries like any hold of the drop.
--
-- The offer part of a call follows the call's own KEYS and ARGV (offer_call_at):
--   ARGV [a] drop id the keys are for ('' none: the call brought no offer keys),
--        [a+1] sku, [a+2] location (a line of the part whose units are freed),
--        [a+3] candidate count k (0..OFFERS_PER_CALL_MAX): the first k customers of the
--        SKU's queue as the caller read them, then per candidate: customer, reservation
--        id for its offer, pending entry count m (0..DROP_CUSTOMER_LIMIT_MAX), m ids
--   KEYS [f] when a drop is named: drop rules, [f+1] the drop's waitlist, [f+2] the
--        SKU's queue, [f+3] the drop's customers at the limit (an offer that brings its
--        customer to the limit adds it, as the reserve's hold does), then per candidate:
--        customer entries, the offer's reservation part, the candidate's m pending
--        reservation parts
-- A call whose keys are not those of the part's drop (or that read an empty queue that
-- has customers now) is answered {error = 'offer_keys', drop} before anything is
-- written; Python reads them and calls again. Candidates another call served meanwhile
-- are left out (offer_check): the call serves those still at the head.

local OFFER_KEYS = 'offer_keys'
local WAITLIST_OFFERED_FIELD = '#offered'

-- The offer part of a call from keys[first_key] and argv[first_arg]. Fails the script
-- unless the call sent exactly those keys.
local function offer_call_at(keys, first_key, argv, first_arg)
  local oc = {drop = argv[first_arg] or '', cands = {}}
  if oc.drop == '' then
    check_keys(#keys, first_key - 1)
    return oc
  end
  oc.sku, oc.location = argv[first_arg + 1], argv[first_arg + 2]
  oc.rules, oc.waitlist, oc.queue = keys[first_key], keys[first_key + 1], keys[first_key + 2]
  oc.at_limit = keys[first_key + 3]
  local k = bounded(argv[first_arg + 3], 'offer candidate count', 0, OFFERS_PER_CALL_MAX)
  local a, f = first_arg + 4, first_key + 4
  for i = 1, k do
    local m = bounded(argv[a + 2], 'pending entry count', 0, DROP_CUSTOMER_LIMIT_MAX)
    local cand = {customer = argv[a], rid = argv[a + 1], entries = keys[f], part = keys[f + 1],
                  rids = {}, parts = {}}
    for j = 1, m do
      cand.rids[j] = argv[a + 2 + j]
      cand.parts[j] = keys[f + 1 + j]
    end
    oc.cands[i] = cand
    a, f = a + 3 + m, f + 2 + m
  end
  check_keys(#keys, f - 1)
  return oc
end

local function offer_keys_needed(drop_id)
  return {error = OFFER_KEYS, drop = drop_id}
end

-- Checks, before the script writes anything, that the offer part fits the part being
-- freed or committed (`part`, whose 'drop' field names its drop; `lines` its lines):
-- nil when it does (or the part is no drop's), else the 'offer_keys' refusal.
-- `offering`: units will be freed, so the candidates must be the queue's head; a call
-- that frees nothing (a commit of a live hold) needs the keys only for an offer.
local function offer_check(oc, part, lines, offering)
  if not part.drop or (not offering and not part.offer_sku) then
    oc.active = false -- nothing to offer, and no offer whose entry changes
    return nil
  end
  if oc.drop ~= part.drop then
    return offer_keys_needed(part.drop)
  end
  local rules = rcall('HMGET', oc.rules, 'waitlist', 'limit', 'offer_ttl_ms', 'skus',
                      'opens_at', 'closes_at')
  if not rules[4] then
    error('earmark: drop ' .. part.drop .. ' of a reservation part has no rules')
  end
  local line_of_part = false
  for _, line in ipairs(lines) do
    if line.sku == oc.sku and line.location == oc.location then
      oc.line = line
      line_of_part = true
    end
  end
  if not line_of_part then
    error('earmark: the offer line ' .. tostring(oc.sku) .. ' is not a line of the part')
  end
  -- Offers are made while the drop is open (an offer is a sale the customer may commit).
  local opens_at, closes_at = tonumber(rules[5]), tonumber(rules[6] or '')
  oc.open = rules[1] == '1' and now_ms() >= opens_at and (not closes_at or now_ms() < closes_at)
  oc.limit = tonumber(rules[2] or '')
  oc.ttl_ms = tonumber(rules[3])
  oc.active = true
  if not offering then
    return nil
  end
  -- The candidates this call can serve: the queue's head as it stands, in order, as far
  -- as the call brought each one's keys (and its pending entries are still those sent).
  -- Another call may have served some of the customers read (the head moved on): those
  -- who are still at the head are served here, and what this call cannot serve stays
  -- free for the next call or the sweeper's offer pass (nobody is passed over).
  local heads = rcall('ZRANGE', oc.queue, 0, OFFERS_PER_CALL_MAX - 1)
  local sent, usable = {}, {}
  for _, cand in ipairs(oc.cands) do
    sent[cand.customer] = cand
  end
  for _, customer in ipairs(heads) do
    local cand = sent[customer]
    if not cand then
      break
    end
    if oc.limit then
      cand.table = read_hash(cand.entries)
      local rids = {unpack(cand.rids)}
      table.sort(rids)
      if table.concat(pending_rids(cand.table), ' ') ~= table.concat(rids, ' ') then
        break
      end
    end
    usable[#usable + 1] = cand
  end
  if #usable == 0 and #heads > 0 and #oc.cands == 0 then
    return offer_keys_needed(part.drop) -- read with nobody in line: read again
  end
  oc.cands = usable
  return nil
end

local function offer_event(ctx, oc, etype, customer, extra)
  local fields = {'drop', oc.drop, 'customer', customer}
  for i = 1, #extra do
    fields[#fields + 1] = extra[i]
  end
  emit(ctx, etype, oc.sku, 'default', 0, {}, fields)
end

-- The part being freed or committed was an offer: its entry becomes `status`
-- ('converted', 'expired' or 'declined') and stops counting as offered.
local function offer_finished(ctx, oc, part, rid, status)
  if not oc.active or not part.offer_sku then
    return
  end
  local entry = waitlist_entry(oc.waitlist, part.offer_sku, part.customer)
  if not entry or entry.status ~= 'offered' or entry.reservation ~= rid then
    return
  end
  entry.status = status
  entry.changed_at = ctx.now
  waitlist_store(oc.waitlist, part.offer_sku, part.customer, entry)
  rcall('HINCRBY', oc.waitlist, WAITLIST_OFFERED_FIELD, -1)
  offer_event(ctx, oc, 'waitlist_' .. status, part.customer, {'reservation', rid})
end

-- A candidate whose limit leaves no room for the units it waits for leaves the line
-- ('skipped'): it could hold them only by giving up what it holds or bought.
local function offer_skip(ctx, oc, cand, entry, used)
  rcall('ZREM', oc.queue, cand.customer)
  waitlist_queued_add(oc.waitlist, oc.sku, -entry.qty)
  entry.status = 'skipped'
  entry.changed_at = ctx.now
  waitlist_store(oc.waitlist, oc.sku, cand.customer, entry)
  offer_event(ctx, oc, 'waitlist_skipped', cand.customer,
              {'limit', oc.limit, 'used', used, 'units', entry.qty})
end

-- The offer itself: a hold of entry.qty units at the offer line for the candidate, owned
-- by the actor that put the customer in line, recorded as the drop's reserve records a
-- hold (drop_record: the customer's entries and the at-limit set, given the `used`
-- units settled; the part's customer and drop).
local function offer_hold(ctx, oc, cand, entry, used, levels, retention_ms, expiries_key)
  if rcall('EXISTS', cand.part) == 1 then
    error('earmark: the offer reservation ' .. cand.rid .. ' exists already')
  end
  local line, qty = oc.line, entry.qty
  local expires_at = ctx.now + oc.ttl_ms
  local hold_ctx = {events = ctx.events, actor = ctx.actor, idem = ctx.idem, channel = '',
                    now = ctx.now}
  apply(line.stock, levels, {reserved = qty})
  rcall('ZADD', line.hexp, expires_at, cand.rid)
  rcall('HSET', line.hqty, cand.rid, qty)
  emit(hold_ctx, 'reserved', oc.sku, oc.location, qty, {reserved = qty},
       {'reservation', cand.rid, 'expires_at', expires_at, 'drop', oc.drop,
        'customer', cand.customer, 'reason', 'offer'})
  check_low_stock(hold_ctx, line.stock, oc.sku, oc.location, levels, 0)
  rcall('HSET', cand.part, 'status', 'held', 'expires_at', expires_at, 'created_at', ctx.now,
        'channel', '', 'actor', entry.actor or ctx.actor, 'retention_ms', retention_ms,
        'lines', cjson.encode({{sku = oc.sku, location = oc.location, qty = qty}}),
        'customer', cand.customer, 'drop', oc.drop, 'offer_sku', oc.sku)
  rcall('ZADD', expiries_key, expires_at, cand.rid)
  if oc.limit then
    drop_record({limit = oc.limit, entries = cand.entries, at_limit = oc.at_limit,
                 customer = cand.customer, used = used, qty = qty}, cand.rid)
  end
  rcall('ZREM', oc.queue, cand.customer)
  waitlist_queued_add(oc.waitlist, oc.sku, -entry.qty)
  entry.status = 'offered'
  entry.reservation = cand.rid
  entry.expires_at = expires_at
  entry.changed_at = ctx.now
  waitlist_store(oc.waitlist, oc.sku, cand.customer, entry)
  rcall('HINCRBY', oc.waitlist, WAITLIST_OFFERED_FIELD, 1)
  offer_event(ctx, oc, 'waitlist_offered', cand.customer,
              {'reservation', cand.rid, 'expires_at', expires_at, 'units', qty})
end

-- Offers the free units of the offer line to the candidates, in queue order, at most
-- OFFERS_PER_CALL_MAX of them (skips included). The head of the line is served first:
-- a head whose limit leaves no room is skipped; one that waits for more units than are
-- free stops the call, and nobody behind it is offered (FIFO).
-- Returns the offers made.
local function make_offers(ctx, oc, retention_ms, expiries_key)
  if not oc.active or not oc.open then
    return 0
  end
  local levels = read_levels(oc.line.stock)
  local free, made = available(levels), 0
  for _, cand in ipairs(oc.cands) do
    if free <= 0 then
      break
    end
    local entry = waitlist_entry(oc.waitlist, oc.sku, cand.customer)
    if not entry or entry.status ~= 'waiting' then
      error('earmark: ' .. cand.customer .. ' is in the queue without a waiting entry')
    end
    local used = 0
    if oc.limit then
      used = settle_customer(cand.entries, cand.table, cand.rids, cand.parts, ctx.now)
    end
    if oc.limit and used + entry.qty > oc.limit then
      offer_skip(ctx, oc, cand, entry, used)
    elseif entry.qty > free then
      break
    else
      offer_hold(ctx, oc, cand, entry, used, levels, retention_ms, expiries_key)
      free = free - entry.qty
      made = made + 1
    end
  end
  return made
end

-- The offer check of a stock script on one (sku, location) (`place`, of
-- includes/stock.lua): the SKU's drop is read from the partition's drop index; a SKU in
-- no drop needs no offer keys (and the call brings none).
local function stock_offer_check(oc, index_key, place)
  local drop_id = rcall('HGET', index_key, place.sku)
  if not drop_id then
    oc.active = false
    return nil
  end
  local line = {sku = place.sku, location = place.location, stock = place.stock,
                hexp = place.hexp, hqty = place.hqty}
  return offer_check(oc, {drop = drop_id}, {line}, true)
end

-- After a stock script's change: offers of what is free at the place, and the reply's
-- levels as they stand after them.
local function stock_offers(ctx, oc, place, reply, retention_ms, expiries_key)
  if make_offers(ctx, oc, retention_ms, expiries_key) > 0 then
    reply.levels = levels_view(read_levels(place.stock), place.sku, place.location)
  end
  return reply
end
