-- Shared helpers, inlined into each script by earmark.scripts at load time
-- (a line `--- @include "common"`). Redis Lua has no modules, so BullMQ-style
-- includes keep one copy of these in the source.

local rcall = redis.call

-- Server clock in whole milliseconds. Scripts never take a client clock.
local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

-- on_hand changes remembered per (sku, location) for cycle counts (limits.ONHAND_LOG_MAX).
local ONHAND_LOG_MAX = 256

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
local function log_on_hand(log_key, before, version, on_hand)
  local newest = rcall('ZREVRANGE', log_key, 0, 0)
  local fresh = #newest == 0
  if not fresh then
    local v, n = log_entry(newest[1])
    fresh = v > before.version or n ~= before.on_hand
    if fresh then
      rcall('DEL', log_key)
    end
  end
  if fresh then
    rcall('ZADD', log_key, before.version, before.version .. ':' .. before.on_hand)
  end
  if on_hand ~= before.on_hand then
    rcall('ZADD', log_key, version, version .. ':' .. on_hand)
    rcall('ZREMRANGEBYRANK', log_key, 0, -(ONHAND_LOG_MAX + 1))
  end
end

-- Applies bucket deltas to one stock key. Every resulting bucket is checked
-- before anything is written: Redis does not roll back a script that fails
-- half way, so an impossible state must be caught before the first write.
-- log_key is the stock key's on_hand log; a change of on_hand without it is refused,
-- so every on_hand change is logged (cycle counts depend on it).
local function apply(stock_key, deltas, log_key)
  local levels = read_levels(stock_key)
  for name, delta in pairs(deltas) do
    if levels[name] == nil then
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
  for name, delta in pairs(deltas) do
    if delta ~= 0 then
      rcall('HINCRBY', stock_key, name, delta)
    end
  end
  local version = rcall('HINCRBY', stock_key, 'version', 1)
  if log_key then
    log_on_hand(log_key, levels, version, levels.on_hand + on_hand_delta)
  end
end

-- Indexes a stock record: the partition's 'sku:location' set and the SKU's locations.
local function index_stock(index_key, locations_key, sku, loc)
  rcall('SADD', index_key, sku .. ':' .. loc)
  rcall('SADD', locations_key, loc)
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

-- Idempotency: nil when the key is new (or no key was given), otherwise the
-- script's return value for the replay or the conflict.
local function idem_check(idem_key, idem, fingerprint)
  if idem == '' then
    return nil
  end
  local stored = rcall('GET', idem_key)
  if not stored then
    return nil
  end
  local record = cjson.decode(stored)
  if record.fp ~= fingerprint then
    return {cjson.encode({error = 'idempotency_conflict'}), 0}
  end
  return {record.result, 1}
end

-- Stores the result for replays and returns it in the scripts' return shape.
local function finish(idem_key, idem, fingerprint, retention_ms, result)
  local encoded = cjson.encode(result)
  if idem ~= '' then
    rcall('SET', idem_key, cjson.encode({fp = fingerprint, result = encoded}),
          'PX', retention_ms)
  end
  return {encoded, 0}
end

local EXPIRY_ACTOR = 'earmark:expiry'

-- Takes one reservation's hold off one (sku, location) if it is still counted in
-- `reserved`; returns the units given back (0 when already taken off).
local function give_back(ctx, etype, rid, stock_key, hexp_key, hqty_key, sku, loc, reason)
  local raw = rcall('HGET', hqty_key, rid)
  if not raw then
    return 0
  end
  local qty = tonumber(raw)
  rcall('HDEL', hqty_key, rid)
  rcall('ZREM', hexp_key, rid)
  apply(stock_key, {reserved = -qty})
  emit(ctx, etype, sku, loc, qty, {reserved = -qty}, {'reservation', rid, 'reason', reason})
  return qty
end

-- Gives back at most `limit` holds of one (sku, location) whose expiry has passed, so
-- they stop counting before the caller checks stock. Their events name the expiry,
-- not the request that happened to trigger it.
local function reclaim_holds(ctx, stock_key, hexp_key, hqty_key, sku, loc, limit)
  local ids = rcall('ZRANGEBYSCORE', hexp_key, '-inf', ctx.now, 'LIMIT', 0, limit)
  local expiry_ctx = {events = ctx.events, actor = EXPIRY_ACTOR, idem = '', channel = '',
                      now = ctx.now}
  for _, rid in ipairs(ids) do
    give_back(expiry_ctx, 'expired', rid, stock_key, hexp_key, hqty_key, sku, loc, 'ttl')
  end
  return #ids
end

local function not_ready()
  return {cjson.encode({error = 'not_ready'}), 0}
end
