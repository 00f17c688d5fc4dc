--[[
  receive_return: units of a shipped reservation line come back; they wait in the
  returned bucket (quarantine, not available) until dispose_returned decides.

  KEYS: the stock layout of includes/stock.lua for the line's (sku, location):
    [1] meta, [2] events, [3] idempotency, [4] stock, [5] stock index of the partition,
    [6] hold expiries, [7] hold qty, [8] locations of the sku, [9] on_hand log; then
    [10] the reservation's part in this partition (holds the line)
  ARGV: [1] sku, [2] location, [3] fingerprint, [4] actor, [5] idempotency key ('' none),
    [6] idempotency retention (ms), [7] expired holds reclaimed first (at most),
    [8] reservation id, [9] qty (units, > 0), [10] reason
  Returns {json, replayed}; json is
    {ok, levels, returned, shipped}: returned = units of the line returned so far
    {error = 'not_found'}: no such part (never existed, or past its retention)
    {error = 'not_held', status}: the part has not shipped
    {error = 'no_line', sku, location}: the part has no such line
    {error = 'return_exceeds_shipped', shipped, returned, requested}
    {error = 'not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'returned' (returned +qty; reservation, reason).
  Invariants: a line never takes back more than it shipped (the part keeps
    'returned:<sku>:<location>' in the same script as the bucket change).
]]
--- @include "common"
--- @include "stock"
--- @include "lifecycle"

local ctx, reply = open_stock()
if not ctx then
  return reply
end
local sku, loc = ARGV[1], ARGV[2]
local rid, qty, reason = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local part = read_record(KEYS[10])
if not part then
  return stock_done({error = 'not_found'})
end
if part.status ~= 'shipped' then
  return stock_done({error = 'not_held', status = part.status})
end
local shipped = nil
for _, line in ipairs(cjson.decode(part.lines)) do
  if line.sku == sku and line.location == loc then
    shipped = line.qty
  end
end
if not shipped then
  return stock_done({error = 'no_line', sku = sku, location = loc})
end
local field = 'returned:' .. sku .. ':' .. loc
local before = tonumber(part[field] or '0')
if before + qty > shipped then
  return stock_done({error = 'return_exceeds_shipped', shipped = shipped, returned = before,
                     requested = qty})
end
rcall('HINCRBY', KEYS[10], field, qty)
local result = change_stock(ctx, 'returned', qty, {returned = qty},
                            {'reservation', rid, 'reason', reason})
result.returned, result.shipped = before + qty, shipped
return stock_done(result)
