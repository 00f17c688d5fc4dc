--[[
  commit_reservation: turn this partition's held part of a reservation into a sale.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] reservation id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] line count n, [7..6+2n] sku, location per line
    (must match the part's lines, in order), then
    [o]   mode: 'direct' (a held, live part) or 'pinned' (a part pinned by
          pin_reservation with the token below; the multi-partition commit)
    [o+1] pin token ('' in direct mode)
  Returns {json, replayed}; json is
    {ok, reservation} with status 'committed' (also when it already was committed or shipped)
    {error = 'not_held', status, reservation}: status 'released', 'expired' (found
      expired now: its holds are given back in this call) or 'commit_in_progress'
    {error = 'not_found' | 'lines_mismatch' | 'not_ready' | 'idempotency_conflict'}
  Events: 'committed' per line (reserved -qty, committed +qty).
  Invariants: only a live hold (or one pinned while live) is committed; every line of
    the part moves at once; reserved + committed is unchanged by a commit.
]]
--- @include "common"
--- @include "reservation"

local rid = ARGV[1]
local part, ctx = open_part()
if not part then
  return ctx
end
local o = options_at()
local mode, token = ARGV[o], ARGV[o + 1]

if part.status == 'committed' or part.status == 'shipped' then
  return done(ok_part(part, rid))
end
if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid)
  return done(not_held(part, rid))
end
local allowed = (mode == 'direct' and part.status == 'held') or
                (mode == 'pinned' and part.status == 'pinned' and part.pin_token == token)
if not allowed then
  if part.status == 'pinned' then
    return done({error = 'not_held', status = 'commit_in_progress',
                 reservation = part_view(part, rid)})
  end
  return done(not_held(part, rid))
end

for i, line in ipairs(part.lines) do
  local stock_key, hexp_key, hqty_key = line_keys(i)
  if not rcall('HGET', hqty_key, rid) then
    error('earmark: live hold ' .. rid .. ' is not counted on ' .. stock_key)
  end
  apply(stock_key, {reserved = -line.qty, committed = line.qty})
  rcall('HDEL', hqty_key, rid)
  rcall('ZREM', hexp_key, rid)
  emit(ctx, 'committed', line.sku, line.location, line.qty,
       {reserved = -line.qty, committed = line.qty}, {'reservation', rid})
end
rcall('HSET', KEYS[4], 'status', 'committed', 'committed_at', ctx.now)
rcall('HDEL', KEYS[4], 'pin_token', 'pin_deadline')
rcall('ZREM', KEYS[5], rid)
rcall('ZREM', KEYS[6], rid)
part.status = 'committed'
part.committed_at = ctx.now
return done(ok_part(part, rid))
