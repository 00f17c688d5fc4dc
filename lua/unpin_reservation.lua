--[[
  unpin_reservation: undo pin_reservation; the part is held again with its original
  expiry (and expires at once through the usual paths if that has passed).

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation id, [6] owner check ('1': refused unless the
    actor created the part), [7] line count n, [8..7+2n] sku, location per line
    (the part's lines, in order; fingerprint and idempotency key are ''), then
    [o]   pin token: only a part pinned with this token is unpinned
    [o+1] '1': only when the pin is past its deadline (the sweeper); '0': now
  Returns {json, 0}; json is {ok, reservation} with the part's status after the call,
    or {error = 'reservation_not_found' | 'lines_mismatch' | 'not_owner' | 'store_not_ready'}
  Events: none (buckets do not change).
  Invariants: a part pinned by another attempt, or committed, is never touched.
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
local token, only_past_deadline = ARGV[o], ARGV[o + 1] == '1'

local ctx, part = open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                            idem_retention_ms, part_key, lines, owner_only)
if not ctx then
  return part
end

local deadline = tonumber(part.pin_deadline or '0')
if part.status ~= 'pinned' or part.pin_token ~= token or
   (only_past_deadline and ctx.now < deadline) then
  return finish(ctx, ok_part(part, rid))
end

for _, line in ipairs(lines) do
  rcall('ZADD', line.hexp, part.expires_at, rid)
end
rcall('HSET', part_key, 'status', 'held')
rcall('HDEL', part_key, 'pin_token', 'pin_deadline')
rcall('ZADD', expiries_key, part.expires_at, rid)
rcall('ZREM', pins_key, rid)
part.status = 'held'
return finish(ctx, ok_part(part, rid))
