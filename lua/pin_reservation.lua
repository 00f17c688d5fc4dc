--[[
  pin_reservation: first phase of a multi-partition commit. A pinned part no longer
  expires by its TTL; it waits for commit_reservation (mode 'pinned') or for
  unpin_reservation. The sweeper resolves pins older than their deadline.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation id, [6] owner check ('1': refused unless the
    actor created the part), [7] line count n, [8..7+2n] sku, location per line
    (the part's lines, in order; fingerprint and idempotency key are '': a pin is never
    replayed), then
    [o]   pin token (random, per commit attempt)
    [o+1] pin window (ms): the sweeper resolves the pin after now + window
  Returns {json, 0}; json is
    {ok, reservation}: status 'pinned', or 'committed' / 'shipped' (already decided)
    {error = 'reservation_expired' (given back in this call) | 'reservation_released' |
      'commit_in_progress' (pinned by another attempt) | 'invalid_transition', status,
      reservation}
    {error = 'reservation_not_found' | 'lines_mismatch' | 'not_owner' | 'store_not_ready'}
  Events: none (buckets do not change); 'expired' per line when found expired.
  Invariants: only a live held part is pinned; a pinned part stays counted in reserved
    and leaves the hold expiry indexes (it cannot expire while the commit decides).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "reservation"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local part_key, expiries_key, pins_key = KEYS[4], KEYS[5], KEYS[6]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rid, owner_only = ARGV[5], ARGV[6] == '1'
local n = bounded(ARGV[7], 'line count', 1, LINES_MAX)
local lines = called_lines(KEYS, ARGV, 8, n)
local o = 8 + 2 * n
local token, window_ms = ARGV[o], tonumber(ARGV[o + 1])

local ctx, part = open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                            idem_retention_ms, part_key, lines, owner_only)
if not ctx then
  return part
end

if part.status == 'committed' or part.status == 'shipped' then
  return finish(ctx, ok_part(part, rid))
end
if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid, part_key, expiries_key, pins_key, lines)
  return finish(ctx, not_held(part, rid))
end
if part.status == 'pinned' and part.pin_token ~= token then
  return finish(ctx, not_held(part, rid, 'commit_in_progress'))
end
if part.status ~= 'held' and part.status ~= 'pinned' then
  return finish(ctx, not_held(part, rid))
end

local deadline = ctx.now + window_ms
for _, line in ipairs(lines) do
  rcall('ZREM', line.hexp, rid)
end
rcall('HSET', part_key, 'status', 'pinned', 'pin_token', token, 'pin_deadline', deadline)
rcall('ZREM', expiries_key, rid)
rcall('ZADD', pins_key, deadline, rid)
part.status = 'pinned'
return finish(ctx, ok_part(part, rid))
