--[[
  release_reservation: give a held part back to available, or expire it.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation id, [6] owner check ('1': refused unless the
    actor created the part), [7] line count n, [8..7+2n] sku, location per line,
    then
    [o]   mode: 'release' (the caller gives the hold up) or 'expire' (the sweeper:
          only a held part whose expiry has passed changes)
    [o+1] reason recorded on the events ('release', 'rollback', 'expired_part', ...)
    [o+2] pin token: a part pinned with this token may be released ('' for none)
    [o+3..] the offer part (lua/includes/offers.lua): '' when the call brought no
          offer keys, else the drop, the line whose units go to its waitlist and the
          head of that SKU's queue, with their KEYS after the lines
  Returns {json, replayed}; json is
    {ok, reservation}: status 'released', or 'expired' when the hold had already expired
      (its units are back either way), or unchanged in 'expire' mode when still live
    {error = 'invalid_transition', status, reservation}: committed or shipped (release
      mode); {error = 'commit_in_progress', ...}: pinned by a commit in progress
    {error = 'reservation_not_found' | 'lines_mismatch' | 'not_owner' | 'store_not_ready' |
      'idempotency_conflict'}
    {error = 'offer_keys', drop}: a part of a drop freed without that drop's offer keys
      (or with a queue head that moved): nothing written, call again with them
  Events: 'released' or 'expired' per line still counted (reserved -qty); for a part of
    a drop with a waitlist: 'waitlist_expired' or 'waitlist_declined' when the part was
    an offer, then per offer made 'reserved' (reserved +qty, reason 'offer') and
    'waitlist_offered', per customer passed over 'waitlist_skipped'.
  Invariants: releasing twice gives units back once (a line is given back only while
    it is still counted in its hold-quantity hash). Units a drop's part frees go to the
    head of the offer line's queue in this call (at most OFFERS_PER_CALL_MAX offers; the
    sweeper's offer pass serves the rest), never past a customer's limit.
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
local mode, reason, token = ARGV[o], ARGV[o + 1], ARGV[o + 2]
local first_offer_key = PART_KEYS + KEYS_PER_LINE * n + 1
local offer = offer_call_at(KEYS, first_offer_key, ARGV, o + 3)
local lines = called_lines(KEYS, ARGV, 8, n, #KEYS - first_offer_key + 1)

local ctx, part = open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                            idem_retention_ms, part_key, lines, owner_only)
if not ctx then
  return part
end

local function forget_indexes()
  rcall('ZREM', expiries_key, rid)
  rcall('ZREM', pins_key, rid)
end

if part.status == 'released' or part.status == 'expired' then
  forget_indexes()
  return finish(ctx, ok_part(part, rid))
end
local frees = part.status == 'pinned' or (part.status == 'held' and
              (mode ~= 'expire' or ctx.now >= part.expires_at))
if frees then
  local refusal = offer_check(offer, part, lines, true)
  if refusal then
    return finish(ctx, refusal)
  end
end
if part.status == 'held' and ctx.now >= part.expires_at then
  expire_part(ctx, part, rid, part_key, expiries_key, pins_key, lines)
  offer_finished(ctx, offer, part, rid, 'expired')
  make_offers(ctx, offer, part.retention_ms, expiries_key)
  return finish(ctx, ok_part(part, rid))
end
if mode == 'expire' then
  if part.status ~= 'held' and part.status ~= 'pinned' then
    forget_indexes()
  end
  return finish(ctx, ok_part(part, rid))
end
if part.status == 'pinned' and (token == '' or part.pin_token ~= token) then
  return finish(ctx, not_held(part, rid, 'commit_in_progress'))
end
if part.status ~= 'held' and part.status ~= 'pinned' then
  return finish(ctx, not_held(part, rid))
end

for _, line in ipairs(lines) do
  give_back(ctx, 'released', rid, line.stock, line.hexp, line.hqty, line.sku, line.location,
            reason)
end
rcall('HSET', part_key, 'status', 'released', 'released_at', ctx.now)
if part.status == 'pinned' then
  rcall('HDEL', part_key, 'pin_token', 'pin_deadline')
end
rcall('PEXPIRE', part_key, tonumber(part.retention_ms))
forget_indexes()
part.status = 'released'
part.released_at = ctx.now
offer_finished(ctx, offer, part, rid, 'declined')
make_offers(ctx, offer, part.retention_ms, expiries_key)
return finish(ctx, ok_part(part, rid))
