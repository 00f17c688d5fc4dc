--[[
  ship_reservation: committed units leave the building.

  KEYS (6 + 4 per line, then the offer part), the reservation layout of
    includes/reservation.lua: [1] meta, [2] events, [3] idempotency, [4] reservation
    part, [5] expiries, [6] pins, then per line: stock, hold expiries, hold qty, on_hand
    log; then the offer part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation id, [6] owner check ('1': refused unless the
    actor created the part), [7] line count n, [8..7+2n] sku, location per line
    (the part's lines, in order), then [o..] the offer part (lua/includes/offers.lua):
    '' when the call brought no offer keys; a drop's hold found expired needs its
    drop's (its units go to the line)
  Returns {json, replayed}; json is
    {ok, reservation} with status 'shipped' (also when it already was)
    {error = 'invalid_transition' | 'reservation_expired' | 'reservation_released' |
      'commit_in_progress', status, reservation}: not committed
    {error = 'insufficient_on_hand', lines = [{sku, location, on_hand, requested}]}:
      fewer units on hand than the part ships (after a forced decrease); nothing written
    {error = 'offer_keys', drop}: a drop's hold found expired and the call did not bring
      its drop's offer keys (or the queue's head moved): nothing written, call again
    {error = 'reservation_not_found' | 'lines_mismatch' | 'not_owner' | 'store_not_ready' |
      'idempotency_conflict'}
  Events: 'shipped' per line (committed -qty, on_hand -qty; logged in the on_hand log);
    a drop's hold found expired: 'expired' per line, and its units pass on as
    release_reservation does ('waitlist_expired', 'reserved', 'waitlist_offered').
  Invariants: only committed units ship; on_hand never goes negative; every line of
    the part ships at once.
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
local offer = offer_call_at(KEYS, first_offer_key, ARGV, o)
local lines = called_lines(KEYS, ARGV, 8, n, #KEYS - first_offer_key + 1)

local ctx, part = open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                            idem_retention_ms, part_key, lines, owner_only)
if not ctx then
  return part
end

if part.status == 'shipped' then
  return finish(ctx, ok_part(part, rid))
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
if part.status ~= 'committed' then
  return finish(ctx, not_held(part, rid))
end

local levels, short = {}, {}
for i, line in ipairs(lines) do
  levels[i] = read_levels(line.stock)
  local qty = part.lines[i].qty
  if levels[i].on_hand < qty then
    short[#short + 1] = {sku = line.sku, location = line.location,
                         on_hand = levels[i].on_hand, requested = qty}
  end
end
if #short > 0 then
  return finish(ctx, {error = 'insufficient_on_hand', lines = short})
end

for i, line in ipairs(lines) do
  local qty = part.lines[i].qty
  local deltas = {committed = -qty, on_hand = -qty}
  apply(line.stock, levels[i], deltas, line.log)
  emit(ctx, 'shipped', line.sku, line.location, qty, deltas, {'reservation', rid})
end
rcall('HSET', part_key, 'status', 'shipped', 'shipped_at', ctx.now)
rcall('PEXPIRE', part_key, tonumber(part.retention_ms))
part.status = 'shipped'
part.shipped_at = ctx.now
return finish(ctx, ok_part(part, rid))
