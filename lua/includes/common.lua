-- Shared helpers, inlined into each script by earmark.engine.scripts at load time
-- (a line `--- @include "common"`). Redis Lua has no modules, so BullMQ-style includes
-- keep one copy of these in the source. Every helper takes what it uses as parameters:
-- none reads KEYS or ARGV.

-- Each script is loaded as a Redis function library (earmark.engine.scripts): the
-- includes run once, at FUNCTION LOAD, where redis.call does not exist yet, and every
-- call then starts with begin_call(), which binds it and forgets the memos of the call
-- before (a library's locals outlive a call).
local rcall = nil
-- What a call reads once and remembers for its own duration (the clock, the partition
-- meta, the server's replication id): see now_ms and includes/write.lua.
local call_memo = {meta = {}}

local function begin_call()
  rcall = redis.call
  call_memo = {meta = {}}
end

-- Bounds checked in Lua as well as in Python: each has the name and value of its
-- constant in earmark/limits.py (a test checks they agree).
-- Lines of one cart, delivery or purchase order part.
local LINES_MAX = 50
-- Carts one batched reserve call carries (lua/reserve_batch.lua).
local CARTS_PER_CALL_MAX = 64
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
-- [waitlist] customers of one queue a freeing script offers units to (or passes over).
local OFFERS_PER_CALL_MAX = 8

-- The actor of what a rebuild restores (events, reservation parts): restored parts have
-- no owner a caller could match.
local REBUILD_ACTOR = 'earmark:rebuild'

-- Server clock in whole milliseconds. Scripts never take a client clock. Read once per
-- script call: a script (and each cart of a batched call) runs at one instant.
local function now_ms()
  local clock = call_memo.clock_ms
  if not clock then
    local t = rcall('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    call_memo.clock_ms = clock
  end
  return clock
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

-- The buckets a hold moves or checks (available, then `reserved` and the version): what
-- reserve reads, since every field an HMGET returns costs the script as much as a
-- command of its own.
local HOLD_BUCKETS = {'on_hand', 'reserved', 'committed', 'version'}

-- The buckets of one stock key as a table of integers (missing fields are 0): all of
-- BUCKETS, or the ones `buckets` names (HOLD_BUCKETS); and, when the caller names
-- `extra` fields, their raw values (a list, nil where unset) read in the same HMGET.
local function read_levels(stock_key, extra, buckets)
  buckets = buckets or BUCKETS
  local fields = buckets
  if extra then
    fields = {unpack(buckets)}
    for i = 1, #extra do
      fields[#fields + 1] = extra[i]
    end
  end
  local raw = rcall('HMGET', stock_key, unpack(fields))
  local levels = {}
  for i, name in ipairs(buckets) do
    levels[name] = tonumber(raw[i] or '0')
  end
  if not extra then
    return levels
  end
  local values = {}
  for i = 1, #extra do
    values[i] = raw[#buckets + i]
  end
  return levels, values
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
-- `extra`: further field/value pairs the same HSET writes (none of them a bucket).
-- Returns `levels`, updated.
local function apply(stock_key, levels, deltas, log_key, extra)
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
  if extra then
    for i = 1, #extra do
      changes[#changes + 1] = extra[i]
    end
  end
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
-- The clock as text, formatted once per call (Lua formats a number with printf each time
-- it is passed to a command, and a 13-digit one costs as much as a short command).
local function now_text()
  local text = call_memo.now_text
  if not text then
    text = tostring(now_ms())
    call_memo.now_text = text
  end
  return text
end

local function emit(ctx, etype, sku, loc, qty, deltas, extra)
  local at = ctx.now
  if at == call_memo.clock_ms then
    at = now_text()
  end
  local fields = {'type', etype, 'sku', sku, 'location', loc, 'qty', qty,
                  'deltas', cjson.encode(deltas), 'actor', ctx.actor,
                  'idempotency_key', ctx.idem, 'channel', ctx.channel or '', 'at', at}
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
