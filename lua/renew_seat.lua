--[[
  renew_seat: the heartbeat of a floating seat: its lease runs lease_ms from now. A lease
  that already ran out freed its seat: the user must be assigned again. On a tenant
  without floating seats the seat is returned unchanged.

  KEYS: the seat layout of includes/seats.lua: [1] meta, [2] events, [3] idempotency,
    [4] pool, [5] stock index, [6] config, [7] users, [8] invites, [9] leases,
    [10] high-water marks, [11] on_hand log of the pool
  ARGV: [1-4] the write prefix, [5] tenant, [6] expired invites / leases given back first
    (at most), [7] user
  Returns {json, replayed}; json is {ok, seat} as assign_seat (created = false), or
    {error = 'tenant_not_found' | 'seat_not_found' (user) | 'store_not_ready' |
    'idempotency_conflict'}
  Events: expiries as set_seat_cap; 'seat_renewed' (no deltas; lease_expires_at).
  Invariants: only a live seat is renewed.
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
local user = ARGV[7]
local cfg = seat_config(place)
if not cfg then
  return finish(ctx, {error = 'tenant_not_found'})
end
local levels = seat_reclaim(ctx, place, ARGV[6])
local holding = seat_holding(ctx, place, levels, user)
seat_settle(ctx, place, cfg, levels)
if holding ~= 'assigned' then
  return finish(ctx, {error = 'seat_not_found', user = user})
end
if cfg.floating then
  local lease = ctx.now + cfg.lease_ms
  rcall('ZADD', place.leases, lease, user)
  seat_event(ctx, place, levels, 'seat_renewed', {}, {'user', user, 'lease_expires_at', lease})
end
return finish(ctx, {ok = true, seat = seat_view(place, user, false)})
