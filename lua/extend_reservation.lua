--[[
  extend_reservation: move a live hold's expiry to now + ttl.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] reservation id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] line count n, [7..6+2n] sku, location per line, then
    [o] ttl (ms), counted from the server's clock now
  Returns {json, replayed}; json is
    {ok, reservation} with the new expires_at
    {error = 'not_held', status, reservation}: expired (given back in this call),
      released, committed, shipped, or pinned ('commit_in_progress')
    {error = 'not_found' | 'lines_mismatch' | 'not_ready' | 'idempotency_conflict'}
  Events: 'extended' per line (no bucket changes; carries the new expires_at).
  Invariants: an expired hold is never revived; the hold indexes carry the new expiry.
]]
--- @include "common"
--- @include "reservation"

local rid = ARGV[1]
local part, ctx = open_part()
if not part then
  return ctx
end
local ttl_ms = tonumber(ARGV[options_at()])

if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid)
  return done(not_held(part, rid))
end
if part.status == 'pinned' then
  return done({error = 'not_held', status = 'commit_in_progress', reservation = part_view(part, rid)})
end
if part.status ~= 'held' then
  return done(not_held(part, rid))
end

local expires_at = ctx.now + ttl_ms
for i, line in ipairs(part.lines) do
  local _, hexp_key = line_keys(i)
  rcall('ZADD', hexp_key, expires_at, rid)
  emit(ctx, 'extended', line.sku, line.location, 0, {}, {'reservation', rid, 'expires_at', expires_at})
end
rcall('HSET', KEYS[4], 'expires_at', expires_at)
rcall('ZADD', KEYS[5], expires_at, rid)
part.expires_at = expires_at
return done(ok_part(part, rid))
