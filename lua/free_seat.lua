--[[
  free_seat: gives back a user's seat, or revokes the user's pending invite. Idempotent:
  a user holding nothing gets {freed = false, revoked = false} and nothing is written
  beyond the expiries it gives back.

  KEYS: the seat layout of includes/seats.lua: [1] meta, [2] events, [3] idempotency,
    [4] pool, [5] stock index, [6] config, [7] users, [8] invites, [9] leases,
    [10] high-water marks, [11] on_hand log of the pool
  ARGV: [1-4] the write prefix, [5] tenant, [6] expired invites / leases given back first
    (at most), [7] user
  Returns {json, replayed}; json is {ok, freed, revoked} or {error = 'tenant_not_found' |
    'store_not_ready' | 'idempotency_conflict'}
  Events: expiries as set_seat_cap; 'seat_freed' (committed -1) or 'seat_invite_revoked'
    (reserved -1); 'seats_under_cap' when use falls to the limit.
  Invariants: a seat is given back exactly once (it leaves users in the same script).
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
if holding == 'assigned' then
  drop_seat(ctx, place, levels, user, 'seat_freed', 'freed')
elseif holding == 'invited' then
  drop_invite(ctx, place, levels, user, 'seat_invite_revoked', 'revoked')
end
seat_settle(ctx, place, cfg, levels)
return finish(ctx, {ok = true, freed = holding == 'assigned', revoked = holding == 'invited'})
