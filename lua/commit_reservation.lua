--[[
  commit_reservation: turn this partition's held part of a reservation into a sale.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins, then per line: stock, hold expiries, hold qty, on_hand log.
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] reservation id, [6] owner check ('1': refused unless the
    actor created the part), [7] line count n, [8..7+2n] sku, location per line
    (the part's lines, in order), then
    [o]   mode: 'direct' (a held, live part) or 'pinned' (a part pinned by
          pin_reservation with the token below; the multi-partition commit)
    [o+1] pin token ('' in direct mode)
    [o+2..] the offer part (lua/includes/offers.lua): '' when the call brought no
          offer keys; an offer needs its drop's (its entry becomes 'converted'), and so
          does a drop's hold found expired (its units go to the line)
  Returns {json, replayed}; json is
    {ok, reservation} with status 'committed' (also when it already was committed or shipped)
    {error = 'reservation_expired' (found expired now: its holds are given back in this
      call) | 'reservation_released' | 'commit_in_progress' | 'invalid_transition',
      status, reservation}
    {error = 'reservation_not_found' | 'lines_mismatch' | 'not_owner' | 'store_not_ready' |
      'idempotency_conflict'}
    {error = 'offer_keys', drop}: such a part without its drop's keys; nothing written
  Events: 'committed' per line (reserved -qty, committed +qty; for a drop's hold, with
    its customer and drop); 'waitlist_converted'
    when the part was an offer; a hold found expired passes its units on as
    release_reservation does ('waitlist_expired', 'reserved', 'waitlist_offered').
  Invariants: only a live hold (or one pinned while live) is committed; every line of
    the part moves at once; reserved + committed is unchanged by a commit.
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
local mode, token = ARGV[o], ARGV[o + 1]
local first_offer_key = PART_KEYS + KEYS_PER_LINE * n + 1
local offer = offer_call_at(KEYS, first_offer_key, ARGV, o + 2)
local lines = called_lines(KEYS, ARGV, 8, n, #KEYS - first_offer_key + 1)

local ctx, part = open_part(meta_key, events_key, idem_key, fingerprint, actor, idem,
                            idem_retention_ms, part_key, lines, owner_only)
if not ctx then
  return part
end
if part.status == 'committed' or part.status == 'shipped' then
  return finish(ctx, ok_part(part, rid))
end
local expiring = part.status == 'held' and ctx.now >= part.expires_at
local refusal = offer_check(offer, part, lines, expiring)
if refusal then
  return finish(ctx, refusal)
end
if expiring then
  expire_part(ctx, part, rid, part_key, expiries_key, pins_key, lines)
  offer_finished(ctx, offer, part, rid, 'expired')
  make_offers(ctx, offer, part.retention_ms, expiries_key)
  return finish(ctx, not_held(part, rid))
end
local allowed = (mode == 'direct' and part.status == 'held') or
                (mode == 'pinned' and part.status == 'pinned' and part.pin_token == token)
if not allowed then
  if part.status == 'pinned' then
    return finish(ctx, not_held(part, rid, 'commit_in_progress'))
  end
  return finish(ctx, not_held(part, rid))
end

local levels = {}
for i, line in ipairs(lines) do
  if not rcall('HGET', line.hqty, rid) then
    error('earmark: live hold ' .. rid .. ' is not counted on ' .. line.stock)
  end
  levels[i] = read_levels(line.stock)
end
for i, line in ipairs(lines) do
  local qty = part.lines[i].qty
  local deltas = {reserved = -qty, committed = qty}
  apply(line.stock, levels[i], deltas)
  rcall('HDEL', line.hqty, rid)
  rcall('ZREM', line.hexp, rid)
  emit(ctx, 'committed', line.sku, line.location, qty, deltas,
       customer_flags({'reservation', rid}, part.customer, part.drop))
end
rcall('HSET', part_key, 'status', 'committed', 'committed_at', ctx.now)
rcall('ZREM', expiries_key, rid)
if part.status == 'pinned' then
  rcall('HDEL', part_key, 'pin_token', 'pin_deadline')
  rcall('ZREM', pins_key, rid)
end
offer_finished(ctx, offer, part, rid, 'converted')
part.status = 'committed'
part.committed_at = ctx.now
return finish(ctx, ok_part(part, rid))
