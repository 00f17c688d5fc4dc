--[[
  extend_reservation: move a live hold's expiry to now + ttl.

  KEYS (6 + 4 per line, then the offer part), the reservation layout of
    includes/reservation.lua: [1] meta, [2] events, [3] idempotency, [4] reservation
    part, [5] expiries, [6] pins, then per line: stock, hold expiries, hold qty, on_hand
    log; then the offer part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation id, [6] owner check ('1': refused unless the
    actor created the part), [7] line count n, [8..7+2n] sku, location per line
    (the part's lines, in order), then
    [o] ttl (ms), [o+1..] the offer part (lua/includes/offers.lua): '' when the call
    brought no offer keys; a drop's hold found expired needs its drop's (its units go
    to the line)
  Returns {json, replayed}; json is
    {ok, reservation}: the new expires_at
    {error = 'reservation_expired' (given back in this call) | 'reservation_released' |
      'commit_in_progress' | 'invalid_transition', status, reservation}
    {error = 'offer_keys', drop}: a drop's hold found expired and the call did not bring
      its drop's offer keys (or the queue's head moved): nothing written, call again
    {error = 'reservation_not_found' | 'lines_mismatch' | 'not_owner' | 'store_not_ready' |
      'idempotency_conflict'}
  Events: 'extended' per line (no bucket changes; carries the new expires_at);
    a drop's hold found expired: 'expired' per line, and its units pass on as
    release_reservation does ('waitlist_expired', 'reserved', 'waitlist_offered').
  Invariants: an expired hold is never revived; the hold indexes carry the new expiry.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "reservation"
--- @include "drops"
--- @include "waitlist"
--- @include "offers"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local part_key, expiries_key, pins_key = KEYS[4], KEYS[5], KEYS[6]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rid, owner_only = ARGV[5], ARGV[6] == '1'
local n = bounded(ARGV[7], 'line count', 1, LINES_MAX)
local o = 8 + 2 * n
local first_offer_key = PART_KEYS + KEYS_PER_LINE * n + 1
local offer = offer_call_at(KEYS, first_offer_key, ARGV, o + 1)
local lines = called_lines(KEYS, ARGV, 8, n, #KEYS - first_offer_key + 1)
local ttl_ms = tonumber(ARGV[o])

local ctx, part = open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                            idem_retention_ms, part_key, lines, owner_only)
if not ctx then
  return part
end

if part.status == 'held' and ctx.now >= part.expires_at then
  -- Found expired: given back here, and its units offered as release_reservation does.
  local refusal = offer_check(offer, part, lines, true)
  if refusal then
    return finish(ctx, refusal)
  end
  expire_part(ctx, part, rid, part_key, expiries_key, pins_key, lines)
  offer_finished(ctx, offer, part, rid, 'expired')
  make_offers(ctx, offer, part.retention_ms, expiries_key)
  return finish(ctx, not_held(part, rid))
end
if part.status == 'pinned' then
  return finish(ctx, not_held(part, rid, 'commit_in_progress'))
end
if part.status ~= 'held' then
  return finish(ctx, not_held(part, rid))
end

local expires_at = ctx.now + ttl_ms
for _, line in ipairs(lines) do
  rcall('ZADD', line.hexp, expires_at, rid)
  emit(ctx, 'extended', line.sku, line.location, 0, {},
       {'reservation', rid, 'expires_at', expires_at})
end
rcall('HSET', part_key, 'expires_at', expires_at)
rcall('ZADD', expiries_key, expires_at, rid)
part.expires_at = expires_at
return finish(ctx, ok_part(part, rid))
