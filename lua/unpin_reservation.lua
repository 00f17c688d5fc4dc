--[[
  unpin_reservation: undo pin_reservation; the part is held again with its original
  expiry (and expires at once through the usual paths if that has passed).

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency (unused), [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] reservation id, [2] '' , [3] actor, [4] '', [5] 0,
    [6] line count n, [7..6+2n] sku, location per line, then
    [o]   pin token: only a part pinned with this token is unpinned
    [o+1] 1 to unpin only once the pin deadline has passed (the sweeper), else 0
  Returns {json, 0}; json is {ok, reservation} with the part's status after the call
    ('held' when unpinned; otherwise unchanged), or
    {error = 'not_found' | 'lines_mismatch' | 'not_ready'}
  Events: none (buckets do not change).
  Invariants: a part pinned by another attempt, or committed, is never touched.
]]
--- @include "common"
--- @include "reservation"

local rid = ARGV[1]
local part, ctx = open_part()
if not part then
  return ctx
end
local o = options_at()
local token, only_past_deadline = ARGV[o], ARGV[o + 1] == '1'

local deadline = tonumber(part.pin_deadline or '0')
if part.status ~= 'pinned' or part.pin_token ~= token or
   (only_past_deadline and ctx.now < deadline) then
  return done(ok_part(part, rid))
end

for i = 1, #part.lines do
  local _, hexp_key = line_keys(i)
  rcall('ZADD', hexp_key, part.expires_at, rid)
end
rcall('HSET', KEYS[4], 'status', 'held')
rcall('HDEL', KEYS[4], 'pin_token', 'pin_deadline')
rcall('ZADD', KEYS[5], part.expires_at, rid)
rcall('ZREM', KEYS[6], rid)
part.status = 'held'
return done(ok_part(part, rid))
