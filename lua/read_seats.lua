--[[
  read_seats: a tenant's seat pool, or a page of its assigned users, as they stand now.
  Invites and leases stop counting at their expiry, not when they are given back: those
  past it are left out here (read only; the next write or the sweeper gives them back).

  KEYS: [1] meta of the partition, [2] pool, [3] config, [4] users, [5] invites,
    [6] leases, [7] high-water marks
  ARGV: [1] 'pool' | 'users', [2] tenant, [3] period (YYYY-MM; '' for the current one),
    [4] cursor (the last user of the previous page; '' from the start), [5] page size
  The current period's high-water mark is at least the seats assigned now (held since an
  earlier month when no write touched the tenant in this one).
  Returns JSON: for 'pool' {cap, overage, limit, floating, lease_ms, assigned, invited,
    period, high_water_mark}; for 'users' {users = [{user,
    lease_expires_at}], more, last}; or {error = 'tenant_not_found' | 'store_not_ready'}.
  Invariants: read only.
]]
--- @include "common"
--- @include "write"
--- @include "seats"

check_keys(#KEYS, 7)
local meta_key, pool_key, config_key = KEYS[1], KEYS[2], KEYS[3]
local users_key, invites_key, leases_key, hwm_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local refusal = store_refusal(meta_key)
if refusal then
  return cjson.encode({error = 'store_not_ready', reason = refusal})
end
local cfg = seat_config({config = config_key})
if not cfg then
  return cjson.encode({error = 'tenant_not_found'})
end
local now = now_ms()
if ARGV[1] == 'pool' then
  local levels = read_levels(pool_key)
  local period = ARGV[3]
  if period == '' then
    period = period_of(now)
  end
  local assigned = levels.committed - rcall('ZCOUNT', leases_key, '-inf', now)
  local high = tonumber(rcall('HGET', hwm_key, period) or '0')
  if period == period_of(now) and assigned > high then
    high = assigned  -- held since an earlier month, no write yet in this one
  end
  return cjson.encode({
    cap = cfg.cap, overage = cfg.overage, limit = cfg.limit, floating = cfg.floating,
    lease_ms = cfg.lease_ms,
    assigned = assigned,
    invited = levels.reserved - rcall('ZCOUNT', invites_key, '-inf', now),
    period = period, high_water_mark = high})
end
local size = bounded(ARGV[5], 'page size', 1, 1000)
local start = '-'
if ARGV[4] ~= '' then
  start = '(' .. ARGV[4]
end
local out = {}
local last = ''
local members = rcall('ZRANGEBYLEX', users_key, start, '+', 'LIMIT', 0, size + 1)
for i = 1, math.min(#members, size) do
  local user = members[i]
  last = user
  local lease = rcall('ZSCORE', leases_key, user)
  if not lease or tonumber(lease) > now then
    out[#out + 1] = {user = user, lease_expires_at = lease and tonumber(lease) or cjson.null}
  end
end
return cjson.encode({users = out, more = #members > size, last = last})
