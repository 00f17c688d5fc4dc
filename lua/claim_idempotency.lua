--[[
  claim_idempotency: the idempotency registry for requests whose work spans partitions
  other than the key's own. The first request to claim a key pins its fingerprint (and
  a value, e.g. the reservation id it will create); every later claim either replays
  (same fingerprint: the stored value comes back) or conflicts.

  KEYS: [1] registry record of the (actor, key) digest, in the key's own partition
  ARGV: [1] fingerprint, [2] value to store on first claim, [3] retention (ms)
  Returns {outcome, value}: outcome 'new' | 'replay' | 'conflict'; value is the stored value.
  Invariants: a key is bound to one request for the whole retention; the work itself stays
    exactly-once through each partition's own idempotency record.
]]
--- @include "common"

local stored = rcall('GET', KEYS[1])
if not stored then
  rcall('SET', KEYS[1], cjson.encode({fp = ARGV[1], value = ARGV[2]}), 'PX', tonumber(ARGV[3]))
  return {'new', ARGV[2]}
end
local record = cjson.decode(stored)
if record.fp ~= ARGV[1] then
  return {'conflict', record.value or ''}
end
return {'replay', record.value or ''}
