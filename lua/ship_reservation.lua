--[[
  ship_reservation: committed units leave the building.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] reservation id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] line count n, [7..6+2n] sku, location per line
  Returns {json, replayed}; json is
    {ok, reservation} with status 'shipped' (also when it already was shipped)
    {error = 'not_held', status, reservation}: not committed (held, released, expired, pinned)
    {error = 'insufficient_on_hand', lines = [{sku, location, requested, on_hand}]}: a
      forced decrease took units that were already sold; nothing is shipped
    {error = 'not_found' | 'lines_mismatch' | 'not_ready' | 'idempotency_conflict'}
  Events: 'shipped' per line (committed -qty, on_hand -qty; logged in the on_hand log).
  Invariants: only committed units ship; on_hand never goes negative; every line of
    the part ships at once.
]]
--- @include "common"
--- @include "reservation"

local rid = ARGV[1]
local part, ctx = open_part()
if not part then
  return ctx
end

if part.status == 'shipped' then
  return done(ok_part(part, rid))
end
if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid)
  return done(not_held(part, rid))
end
if part.status ~= 'committed' then
  return done(not_held(part, rid))
end

local short = {}
for i, line in ipairs(part.lines) do
  local on_hand = read_levels((line_keys(i))).on_hand
  if on_hand < line.qty then
    short[#short + 1] = {sku = line.sku, location = line.location, requested = line.qty,
                         on_hand = on_hand}
  end
end
if #short > 0 then
  return done({error = 'insufficient_on_hand', lines = short})
end

for i, line in ipairs(part.lines) do
  local deltas = {committed = -line.qty, on_hand = -line.qty}
  local stock_key, _, _, log_key = line_keys(i)
  apply(stock_key, deltas, log_key)
  emit(ctx, 'shipped', line.sku, line.location, line.qty, deltas, {'reservation', rid})
end
rcall('HSET', KEYS[4], 'status', 'shipped', 'shipped_at', ctx.now)
rcall('PEXPIRE', KEYS[4], tonumber(part.retention_ms))
part.status = 'shipped'
part.shipped_at = ctx.now
return done(ok_part(part, rid))
