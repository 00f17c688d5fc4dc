-- Frozen copy of reserve.lua as shipped before the hot-path work (includes inlined), kept
-- so loadtests/bench/scriptcost.py can measure the new script against it side by side.
--[[
  reserve: hold stock for one partition's lines of a cart, all or nothing.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins (unused here; the shared layout), then per line: stock, hold expiries,
    hold qty, on_hand log (unused: reserve never changes on_hand).
  ARGV:
    [1] request fingerprint (32 hex), [2] actor, [3] idempotency key as the client sent
    it, [4] idempotency retention (ms)
    [5] reservation id
    [6] ttl (ms)
    [7] channel
    [8] reclaim limit: expired holds reclaimed per line before the check
    [9] reservation retention (ms): how long a finished part stays readable
    [10] line count n (1..LINES_MAX)
    [11..] per line: sku, location, qty (units)
    then the drop part (lua/includes/drops.lua, drop_call_at): one more KEY (the
    partition's drop index) and, for a cart that takes a drop's SKU, the drop's keys;
    ARGV customer, drop id, attempts per second, pending entries
  Returns {json, replayed (0|1)}; json is one of
    {ok, reservation = {id, status = 'held', expires_at, created_at, channel, lines}}
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}: only
      when no short line still counts an expired hold
    {error = 'reclaim_more'}: a short line has more expired holds than ARGV[8]; the ones
      given back stay given back, nothing is held and nothing stored: call again
    {error = 'idempotency_conflict'} (also for a part id that exists already)
    {error = 'store_not_ready' | 'durability_backlog'}
    {error = 'drop_keys', drop, rids}: call again with that drop's keys (never stored)
    {error = 'customer_required' | 'drop_not_open' | 'customer_limit_exceeded' |
     'rate_limited' | 'cart_spans_drops', ...}: the drop's rules (docs/drops.md)
  Events: 'expired' per reclaimed hold; 'reserved' per line (with expires_at, channel).
  Invariants: nothing is held unless every line has enough available; reserved
    never exceeds on_hand - committed; an expired hold never blocks a new one
    (expired holds on the cart's lines are reclaimed first, at most ARGV[8] per line per
    call, and a refusal is only given once none is left on a short line).
    Each stock hash is read once; the reply is built from what the script holds.
]]
-- Shared helpers, inlined into each script by earmark.engine.scripts at load time
-- (a line `--- @include "common"`). Redis Lua has no modules, so BullMQ-style includes
-- keep one copy of these in the source. Every helper takes what it uses as parameters:
-- none reads KEYS or ARGV.

local rcall = redis.call

-- Bounds checked in Lua as well as in Python: each has the name and value of its
-- constant in earmark/limits.py (a test checks they agree).
-- Lines of one cart, delivery or purchase order part.
local LINES_MAX = 50
-- Expired holds one call may give back per line.
local RECLAIM_PER_LINE_LIMIT = 1000
-- (sku, location) pairs one read_stock call answers.
local SKUS_PER_READ_MAX = 1000
-- Expired holds a read looks at per line.
local EXPIRED_READ_PER_LINE_MAX = 10000
-- on_hand changes remembered per (sku, location), for cycle counts.
local ONHAND_LOG_MAX = 256
-- [drops] SKUs of one drop; a drop's per-customer limit (units), which also bounds the
-- customer entries one reserve settles (each entry counts at least one unit).
local DROP_SKUS_MAX = 50
local DROP_CUSTOMER_LIMIT_MAX = 100

-- The actor of what a rebuild restores (events, reservation parts): restored parts have
-- no owner a caller could match.
local REBUILD_ACTOR = 'earmark:rebuild'

-- Server clock in whole milliseconds. Scripts never take a client clock.
local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Fails the script (a bug in the caller, not a refusal) unless the call sent `expected`
-- keys.
local function check_keys(got, expected)
  if got ~= expected then
    error('earmark: expected ' .. expected .. ' KEYS, got ' .. got)
  end
end

-- A count the script loops over, as a number within [low, high]; fails the script
-- otherwise (Python checks the same bound first, so this only catches a broken caller).
local function bounded(value, name, low, high)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < low or n > high then
    error('earmark: ' .. name .. ' must be a whole number in [' .. low .. ', ' .. high ..
          '], got ' .. tostring(value))
  end
  return n
