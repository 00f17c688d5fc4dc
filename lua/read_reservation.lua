--[[
  read_reservation: one partition's part of a reservation, with the server clock, so the
  caller can tell a held part whose expiry has passed (status 'expired') without a write.

  KEYS: [1] meta of the partition, [2] reservation part
  ARGV: none
  Returns {json, now (ms)}; json is the part's fields (status, expires_at, created_at,
    channel, actor, lines, committed_at, released_at, expired_at, shipped_at, pin_token,
    pin_deadline), or 'null' when there is no such part, or
    {error = 'store_not_ready', reason} when the partition cannot be trusted (no marker,
    or fenced): an emptied Redis must not answer "no such reservation".
  Invariants: read only.
]]
--- @include "common"
--- @include "write"

check_keys(#KEYS, 2)
local refusal = store_refusal(KEYS[1])
if refusal then
  return {cjson.encode({error = 'store_not_ready', reason = refusal}), now_ms()}
end
local raw = rcall('HGETALL', KEYS[2])
if #raw == 0 then
  return {'null', now_ms()}
end
local part = {}
for i = 1, #raw, 2 do
  part[raw[i]] = raw[i + 1]
end
part.lines = cjson.decode(part.lines)
return {cjson.encode(part), now_ms()}
