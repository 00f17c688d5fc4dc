--[[
  restore_stock: write one partition's stock back from the durable record after Redis
  lost it (earmark.rebuild). A partition is restored in one call, or in several calls
  when it holds more records than one call may carry; it stays fenced (no marker, every
  write refused) until the last call stamps a new generation marker.

  KEYS (5 + 5 per stock record + 1 per committed part + 1 per stale part):
    [1] meta              partition meta hash; must be missing (never overwrite a live partition)
    [2] stock index       set of 'sku:location'
    [3] events            partition event stream
    [4] expiries          zset of held parts (emptied: holds do not survive a loss)
    [5] pins              zset of pinned parts (emptied likewise)
    then per stock record i: stock hash, hold expiries zset, hold qty hash, the SKU's
      locations set, on_hand log (emptied: it restarts from the restored level)
    then per committed part j: reservation part hash (written)
    then per stale part k: reservation part hash of a hold that did not survive (expired)
  ARGV:
    [1] '1' on the partition's last call: stamp the marker; '0' otherwise
    [2] new generation (random id)
    [3] partition count
    [4] newest stream id the durable record holds for this partition ('0-0' for none):
        new event ids must sort after it, or the record would take them for replays
    [5] n stock records   [6] m committed parts   [7] k stale parts
    [8] reservation retention (ms) stored on restored parts (their lifetime once shipped)
    [9] q channel allocations (earmark.durable.allocation_restore)
    [10..] per stock record, 11 values: sku, location, on_hand, reserved, committed,
        in_transit, returned, damaged, written_off, inbound, version (units; reserved is
        what the record counts as held or allocated: the allocations below stay
        reserved, the rest is given back)
    then per committed part, 6 values: reservation id, created_at (ms), expires_at (ms),
        committed_at (ms), channel, lines (JSON array of {sku, location, qty})
    then per allocation, 3 values: the stock record it belongs to (1..n, in this call),
        channel, units (> 0)
  Returns a JSON object:
    {ok, restored = n, parts = m, stale = k, lost = units given back,
     fenced = allocation units restored,
     exposed = units committed beyond on hand (flagged), generation = marker or ''}
    {error = 'ready'}: the partition has a marker (rebuild fences it first only when forced)
    {error = 'stream_not_drained'}: the stream holds entries older than the record's newest
  Events: 'holds_lost' per stock record whose recorded reserved is more than its
    allocations (reserved -units, reason 'rebuild'): holds live at the loss are gone, and
    the record must learn it;
    'oversell_exposure' (no deltas, cause 'rebuild') where the record has more committed
    than on hand: every recorded sale stays counted and available stays below zero (new
    reservations refused) until receipts cover it.
  Invariants: reserved is the allocations after a restore (never more than the recorded
    reserved: the script fails before writing anything otherwise) and no hold structure
    survives; every other bucket equals the record; stream ids only grow across a loss;
    the marker is written last, so a half-restored partition is never sold from.
]]
--- @include "common"

