--[[
  pin_reservation: first phase of a multi-partition commit. A pinned part no longer
  expires by its TTL; it waits for commit_reservation (mode 'pinned') or for
  unpin_reservation. The sweeper resolves pins older than their deadline.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency (unused), [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] reservation id, [2] fingerprint (unused), [3] actor, [4] '' , [5] 0,
    [6] line count n, [7..6+2n] sku, location per line, then
    [o]   pin token (random, one per commit attempt)
    [o+1] pin window (ms): the deadline is now + window
  Returns {json, 0}; json is
    {ok, reservation}: status 'pinned' (pinned now, or again by the same token), or
      'committed' / 'shipped' (the commit decision was already taken)
    {error = 'not_held', status, reservation}: expired (given back in this call),
      released, or pinned by another attempt ('commit_in_progress')
    {error = 'not_found' | 'lines_mismatch' | 'not_ready'}
  Events: none (buckets do not change); 'expired' per line when found expired.
  Invariants: only a live held part is pinned; a pinned part stays counted in reserved
    and is absent from the hold-expiry indexes, so reserve never reclaims it.
]]
--- @include "common"
--- @include "reservation"

local rid = ARGV[1]
local part, ctx = open_part()
if not part then
  return ctx
end
local o = options_at()
local token, window_ms = ARGV[o], tonumber(ARGV[o + 1])

if part.status == 'committed' or part.status == 'shipped' then
  return done(ok_part(part, rid))
end
if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid)
  return done(not_held(part, rid))
end
if part.status == 'pinned' and part.pin_token ~= token then
  return done({error = 'not_held', status = 'commit_in_progress', reservation = part_view(part, rid)})
end
if part.status ~= 'held' and part.status ~= 'pinned' then
  return done(not_held(part, rid))
end

local deadline = ctx.now + window_ms
for i = 1, #part.lines do
  local _, hexp_key = line_keys(i)
  rcall('ZREM', hexp_key, rid)
end
rcall('HSET', KEYS[4], 'status', 'pinned', 'pin_token', token, 'pin_deadline', deadline)
rcall('ZREM', KEYS[5], rid)
rcall('ZADD', KEYS[6], deadline, rid)
part.status = 'pinned'
return done(ok_part(part, rid))