end

local BUCKETS = {'on_hand', 'reserved', 'committed', 'in_transit', 'returned',
                 'damaged', 'written_off', 'inbound', 'version'}

-- All buckets of one stock key as a table of integers (missing fields are 0).
local function read_levels(stock_key)
  local raw = rcall('HMGET', stock_key, unpack(BUCKETS))
  local levels = {}
  for i, name in ipairs(BUCKETS) do
    levels[name] = tonumber(raw[i] or '0')
  end
  return levels
end

local function available(levels)
  return levels.on_hand - levels.reserved - levels.committed
end

-- One entry of an on_hand log: 'version:on_hand' -> version, on_hand.
local function log_entry(member)
  local version, on_hand = string.match(member, '^(%d+):(%-?%d+)$')
  return tonumber(version), tonumber(on_hand)
end

-- Keeps the on_hand log of a stock key: every change of on_hand appends
-- (version after, on_hand after); the newest ONHAND_LOG_MAX changes are kept. A log that
-- is empty, or that disagrees with the state before this change (a restore rewrote the
-- stock hash), starts again from that state, so it never answers for a history it did
-- not see.
local function log_on_hand(log_key, before_version, before_on_hand, version, on_hand)
  local newest = rcall('ZREVRANGE', log_key, 0, 0)
  local fresh = #newest == 0
  if not fresh then
    local v, n = log_entry(newest[1])
    fresh = v > before_version or n ~= before_on_hand
    if fresh then
      rcall('DEL', log_key)
    end
  end
  if fresh then
    rcall('ZADD', log_key, before_version, before_version .. ':' .. before_on_hand)
  end
  if on_hand ~= before_on_hand then
    rcall('ZADD', log_key, version, version .. ':' .. on_hand)
    rcall('ZREMRANGEBYRANK', log_key, 0, -(ONHAND_LOG_MAX + 1))
  end
end

