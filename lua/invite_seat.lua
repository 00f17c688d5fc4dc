--[[
  invite_seat: holds one of the tenant's seats for a user until the invite expires or is
  accepted. The limit is checked here, so an accept always finds its seat. A live invite
  for the user is returned unchanged (created = false).

  KEYS: the seat layout of includes/seats.lua: [1] meta, [2] events, [3] idempotency,
    [4] pool, [5] stock index, [6] config, [7] users, [8] invites, [9] leases,
    [10] high-water marks, [11] on_hand log of the pool
  ARGV: [1-4] the write prefix, [5] tenant, [6] expired invites / leases given back first
    (at most), [7] user, [8] invite TTL (ms)
  Returns {json, replayed}; json is {ok, invite = {tenant, user, created, expires_at}} or
    {error = 'tenant_not_found' | 'seat_already_assigned' (user) | 'seat_limit_reached'
    | 'over_cap' (cap, used, limit) | 'reclaim_more' | 'store_not_ready' |
    'durability_backlog' | 'idempotency_conflict'}
  Events: expiries as set_seat_cap; 'seat_invited' (reserved +1; user, expires_at).
  Invariants: reserved + committed never passes the limit through this script.
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
                              idem_retention_ms, true)
if not ctx then
  return reply
end
local user, ttl_ms = ARGV[7], bounded(ARGV[8], 'invite ttl', 1000, 2592000000)
local cfg = seat_config(place)
if not cfg then
  return finish(ctx, {error = 'tenant_not_found'})
end
local levels, more = seat_reclaim(ctx, place, ARGV[6])
local holding = seat_holding(ctx, place, levels, user)
seat_settle(ctx, place, cfg, levels)
if holding == 'assigned' then
  return finish(ctx, {error = 'seat_already_assigned', user = user})
end
if holding == 'invited' then
  local expires = tonumber(rcall('ZSCORE', place.invites, user))
  return finish(ctx, {ok = true, invite = {tenant = place.tenant, user = user, created = false,
                                           expires_at = expires}})
end
local refusal = seat_refusal(cfg, levels, more)
if refusal then
  return finish(ctx, refusal)
end
local expires = ctx.now + ttl_ms
rcall('ZADD', place.invites, expires, user)
seat_event(ctx, place, levels, 'seat_invited', {reserved = 1},
           {'user', user, 'expires_at', expires})
seat_settle(ctx, place, cfg, levels)
return finish(ctx, {ok = true, invite = {tenant = place.tenant, user = user, created = true,
                                         expires_at = expires}})
