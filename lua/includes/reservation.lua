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
-- with their keys; fails the script unless the call sent exactly their keys (and
-- `extra_keys` more after them, which the script reads itself; none when nil).
local function called_lines(keys, argv, first, n, extra_keys)
  check_keys(#keys, PART_KEYS + KEYS_PER_LINE * n + (extra_keys or 0))
  local lines = {}
  for i = 1, n do
    local a = first + (i - 1) * 2
    lines[i] = line_at(keys, PART_KEYS + 1, i, argv[a], argv[a + 1])
  end
  return lines
end

-- `flags` (an event's extra fields) with the customer and the drop of a drop's hold
-- appended, so that the ledger alone can count a customer's holds and purchases against
-- the drop's limit; unchanged for a hold of no drop (customer nil).
local function customer_flags(flags, customer, drop_id)
  if customer and customer ~= '' then
    flags[#flags + 1] = 'customer'
    flags[#flags + 1] = customer
    flags[#flags + 1] = 'drop'
    flags[#flags + 1] = drop_id
  end
  return flags
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
