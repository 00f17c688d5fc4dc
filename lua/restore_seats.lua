--[[
  restore_seats: puts back a tenant's seat settings and assigned users from the durable
  record, during a rebuild (after restore_stock restored the pool's buckets: on_hand =
  limit, committed = assigned, reserved = 0 because invites, like holds, are lost).

  KEYS: [1] config, [2] assigned users, [3] floating leases, [4] invites (all of one
    tenant; the invites are dropped: restore_stock zeroed reserved)
  ARGV: [1] cap, [2] overage, [3] limit, [4] floating ('1' | '0'), [5] lease (ms),
    [6] over_cap ('1' | '0'), [7] number of users n (at most 500), then n user ids
  Returns the number of users restored.
  Invariants: a floating seat gets a fresh lease from now (the record keeps no lease
    deadlines); nothing else of the partition is touched.
]]
--- @include "common"

check_keys(#KEYS, 4)
local config_key, users_key, leases_key, invites_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local n = bounded(ARGV[7], 'users', 0, 500)
if #ARGV ~= 7 + n then
  error('earmark: restore_seats expected ' .. (7 + n) .. ' ARGV, got ' .. #ARGV)
end
rcall('HSET', config_key, 'cap', ARGV[1], 'overage', ARGV[2], 'limit', ARGV[3],
      'floating', ARGV[4], 'lease_ms', ARGV[5], 'over_cap', ARGV[6])
local lease_ms = bounded(ARGV[5], 'lease', 0, 86400000)
local now = now_ms()
rcall('DEL', invites_key)
for i = 1, n do
  local user = ARGV[7 + i]
  rcall('ZADD', users_key, 0, user)
  if ARGV[4] == '1' then
    rcall('ZADD', leases_key, now + lease_ms, user)
  end
end
return n