local meta_key, index_key, events_key, expiries_key, pins_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local stamp, generation, partitions, newest = ARGV[1] == '1', ARGV[2], ARGV[3], ARGV[4]
local RESTORE_ITEMS_MAX = 500  -- earmark.durable.rebuild.RESTORE_ITEMS_PER_CALL_MAX
local n = bounded(ARGV[5], 'stock records', 0, RESTORE_ITEMS_MAX)
local m = bounded(ARGV[6], 'committed parts', 0, RESTORE_ITEMS_MAX)
local k = bounded(ARGV[7], 'stale parts', 0, RESTORE_ITEMS_MAX)
local retention_ms = ARGV[8]
local q = bounded(ARGV[9], 'allocations', 0, RESTORE_ITEMS_MAX)
local RECORD_ARGS, RECORD_KEYS, PART_ARGS, FIRST_ARG, FIRST_KEY = 11, 5, 6, 10, 6
local ALLOCATION_ARGS = 3
check_keys(#KEYS, 5 + RECORD_KEYS * n + m + k)

if rcall('EXISTS', meta_key) == 1 then
  return cjson.encode({error = 'ready'})
end

-- The allocations of each stock record: record index -> {field, units, ...}, and their sum.
local fences, fenced_of = {}, {}
local alloc_arg0 = FIRST_ARG + n * RECORD_ARGS + m * PART_ARGS
for e = 1, q do
  local a = alloc_arg0 + (e - 1) * ALLOCATION_ARGS
  local i = bounded(ARGV[a], 'allocation record', 1, n)
  local units = bounded(ARGV[a + 2], 'allocation units', 1, 9007199254740991)
  if ARGV[a + 1] == '' then
    error('earmark: an allocation needs a channel')
  end
  fences[i] = fences[i] or {}
  table.insert(fences[i], 'alloc:' .. ARGV[a + 1])
  table.insert(fences[i], units)
  fenced_of[i] = (fenced_of[i] or 0) + units
end
-- Checked before any write (a failed script keeps what it wrote before the error).
for i, units in pairs(fenced_of) do
  local a = FIRST_ARG + (i - 1) * RECORD_ARGS
  if units > tonumber(ARGV[a + 3]) then
    error('earmark: allocations of ' .. ARGV[a] .. ' at ' .. ARGV[a + 1] ..
          ' exceed its recorded reserved')
  end
end

local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function id_before(a, b)
  local a_ms, a_seq = id_parts(a)
  local b_ms, b_seq = id_parts(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

local function last_generated_id()
  if rcall('EXISTS', events_key) == 0 then
    return '0-0'
  end
  local info = rcall('XINFO', 'STREAM', events_key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return info[i + 1]
    end
  end
  error('earmark: XINFO STREAM has no last-generated-id for ' .. events_key)
end

-- Stream ids only grow: move an empty stream's last id up to the record's newest, so a
-- new event can never take the id of a recorded one. An existing stream (a failed-over
-- Redis keeps its consumer group) moves by XSETID, which adds no entry the group would
-- count as unread; a missing one is created by an entry trimmed at once.
if newest ~= '0-0' and id_before(last_generated_id(), newest) then
  if rcall('EXISTS', events_key) == 1 then
    if rcall('XLEN', events_key) > 0 then
      return cjson.encode({error = 'stream_not_drained'})
    end
    local moved = redis.pcall('XSETID', events_key, newest)
    if type(moved) == 'table' and moved.err then  -- a server without XSETID (fakeredis)
      rcall('XADD', events_key, 'MAXLEN', '0', newest, 'restore', '1')
    end
  else
    rcall('XADD', events_key, 'MAXLEN', '0', newest, 'restore', '1')
  end
end
rcall('DEL', expiries_key, pins_key)

local ctx = {events = events_key, actor = REBUILD_ACTOR, idem = '', channel = '', now = now_ms()}
local lost, exposed, fenced = 0, 0, 0
for i = 1, n do
  local a = FIRST_ARG + (i - 1) * RECORD_ARGS
  local k0 = FIRST_KEY + (i - 1) * RECORD_KEYS
  local stock_key, hexp_key, hqty_key = KEYS[k0], KEYS[k0 + 1], KEYS[k0 + 2]
  local locations_key, log_key = KEYS[k0 + 3], KEYS[k0 + 4]
  local sku, loc, reserved = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 3])
  local kept = fenced_of[i] or 0  -- never above reserved (checked above)
  local held = reserved - kept
  local version = tonumber(ARGV[a + 10])
  if held ~= 0 then
    version = version + 1  -- the holds_lost event below counts as a change, as in the record
  end
  rcall('DEL', stock_key, hexp_key, hqty_key, log_key)
  rcall('HSET', stock_key, 'on_hand', ARGV[a + 2], 'reserved', kept, 'committed', ARGV[a + 4],
        'in_transit', ARGV[a + 5], 'returned', ARGV[a + 6], 'damaged', ARGV[a + 7],
        'written_off', ARGV[a + 8], 'inbound', ARGV[a + 9], 'version', version)
  if fences[i] then
    rcall('HSET', stock_key, unpack(fences[i]))
    fenced = fenced + kept
  end
  rcall('SADD', index_key, sku .. ':' .. loc)
  rcall('SADD', locations_key, loc)
  if held ~= 0 then
    emit(ctx, 'holds_lost', sku, loc, held, {reserved = -held}, {'reason', 'rebuild'})
    lost = lost + held
  end
  -- More units committed than on hand (sales a failed-over Redis made again before it
  -- was fenced): every recorded sale stays counted, the shortfall is flagged.
  local short = tonumber(ARGV[a + 4]) - tonumber(ARGV[a + 2])
  if short > 0 then
    emit(ctx, 'oversell_exposure', sku, loc, short, {},
         {'cause', 'rebuild', 'reason', 'committed exceeds on hand in the record'})
    exposed = exposed + short
  end
end

local part_key0 = FIRST_KEY - 1 + n * RECORD_KEYS
local part_arg0 = FIRST_ARG + n * RECORD_ARGS
for j = 1, m do
  local a = part_arg0 + (j - 1) * PART_ARGS
  local part_key = KEYS[part_key0 + j]
  rcall('DEL', part_key)
  rcall('HSET', part_key, 'status', 'committed', 'created_at', ARGV[a + 1],
        'expires_at', ARGV[a + 2], 'committed_at', ARGV[a + 3], 'channel', ARGV[a + 4],
        'actor', REBUILD_ACTOR, 'retention_ms', retention_ms, 'lines', ARGV[a + 5])
end

for s = 1, k do
  local part_key = KEYS[part_key0 + m + s]
  local status = rcall('HGET', part_key, 'status')
  if status == 'held' or status == 'pinned' then
    rcall('HSET', part_key, 'status', 'expired', 'expired_at', ctx.now)
    rcall('HDEL', part_key, 'pin_token', 'pin_deadline')
    rcall('PEXPIRE', part_key, tonumber(rcall('HGET', part_key, 'retention_ms') or retention_ms))
  end
end

if stamp then
  rcall('HSET', meta_key, 'generation', generation, 'partitions', partitions,
        'created_at', ctx.now, 'rebuilt_at', ctx.now)
end
return cjson.encode({ok = true, restored = n, parts = m, stale = k, lost = lost,
                     fenced = fenced, exposed = exposed,
                     generation = stamp and generation or ''})
