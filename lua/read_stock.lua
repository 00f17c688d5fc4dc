--[[
  read_stock: the buckets of many (sku, location) of one partition, as they stand now.

  A hold stops counting at its expiry, not when it is reclaimed: holds whose expiry has
  passed but that no reserve or sweeper has given back yet are left out of `reserved`
  here (at most ARGV[1] per line are looked at; the sweeper keeps far fewer waiting).

  KEYS: [1] meta of the partition, then 3 per line (at most SKUS_PER_READ_MAX lines):
    stock, hold expiries, hold qty
  ARGV: [1] expired holds looked at per line at most
  Returns a JSON array with, per line, the buckets (reserved already net of expired
    holds, plus `expired_unreclaimed`), or null for a (sku, location) never stocked;
    or {error = 'store_not_ready', reason} when the partition cannot be trusted (no
    marker, or fenced): an emptied Redis must not answer "no such SKU".
  Invariants: read only.
]]
--- @include "common"
--- @include "write"

local limit = bounded(ARGV[1], 'expired holds read per line', 0, EXPIRED_READ_PER_LINE_MAX)
if #KEYS % 3 ~= 1 then
  error('earmark: read_stock takes the meta key and 3 KEYS per line, got ' .. #KEYS)
end
local refusal = store_refusal(KEYS[1])
if refusal then
  return cjson.encode({error = 'store_not_ready', reason = refusal})
end
local n = (#KEYS - 1) / 3
bounded(n, 'lines', 1, SKUS_PER_READ_MAX)
local now = now_ms()
local out = {}
for i = 1, n do
  local stock_key, hexp_key, hqty_key = KEYS[i * 3 - 1], KEYS[i * 3], KEYS[i * 3 + 1]
  if rcall('EXISTS', stock_key) == 0 then
    out[i] = cjson.null
  else
    local levels = read_levels(stock_key)
    local expired = 0
    local ids = rcall('ZRANGEBYSCORE', hexp_key, '-inf', now, 'LIMIT', 0, limit)
    if #ids > 0 then
      for _, qty in ipairs(rcall('HMGET', hqty_key, unpack(ids))) do
        expired = expired + tonumber(qty or '0')
      end
    end
    levels.reserved = levels.reserved - expired
    levels.expired_unreclaimed = expired
    out[i] = levels
  end
end
return cjson.encode(out)
