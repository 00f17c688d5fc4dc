--[[
  release_reservation: give a held part back to available, or expire it.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] reservation id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] line count n, [7..6+2n] sku, location per line, then
    [o]   mode: 'release' (the caller gives the hold up) or 'expire' (the sweeper:
          only a held part whose expiry has passed changes)
    [o+1] reason recorded on the events ('release', 'rollback', 'expired_part', ...)
    [o+2] pin token: a part pinned with this token may be released ('' for none)
  Returns {json, replayed}; json is
    {ok, reservation}: status 'released', or 'expired' when the hold had already expired
      (its units are back either way), or unchanged in 'expire' mode when still live
    {error = 'not_held', status, reservation}: committed or shipped (release mode),
      or pinned by a commit in progress (status 'commit_in_progress')
    {error = 'not_found' | 'lines_mismatch' | 'not_ready' | 'idempotency_conflict'}
  Events: 'released' or 'expired' per line still counted (reserved -qty).
  Invariants: releasing twice gives units back once (a line is given back only while
    it is still counted in its hold-quantity hash).
]]
--- @include "common"
--- @include "reservation"

local rid = ARGV[1]
local part, ctx = open_part()
if not part then
  return ctx
end
local o = options_at()
local mode, reason, token = ARGV[o], ARGV[o + 1], ARGV[o + 2]

local function forget_indexes()
  rcall('ZREM', KEYS[5], rid)
  rcall('ZREM', KEYS[6], rid)
end

if part.status == 'released' or part.status == 'expired' then
  forget_indexes()
  return done(ok_part(part, rid))
end
if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid)
  return done(ok_part(part, rid))
end
if mode == 'expire' then
  if part.status ~= 'held' and part.status ~= 'pinned' then
    forget_indexes()
  end
  return done(ok_part(part, rid))
end
if part.status == 'pinned' and (token == '' or part.pin_token ~= token) then
  return done({error = 'not_held', status = 'commit_in_progress', reservation = part_view(part, rid)})
end
if part.status ~= 'held' and part.status ~= 'pinned' then
  return done(not_held(part, rid))
end

for i, line in ipairs(part.lines) do
  release_line(ctx, 'released', rid, i, line.sku, line.location, reason)
end
rcall('HSET', KEYS[4], 'status', 'released', 'released_at', ctx.now)
rcall('HDEL', KEYS[4], 'pin_token', 'pin_deadline')
rcall('PEXPIRE', KEYS[4], tonumber(part.retention_ms))
forget_indexes()
part.status = 'released'
part.released_at = ctx.now
return done(ok_part(part, rid))
