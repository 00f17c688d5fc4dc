--[[
  receive_return: units of a shipped reservation line come back; they wait in the
  returned bucket (quarantine, not available) until dispose_returned decides.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
    for the line's (sku, location); then [10] the reservation's part in this partition
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] reservation id, [9] qty (units, > 0), [10] reason
  Returns {json, replayed}; json is
    {ok, levels, returned, shipped}: returned = units of the line returned so far
    {error = 'reservation_not_found'}: no such part (never existed, or past its retention)
    {error = 'invalid_transition' | 'reservation_expired' | 'reservation_released', status}:
      the part has not shipped
    {error = 'no_line', sku, location}: the part has no such line
    {error = 'return_exceeds_shipped', shipped, returned, requested}
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'returned' (returned +qty; reservation, reason).
  Invariants: a line never takes back more than it shipped (the part keeps
    'returned:<sku>:<location>' in the same script as the bucket change).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"
--- @include "lifecycle"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = stock_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[6])
check_keys(#KEYS, STOCK_KEYS + 1)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
-- Expired holds stop counting before this change is checked against available.
local levels = reclaim_at(ctx, place, ARGV[7])
local part_key = KEYS[10]
local rid, qty, reason = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local NOT_SHIPPED = {expired = 'reservation_expired', released = 'reservation_released'}
local part = read_record(part_key)
if not part then
  return finish(ctx, {error = 'reservation_not_found'})
end
if part.status ~= 'shipped' then
  return finish(ctx, {error = NOT_SHIPPED[part.status] or 'invalid_transition',
                      status = part.status})
end
local shipped = nil
for _, line in ipairs(cjson.decode(part.lines)) do
  if line.sku == place.sku and line.location == place.location then
    shipped = line.qty
  end
end
if not shipped then
  return finish(ctx, {error = 'no_line', sku = place.sku, location = place.location})
end
local field = 'returned:' .. place.sku .. ':' .. place.location
local before = tonumber(part[field] or '0')
if before + qty > shipped then
  return finish(ctx, {error = 'return_exceeds_shipped', shipped = shipped, returned = before,
                      requested = qty})
end
rcall('HINCRBY', part_key, field, qty)
local result = change_stock(ctx, place, levels, 'returned', qty, {returned = qty},
                            {'reservation', rid, 'reason', reason})
result.returned, result.shipped = before + qty, shipped
return finish(ctx, result)
