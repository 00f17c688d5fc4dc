-- Helpers for the scripts that act on one partition's part of a reservation.
-- Layout shared by those scripts:
--   KEYS[1] meta, KEYS[2] events, KEYS[3] idempotency, KEYS[4] reservation part,
--   KEYS[5] expiries index, KEYS[6] pins index, then 4 keys per line:
--   stock, hold expiries, hold quantities, on_hand log.
--   ARGV: line fields start at ARGV[LINE_ARGV] as sku, location (and qty for reserve).

local LINE_KEYS = 6
local KEYS_PER_LINE = 4

-- stock, hold expiries, hold qty and on_hand log of line i.
local function line_keys(i)
  local base = LINE_KEYS + (i - 1) * KEYS_PER_LINE
  return KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
end

-- give_back for line i of the layout.
local function release_line(ctx, etype, rid, i, sku, loc, reason)
  local stock_key, hexp_key, hqty_key = line_keys(i)
  return give_back(ctx, etype, rid, stock_key, hexp_key, hqty_key, sku, loc, reason)
end

local function reclaim_expired(ctx, i, sku, loc, limit)
  local stock_key, hexp_key, hqty_key = line_keys(i)
  return reclaim_holds(ctx, stock_key, hexp_key, hqty_key, sku, loc, limit)
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

-- The lines Python passed must be the part's own lines, in order: keys are
-- built by the caller from the record, and a mismatch means a stale caller.
local function lines_match(part, first_argv)
  local n = #part.lines
  if (#KEYS - LINE_KEYS) ~= n * KEYS_PER_LINE then
    return false
  end
  for i = 1, n do
    local line = part.lines[i]
    if line.sku ~= ARGV[first_argv + (i - 1) * 2] or
       line.location ~= ARGV[first_argv + (i - 1) * 2 + 1] then
      return false
    end
  end
  return true
end

-- A held part whose expiry has passed: give back every line still counted,
-- mark it expired and let it age out after the retention period.
local function expire_part(ctx, part, rid)
  local expiry_ctx = {events = ctx.events, actor = EXPIRY_ACTOR, idem = '',
                      channel = part.channel, now = ctx.now}
  for i, line in ipairs(part.lines) do
    release_line(expiry_ctx, 'expired', rid, i, line.sku, line.location, 'ttl')
  end
  part.status = 'expired'
  rcall('HSET', KEYS[4], 'status', 'expired', 'expired_at', ctx.now)
  rcall('ZREM', KEYS[5], rid)
  rcall('ZREM', KEYS[6], rid)
  rcall('PEXPIRE', KEYS[4], tonumber(part.retention_ms))
end

local function not_held(part, rid)
  return {error = 'not_held', status = part.status, reservation = part_view(part, rid)}
end

-- The opening every script acting on an existing part shares. ARGV layout of
-- those scripts: [1] reservation id, [2] fingerprint, [3] actor, [4] idempotency
-- key, [5] idempotency retention (ms), [6] line count n, [7..6+2n] sku, location
-- per line, then the script's own options from ARGV[7+2n].
-- Returns the part and the context, or nil and the reply to return at once.
local function open_part()
  if rcall('EXISTS', KEYS[1]) == 0 then
    return nil, not_ready()
  end
  local replay = idem_check(KEYS[3], ARGV[4], ARGV[2])
  if replay then
    return nil, replay
  end
  local part = read_part(KEYS[4])
  if not part then
    return nil, {cjson.encode({error = 'not_found'}), 0}
  end
  if not lines_match(part, 7) then
    return nil, {cjson.encode({error = 'lines_mismatch'}), 0}
  end
  local ctx = {events = KEYS[2], actor = ARGV[3], idem = ARGV[4], channel = part.channel,
               now = now_ms()}
  return part, ctx
end

-- Index of the first option after the lines.
local function options_at()
  return 7 + 2 * tonumber(ARGV[6])
end

-- Stores the result under the request's idempotency key and returns it.
local function done(result)
  return finish(KEYS[3], ARGV[4], ARGV[2], tonumber(ARGV[5]), result)
end

local function ok_part(part, rid)
  return {ok = true, reservation = part_view(part, rid)}
end
