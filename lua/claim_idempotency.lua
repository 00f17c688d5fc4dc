--[[
  claim_idempotency: the idempotency registry for requests whose work spans partitions
  other than the key's own. The first request to claim a key pins its fingerprint (and
  a value, e.g. the reservation id it will create); every later claim either replays
  (same fingerprint: the stored value comes back) or conflicts.

  KEYS: [1] registry record of the (actor, key) digest, in the key's own partition
  ARGV: [1] fingerprint (32 hex), [2] value to store on first claim, [3] retention (ms)
  Returns {outcome, value}: outcome 'new' | 'replay' | 'conflict'; value is the stored value.
  Invariants: a key is bound to one request for the whole retention; the work itself stays
    exactly-once through each partition's own idempotency record. A record is the
    fingerprint followed by the value, the shape write scripts keep too (the fingerprint
    first, then their reply), so either kind of record sees a conflict with the other.
]]
--- @include "common"
--- @include "write"

check_keys(#KEYS, 1)
local fingerprint, value = ARGV[1], ARGV[2]
if #fingerprint ~= FINGERPRINT_LENGTH then
  error('earmark: a fingerprint has ' .. FINGERPRINT_LENGTH .. ' characters')
end
local stored = rcall('GET', KEYS[1])
if not stored then
  rcall('SET', KEYS[1], fingerprint .. value, 'PX', tonumber(ARGV[3]))
  return {'new', value}
end
if string.sub(stored, 1, FINGERPRINT_LENGTH) ~= fingerprint then
  return {'conflict', ''}
end
return {'replay', string.sub(stored, FINGERPRINT_LENGTH + 1)}