-- Applies bucket deltas to one stock key whose current buckets the caller holds in
-- `levels` (read in this script). Every resulting bucket is checked before anything is
-- written: Redis does not roll back a script that fails half way, so an impossible
-- state must be caught before the first write. One HSET writes the changed buckets and
-- the new version. `log_key` is the stock key's on_hand log; a change of on_hand without
-- it is refused, so every on_hand change is logged (cycle counts depend on it).
-- Returns `levels`, updated.
local function apply(stock_key, levels, deltas, log_key)
  local changes = {}
  for name, delta in pairs(deltas) do
    if levels[name] == nil or name == 'version' then
      error('earmark: unknown bucket ' .. name)
    end
    if levels[name] + delta < 0 then
      error('earmark: bucket ' .. name .. ' would go negative on ' .. stock_key)
    end
  end
  local on_hand_delta = deltas.on_hand or 0
  if on_hand_delta ~= 0 and not log_key then
    error('earmark: on_hand changes without its log on ' .. stock_key)
  end
  local before_version, before_on_hand = levels.version, levels.on_hand
  for name, delta in pairs(deltas) do
    if delta ~= 0 then
      levels[name] = levels[name] + delta
      changes[#changes + 1] = name
      changes[#changes + 1] = levels[name]
    end
  end
  levels.version = levels.version + 1
  changes[#changes + 1] = 'version'
  changes[#changes + 1] = levels.version
  rcall('HSET', stock_key, unpack(changes))
  if log_key then
    log_on_hand(log_key, before_version, before_on_hand, levels.version, levels.on_hand)
  end
  return levels
end

-- Indexes a stock record: the partition's 'sku:location' set and the SKU's locations.
local function index_stock(index_key, locations_key, sku, loc)
  rcall('SADD', index_key, sku .. ':' .. loc)
  rcall('SADD', locations_key, loc)
end

-- The buckets of one (sku, location) as returned to Python.
local function levels_view(levels, sku, loc)
  local view = {sku = sku, location = loc}
  for name, value in pairs(levels) do
    view[name] = value
  end
  return view
end

-- ctx: {events = stream key, actor, idem = idempotency key, channel, now = ms}
-- extra: flat list of further field/value pairs.
local function emit(ctx, etype, sku, loc, qty, deltas, extra)
  local fields = {'type', etype, 'sku', sku, 'location', loc, 'qty', qty,
                  'deltas', cjson.encode(deltas), 'actor', ctx.actor,
                  'idempotency_key', ctx.idem, 'channel', ctx.channel or '', 'at', ctx.now}
  if extra then
    for i = 1, #extra do
      fields[#fields + 1] = extra[i]
    end
  end
  rcall('XADD', ctx.events, '*', unpack(fields))
end

local function reply_error(code)
  return {cjson.encode({error = code}), 0}
end

-- The opening and closing every write script shares (include after "common").
--
-- Every write script takes the same prefix:
--   KEYS[1] meta (the partition's generation marker), KEYS[2] events (the partition's
--   stream), KEYS[3] idempotency record of this request;
--   ARGV[1] request fingerprint (32 hex), ARGV[2] actor, ARGV[3] idempotency key as the
--   client sent it ('' for none), ARGV[4] idempotency retention (ms);
-- and names them itself, then calls open_write with them.

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

-- The check every availability change runs once its stock hash is written: `levels` are
-- the buckets after the change, `reserved_units` the units this change reserved (demand;
-- 0 for any other write). With a reorder point set: an armed alert whose available fell
-- to or below it fires ONE 'stock_low' event (no deltas) and disarms; a disarmed one
-- re-arms ('stock_rearmed') only once available is above rearm_above (hysteresis).
local function check_low_stock(ctx, stock_key, sku, loc, levels, reserved_units)
  if reserved_units > 0 then
    record_demand(stock_key, ctx.now, reserved_units)
  end
  local raw = rcall('HMGET', stock_key, 'reorder_point', 'rearm_above', 'lead_time_days',
                    'alert_low')
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

local FINGERPRINT_LENGTH = 32

-- The server's replication id (INFO replication): it changes when a replica is promoted
-- or a Redis restarts without its replication state.
-- '' where the server cannot tell (an in-process fakeredis has no INFO).
local function server_replid()
  local info = redis.pcall('INFO', 'replication')
  if type(info) ~= 'string' then
    return ''
  end
  return string.match(info, 'master_replid:(%w+)') or ''
end

-- Why the partition cannot be trusted, or nil when it can: it must carry its generation
-- marker, not be fenced (a fence names the reason, e.g. lost writes after a failover),
-- and, where the durable record vouched for a primary (meta 'replid'), still be that
-- primary: a promoted replica answers 'unverified' until the record vouches for it
-- (earmark.durable.service), so no write lands on it unchecked. Reads check this too.
local function store_refusal(meta_key)
  local meta = rcall('HMGET', meta_key, 'generation', 'fenced', 'replid')
  if not meta[1] then
    return 'no generation marker: its data was lost or never set up'
  end
  if meta[2] then
    return 'fenced: ' .. meta[2]
  end
  if meta[3] and meta[3] ~= '' and meta[3] ~= server_replid() then
    return 'unverified: this primary has not been checked against the durable record yet'
  end
  return nil
end

local function not_ready(reason)
  return {cjson.encode({error = 'store_not_ready', reason = reason}), 0}
end

-- nil while the partition's stream holds fewer events than the meta's backlog_max (0 or
-- unset: no bound), else the refusal: the durable record is down or far behind, and
-- new demand must not fill Redis's memory meanwhile.
local function backlog_refusal(meta_key, events_key)
  local limit = tonumber(rcall('HGET', meta_key, 'backlog_max') or '0')
  if limit <= 0 then
    return nil
  end
  local waiting = rcall('XLEN', events_key)
  if waiting < limit then
    return nil
  end
  return {cjson.encode({error = 'durability_backlog', waiting = waiting, limit = limit}), 0}
end

-- Idempotency: nil when the key is new (or no key was given), otherwise the script's
-- return value for the replay or the conflict. A record is the request's fingerprint
-- followed by the reply it got; only successes are recorded (see finish).
local function idem_check(idem_key, idem, fingerprint)
  if idem == '' then
    return nil
  end
  local stored = rcall('GET', idem_key)
  if not stored then
    return nil
  end
  if string.sub(stored, 1, FINGERPRINT_LENGTH) ~= fingerprint then
    return reply_error('idempotency_conflict')
  end
  return {string.sub(stored, FINGERPRINT_LENGTH + 1), 1}
end

-- The context of a write, or nil and the reply to return at once (not ready, replay,
-- conflict, backlog). `bounded`: the write adds demand and is refused past the durability
-- backlog; writes that finish existing holds (commit, release, ship...) pass false.
local function open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                          idem_retention_ms, bounded)
  if idem ~= '' and #fingerprint ~= FINGERPRINT_LENGTH then
    error('earmark: a fingerprint has ' .. FINGERPRINT_LENGTH .. ' characters')
  end
  local refusal = store_refusal(meta_key)
  if refusal then
    return nil, not_ready(refusal)
  end
  local replay = idem_check(idem_key, idem, fingerprint)
  if replay then
    return nil, replay
  end
  if bounded then
    local full = backlog_refusal(meta_key, events_key)
    if full then
      return nil, full
    end
  end
  return {events = events_key, actor = actor, idem = idem, channel = '', now = now_ms(),
          idem_key = idem_key, fingerprint = fingerprint,
          idem_retention_ms = tonumber(idem_retention_ms)}, nil
end

-- Encodes the result once, stores it for replays under the request's key when it is a
-- success, and returns it in the scripts' return shape {json, replayed = 0}. A refusal
-- ({error = ...}) is not stored: the request did not execute, so a retry with the same
-- key is evaluated again (and the key stays free for another request), as Stripe does.
local function finish(ctx, result)
  local encoded = cjson.encode(result)
  if ctx.idem ~= '' and result.ok then
    rcall('SET', ctx.idem_key, ctx.fingerprint .. encoded, 'PX', ctx.idem_retention_ms)
  end
  return {encoded, 0}
end

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
local function reclaim_holds(ctx, stock_key, hexp_key, hqty_key, sku, loc, limit)
  limit = bounded(limit, 'reclaim limit', 0, RECLAIM_PER_LINE_LIMIT)
  local levels = read_levels(stock_key)
  if limit == 0 then
    return levels, false
  end
  local ids = rcall('ZRANGEBYSCORE', hexp_key, '-inf', ctx.now, 'LIMIT', 0, limit + 1)
  local expiry_ctx = {events = ctx.events, actor = EXPIRY_ACTOR, idem = '', channel = '',
                      now = ctx.now}
  for i = 1, math.min(#ids, limit) do
    give_back(expiry_ctx, 'expired', ids[i], stock_key, hexp_key, hqty_key, sku, loc, 'ttl',
              levels)
  end
  return levels, #ids > limit
end

-- The reply of a write that cannot answer yet: expired holds it may not reclaim in this
-- call (the bound) could change the answer. Never stored (it is not a success); the
-- holds it did give back stay given back.
local RECLAIM_MORE = 'reclaim_more'
local function reclaim_more()
  return {error = RECLAIM_MORE}
end

-- The reservation layout: scripts that act on one partition's part of a reservation
-- (include after "common", "write" and "holds"). Their KEYS and ARGV:
--   KEYS[1-3] the write prefix (meta, events, idempotency),
--   KEYS[4] reservation part, KEYS[5] expiries index, KEYS[6] pins index,
--   then 4 keys per line: stock, hold expiries, hold quantities, on_hand log;
--   ARGV[1-4] the write prefix (fingerprint, actor, idempotency key, retention),
--   ARGV[5] reservation id, ARGV[6] owner check ('1': the part must have been created by
--   the actor, ARGV[2]; '0': anyone may act), ARGV[7] line count n, ARGV[8..7+2n] sku,
--   location per line (the part's own lines, in order), then the script's own options
--   from ARGV[8+2n].
-- reserve.lua keeps the same KEYS and takes qty with each line (see its header).

local PART_KEYS = 6
local KEYS_PER_LINE = 4

-- The keys of line i of a call on this layout (`first` is the KEYS index of line 1).
local function line_at(keys, first, i, sku, loc)
  local base = first + (i - 1) * KEYS_PER_LINE
  return {sku = sku, location = loc, stock = keys[base], hexp = keys[base + 1],
          hqty = keys[base + 2], log = keys[base + 3]}
end

-- The n lines a part script was called with (sku, location per line from argv[first]),
-- with their keys; fails the script unless the call sent exactly their keys.
local function called_lines(keys, argv, first, n)
  check_keys(#keys, PART_KEYS + KEYS_PER_LINE * n)
  local lines = {}
  for i = 1, n do
    local a = first + (i - 1) * 2
    lines[i] = line_at(keys, PART_KEYS + 1, i, argv[a], argv[a + 1])
  end
  return lines
end

-- The part's record as a table; nil when this partition holds no such part.
local function read_part(part_key)
  local raw = rcall('HGETALL', part_key)
  if #raw == 0 then
    return nil
  end
  local part = {}
  for i = 1, #raw, 2 do
    part[raw[i]] = raw[i + 1]
  end
  part.expires_at = tonumber(part.expires_at)
  part.created_at = tonumber(part.created_at)
  part.lines = cjson.decode(part.lines)
  return part
end

-- The public view of a part, as returned to Python.
local function part_view(part, rid)
  return {id = rid, status = part.status, expires_at = part.expires_at,
          created_at = part.created_at, channel = part.channel,
          committed_at = tonumber(part.committed_at or ''),
          released_at = tonumber(part.released_at or ''),
          shipped_at = tonumber(part.shipped_at or ''),
          expired_at = tonumber(part.expired_at or ''),
          lines = part.lines}
end

local function ok_part(part, rid)
  return {ok = true, reservation = part_view(part, rid)}
end

-- The refusal for a part whose status does not allow the operation; `status` is what the
-- caller sees (the part's own, or 'commit_in_progress' for a part another call pinned).
local NOT_HELD = {expired = 'reservation_expired', released = 'reservation_released',
                  commit_in_progress = 'commit_in_progress'}
local function not_held(part, rid, status)
  status = status or part.status
  return {error = NOT_HELD[status] or 'invalid_transition', status = status,
          reservation = part_view(part, rid)}
end

-- The lines the caller sent must be the part's own lines, in order: keys are built by
-- the caller from the record, and a mismatch means a stale caller.
local function lines_match(part, lines)
  if #part.lines ~= #lines then
    return false
  end
  for i, line in ipairs(part.lines) do
    if line.sku ~= lines[i].sku or line.location ~= lines[i].location then
      return false
    end
  end
  return true
end

-- True when `actor` may act on `part` under the owner check: it created the part, or the
-- part has no owner (restored by a rebuild, which cannot know who reserved it).
local function owned_by(part, actor)
  return part.actor == actor or part.actor == REBUILD_ACTOR
end

-- The opening every script on an existing part shares: the write opening, then the part
-- (which must exist, have the lines the call named and, when `owner_only`, have been
-- created by the actor: else 'not_owner', whatever its state). Returns ctx and part, or
-- nil and the reply to return at once.
local function open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                         idem_retention_ms, part_key, lines, owner_only)
  local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                                idem_retention_ms, false)
  if not ctx then
    return nil, reply
  end
  local part = read_part(part_key)
  if not part then
    return nil, reply_error('reservation_not_found')
  end
  if not lines_match(part, lines) then
    return nil, reply_error('lines_mismatch')
  end
  if owner_only and not owned_by(part, actor) then
    return nil, reply_error('not_owner')
  end
  ctx.channel = part.channel
  return ctx, part
end

-- A held part whose expiry has passed: give back every line still counted, mark it
-- expired and let it age out after its retention period.
local function expire_part(ctx, part, rid, part_key, expiries_key, pins_key, lines)
  local expiry_ctx = {events = ctx.events, actor = EXPIRY_ACTOR, idem = '',
                      channel = part.channel, now = ctx.now}
  for _, line in ipairs(lines) do
    give_back(expiry_ctx, 'expired', rid, line.stock, line.hexp, line.hqty, line.sku,
              line.location, 'ttl')
  end
  part.status = 'expired'
  part.expired_at = ctx.now
  rcall('HSET', part_key, 'status', 'expired', 'expired_at', ctx.now)
  rcall('ZREM', expiries_key, rid)
  rcall('ZREM', pins_key, rid)
  rcall('PEXPIRE', part_key, tonumber(part.retention_ms))
end

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

-- The drop part of a reserve call, from the KEYS after the lines (`first_key`) and the
-- ARGV after the lines (`first_arg`):
--   KEYS  [first_key] drop index; when the call names a drop: [+1] drop rules,
--         [+2] customer entries, [+3] rate, then one reservation part per pending entry.
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
  check_keys(#keys, first_key + 3 + m)
  call.rules, call.entries, call.rate_key = keys[first_key + 1], keys[first_key + 2],
                                            keys[first_key + 3]
  for i = 1, m do
    call.rids[i] = argv[first_arg + 3 + i]
    call.parts[i] = keys[first_key + 3 + i]
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
  local rules = read_hash(call.rules)
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
  if limit then
    local used = settle_customer(call.entries, entries, call.rids, call.parts, ctx.now)
    if used + requested > limit then
      return nil, {error = 'customer_limit_exceeded', drop = drop_id, limit = limit,
                   used = used, requested = requested}
    end
  end
  return {id = drop_id, entries = call.entries, customer = call.customer, limit = limit,
          qty = requested, hold_ttl_ms = tonumber(rules.hold_ttl_ms)}, nil
end

-- The hold TTL of a part: the drop's when the cart takes any of its SKUs.
local function drop_hold_ttl(drop, ttl_ms)
  if drop then
    return drop.hold_ttl_ms
  end
  return ttl_ms
end

-- Records a hold the gate allowed: the customer's entry (when the drop has a limit) and
-- the customer and drop on the reservation part.
local function drop_record(drop, part_key, rid)
  if not drop then
    return
  end
  if drop.limit then
    rcall('HSET', drop.entries, rid, drop.qty)
  end
  rcall('HSET', part_key, 'customer', drop.customer, 'drop', drop.id)
end

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local part_key, expiries_key = KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rid, ttl_ms, channel = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local reclaim_limit, retention_ms = ARGV[8], ARGV[9]
local n = bounded(ARGV[10], 'line count', 1, LINES_MAX)
-- [drops] the KEYS and ARGV after the lines, checked there (lua/includes/drops.lua)
local drop_call = drop_call_at(KEYS, PART_KEYS + KEYS_PER_LINE * n + 1, ARGV, 11 + 3 * n)

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
local drop, drop_refusal = drop_gate(ctx, drop_call, drop_lines(ARGV, 11, n))
if drop_refusal then
  return finish(ctx, drop_refusal)
end
ttl_ms = drop_hold_ttl(drop, ttl_ms)

local lines, held, shortfalls, more_to_reclaim = {}, {}, {}, false
for i = 1, n do
  local a = 11 + (i - 1) * 3
  local line = line_at(KEYS, PART_KEYS + 1, i, ARGV[a], ARGV[a + 1])
  local qty = tonumber(ARGV[a + 2])
  lines[i] = {sku = line.sku, location = line.location, qty = qty}
  local levels, more = reclaim_holds(ctx, line.stock, line.hexp, line.hqty, line.sku,
                                     line.location, reclaim_limit)
  local free = available(levels)
  if free < qty then
    shortfalls[#shortfalls + 1] = {sku = line.sku, location = line.location,
                                   requested = qty, available = math.max(free, 0)}
    more_to_reclaim = more_to_reclaim or more
  end
  held[i] = {line = line, levels = levels, qty = qty}
end
if more_to_reclaim then
  -- A short line still counts expired holds: a refusal now could be false.
  return finish(ctx, reclaim_more())
end
if #shortfalls > 0 then
  return finish(ctx, {error = 'insufficient_stock', lines = shortfalls})
end

local expires_at = ctx.now + ttl_ms
for _, h in ipairs(held) do
  local line = h.line
  apply(line.stock, h.levels, {reserved = h.qty})
  rcall('ZADD', line.hexp, expires_at, rid)
  rcall('HSET', line.hqty, rid, h.qty)
  emit(ctx, 'reserved', line.sku, line.location, h.qty, {reserved = h.qty},
       {'reservation', rid, 'expires_at', expires_at})
  check_low_stock(ctx, line.stock, line.sku, line.location, h.levels, h.qty)
end
rcall('HSET', part_key, 'status', 'held', 'expires_at', expires_at, 'created_at', ctx.now,
      'channel', channel, 'actor', actor, 'retention_ms', retention_ms,
      'lines', cjson.encode(lines))
rcall('ZADD', expiries_key, expires_at, rid)
drop_record(drop, part_key, rid) -- [drops]
return finish(ctx, {ok = true, reservation = {id = rid, status = 'held',
                    expires_at = expires_at, created_at = ctx.now, channel = channel,
                    lines = lines}})
