--[[
  release_idempotency: forget a request that was refused as a whole. A refusal is never
  stored as the answer (includes/write.lua, finish), but a request whose work spans
  partitions other than its key's home claimed the home record first
  (claim_idempotency), and the parts it held before the refusal (rolled back since)
  recorded their successes under '<digest>/part'. Those records would bind the key to a
  request that did not execute, or replay a part that was rolled back.

  KEYS: [1] an idempotency record (the home claim, or a part's record)
  ARGV: [1] fingerprint (32 hex) of the refused request
  Returns 1 when the record was this request's and is gone, 0 otherwise (absent, or
    another request's: it is left alone).
  Invariants: only a record carrying this request's fingerprint is removed, so a key
    bound to another request stays bound.
]]
--- @include "common"
--- @include "write"

check_keys(#KEYS, 1)
local fingerprint = ARGV[1]
if #fingerprint ~= FINGERPRINT_LENGTH then
  error('earmark: a fingerprint has ' .. FINGERPRINT_LENGTH .. ' characters')
end
local stored = rcall('GET', KEYS[1])
if stored and string.sub(stored, 1, FINGERPRINT_LENGTH) == fingerprint then
  rcall('DEL', KEYS[1])
  return 1
end
return 0
