-- The seat layout: a tenant's seat pool (include after "common" and "write"). The pool is
-- a stock hash at the location '~seats' (no SKU can have it): on_hand = the limit
-- floor(cap x factor), reserved = pending invites, committed = assigned seats. So the
-- ledger, verify, replay and rebuild see seats as they see stock.
-- Their KEYS and ARGV:
--   KEYS[1-3] the write prefix (meta, events, idempotency),
--   KEYS[4] pool (stock hash), KEYS[5] stock index of the partition, KEYS[6] config,
--   KEYS[7] assigned users (score 0: in user-id order, for paging), KEYS[8] invites (user -> expiry,
--   ms), KEYS[9] floating leases (user -> lease expiry, ms), KEYS[10] high-water marks
--   (period -> most assigned), KEYS[11] on_hand log of the pool;
--   ARGV[1-4] the write prefix, ARGV[5] tenant, ARGV[6] expired invites and leases given
--   back first (at most, each), then the script's own arguments from ARGV[7].
-- Invariants every script keeps: reserved = ZCARD invites, committed = ZCARD users, a
-- user is in at most one of users and invites, every lease's user is in users.

local SEAT_KEYS = 11
local SEAT_LOCATION = '~seats'
-- At most this many expired invites (and as many leases) given back per call.
local SEAT_RECLAIM_MAX = 64
local SEAT_EXPIRY_ACTOR = 'earmark:expiry'

local function seat_place(pool, index, config, users, invites, leases, hwm, log, tenant)
  return {pool = pool, index = index, config = config, users = users, invites = invites,
          leases = leases, hwm = hwm, log = log, tenant = tenant}
end

-- The tenant's settings, or nil when it has no pool.
local function seat_config(place)
  local raw = rcall('HMGET', place.config, 'cap', 'overage', 'limit', 'floating', 'lease_ms',
                    'over_cap')
  if not raw[1] then
    return nil
  end
  return {cap = tonumber(raw[1]), overage = raw[2], limit = tonumber(raw[3]),
          floating = raw[4] == '1', lease_ms = tonumber(raw[5] or '0'),
          over_cap = raw[6] == '1'}
end

-- The billing period (YYYY-MM, UTC) of a time in ms: the civil date of its day
-- (days-from-civil inverted, proleptic Gregorian), without os.date (not in Redis Lua).
local function period_of(ms)
  local z = math.floor(ms / 86400000) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp + 3
  if mp >= 10 then
    m = mp - 9
  end
  if m <= 2 then
    y = y + 1
  end
  return string.format('%04d-%02d', y, m)
end

-- Raises the period's high-water mark to `assigned` if it is higher.
local function seat_mark(place, now, assigned)
  local period = period_of(now)
  local high = tonumber(rcall('HGET', place.hwm, period) or '0')
  if assigned > high then
    rcall('HSET', place.hwm, period, assigned)
  end
end

local function seat_event(ctx, place, levels, etype, deltas, extra)
  if next(deltas) ~= nil then
    apply(place.pool, levels, deltas, place.log)
  end
  emit(ctx, etype, place.tenant, SEAT_LOCATION, 1, deltas, extra)
end

-- Takes one user's invite off (expired or revoked).
local function drop_invite(ctx, place, levels, user, etype, reason)
  rcall('ZREM', place.invites, user)
  seat_event(ctx, place, levels, etype, {reserved = -1}, {'user', user, 'reason', reason})
end

-- Takes one user's assignment off (freed, or a floating lease that ran out).
local function drop_seat(ctx, place, levels, user, etype, reason)
  rcall('ZREM', place.users, user)
  rcall('ZREM', place.leases, user)
  seat_event(ctx, place, levels, etype, {committed = -1}, {'user', user, 'reason', reason})
end

