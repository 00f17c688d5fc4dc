--[[
  set_seat_cap: creates a tenant's seat pool or changes its cap, overage and floating
  settings. Nobody is evicted: a cap lowered below use puts the tenant over cap.

  KEYS: the seat layout of includes/seats.lua: [1] meta, [2] events, [3] idempotency,
    [4] pool, [5] stock index, [6] config, [7] users, [8] invites, [9] leases,
    [10] high-water marks, [11] on_hand log of the pool
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] tenant, [6] expired invites / leases given back first (at most),
    [7] cap (seats, >= 0), [8] overage ('none' | '1.25x' | '1.5x' | '2x'), [9] limit
    (floor(cap x factor), computed by Python), [10] floating ('1' | '0'), [11] lease (ms,
    0 when not floating)
  Returns {json, replayed}; json is {ok, created, changed} or {error = 'store_not_ready'
    | 'idempotency_conflict'}
  Events: 'seat_invite_expired' / 'seat_lease_expired' per reclaimed one; 'seats_capped'
    (on_hand +/- the change of limit; cap, overage, limit, floating, lease_ms) when a
    setting changed; 'seats_over_cap' / 'seats_under_cap' when the state flips.
  Invariants: on_hand = limit; nothing assigned or invited is taken away.
]]
--- @include "common"
--- @include "write"
--- @include "seats"

check_keys(#KEYS, SEAT_KEYS)
local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = seat_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
                         KEYS[11], ARGV[5])

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end
local cap = bounded(ARGV[7], 'cap', 0, 1000000)
local overage, limit = ARGV[8], bounded(ARGV[9], 'limit', 0, 2000000)
local floating, lease_ms = ARGV[10], bounded(ARGV[11], 'lease', 0, 86400000)
local levels = seat_reclaim(ctx, place, ARGV[6])
local cfg = seat_config(place)
local created = cfg == nil
if created then
  cfg = {cap = cap, overage = overage, limit = 0, floating = false, lease_ms = 0,
         over_cap = false}
  rcall('SADD', place.index, place.tenant .. ':' .. SEAT_LOCATION)
end
local changed = created or cfg.cap ~= cap or cfg.overage ~= overage or cfg.limit ~= limit
  or cfg.floating ~= (floating == '1') or cfg.lease_ms ~= lease_ms
if changed then
  local deltas = {}
  if limit ~= levels.on_hand then
    deltas.on_hand = limit - levels.on_hand
  end
  rcall('HSET', place.config, 'cap', cap, 'overage', overage, 'limit', limit,
        'floating', floating, 'lease_ms', lease_ms, 'over_cap', cfg.over_cap and '1' or '0')
  cfg.cap, cfg.overage, cfg.limit = cap, overage, limit
  cfg.floating, cfg.lease_ms = floating == '1', lease_ms
  seat_event(ctx, place, levels, 'seats_capped', deltas,
             {'cap', cap, 'overage', overage, 'limit', limit, 'floating', floating,
              'lease_ms', lease_ms})
end
seat_settle(ctx, place, cfg, levels)
return finish(ctx, {ok = true, created = created, changed = changed})