-- Gives back at most `limit` invites and `limit` leases whose expiry has passed, before
-- the caller decides; their events name the expiry, not the caller. Returns the pool's
-- buckets and `more`: expired ones remain (a refusal must then wait: reclaim_more).
local function seat_reclaim(ctx, place, limit)
  limit = bounded(limit, 'seat reclaim limit', 0, SEAT_RECLAIM_MAX)
  local levels = read_levels(place.pool)
  local expiry = {events = ctx.events, actor = SEAT_EXPIRY_ACTOR, idem = '', channel = '',
                  now = ctx.now}
  local invites = rcall('ZRANGEBYSCORE', place.invites, '-inf', ctx.now, 'LIMIT', 0, limit + 1)
  for i = 1, math.min(#invites, limit) do
    drop_invite(expiry, place, levels, invites[i], 'seat_invite_expired', 'ttl')
  end
  local leases = rcall('ZRANGEBYSCORE', place.leases, '-inf', ctx.now, 'LIMIT', 0, limit + 1)
  for i = 1, math.min(#leases, limit) do
    drop_seat(expiry, place, levels, leases[i], 'seat_lease_expired', 'lease')
  end
  -- Seats held when this write starts count for its period (the first write of a month
  -- carries the seats held since the month before).
  seat_mark(place, ctx.now, levels.committed)
  return levels, #invites > limit or #leases > limit
end

-- The user's own expired invite or lease, given back now (it may lie past the reclaim
-- bound). Returns 'assigned', 'invited' or nil: what the user holds, live.
local function seat_holding(ctx, place, levels, user)
  local expiry = {events = ctx.events, actor = SEAT_EXPIRY_ACTOR, idem = '', channel = '',
                  now = ctx.now}
  if rcall('ZSCORE', place.users, user) then
    local lease = rcall('ZSCORE', place.leases, user)
    if lease and tonumber(lease) <= ctx.now then
      drop_seat(expiry, place, levels, user, 'seat_lease_expired', 'lease')
      return nil
    end
    return 'assigned'
  end
  local invite = rcall('ZSCORE', place.invites, user)
  if invite then
    if tonumber(invite) <= ctx.now then
      drop_invite(expiry, place, levels, user, 'seat_invite_expired', 'ttl')
      return nil
    end
    return 'invited'
  end
  return nil
end

-- Keeps the over_cap flag and the period's high-water mark true to the buckets: the flag
-- is set (event seats_over_cap) when more seats are held than the limit and cleared
-- (seats_under_cap) when use falls to it.
local function seat_settle(ctx, place, cfg, levels)
  local used = levels.reserved + levels.committed
  local extra = {'cap', cfg.cap, 'used', used, 'limit', cfg.limit}
  if cfg.over_cap and used <= cfg.limit then
    cfg.over_cap = false
    rcall('HSET', place.config, 'over_cap', '0')
    emit(ctx, 'seats_under_cap', place.tenant, SEAT_LOCATION, used, {}, extra)
  elseif not cfg.over_cap and used > cfg.limit then
    cfg.over_cap = true
    rcall('HSET', place.config, 'over_cap', '1')
    emit(ctx, 'seats_over_cap', place.tenant, SEAT_LOCATION, used, {}, extra)
  end
  seat_mark(place, ctx.now, levels.committed)
end

-- The refusal of a new seat (assign or invite), or nil when one is free. `more`: expired
-- invites or leases remain past the bound, so a refusal could be false: reclaim_more.
local function seat_refusal(cfg, levels, more)
  local used = levels.reserved + levels.committed
  if used < cfg.limit and not cfg.over_cap then
    return nil
  end
  if more then
    return {error = 'reclaim_more'}
  end
  local code = 'seat_limit_reached'
  if cfg.over_cap then
    code = 'over_cap'
  end
  return {error = code, cap = cfg.cap, used = used, limit = cfg.limit}
end

-- The reply view of one user's seat.
local function seat_view(place, user, created)
  local lease = rcall('ZSCORE', place.leases, user)
  return {tenant = place.tenant, user = user, created = created,
          lease_expires_at = lease and tonumber(lease) or cjson.null}
end

-- Assigns a seat to a user who holds none (or whose invite is accepted: `from_invite`).
local function seat_assign(ctx, place, cfg, levels, user, from_invite)
  rcall('ZADD', place.users, 0, user)
  local lease = ''
  if cfg.floating then
    lease = ctx.now + cfg.lease_ms
    rcall('ZADD', place.leases, lease, user)
  end
  if from_invite then
    rcall('ZREM', place.invites, user)
    seat_event(ctx, place, levels, 'seat_accepted', {reserved = -1, committed = 1},
               {'user', user, 'lease_expires_at', lease})
  else
    seat_event(ctx, place, levels, 'seat_assigned', {committed = 1},
               {'user', user, 'lease_expires_at', lease})
  end
  seat_settle(ctx, place, cfg, levels)
  return {ok = true, seat = seat_view(place, user, true)}
end
