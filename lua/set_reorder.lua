--[[
  set_reorder: sets the reorder point of one (sku, location) and arms its low-stock alert.

  KEYS: the stock layout of includes/stock.lua: [1] meta, [2] events, [3] idempotency,
    [4] stock of (sku, location), [5] stock index of the partition, [6] hold expiries,
    [7] hold qty, [8] locations of the sku, [9] on_hand log of the (sku, location)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] sku, [6] location, [7] expired holds reclaimed first (at most),
    [8] reorder_point (units, >= 0), [9] rearm_above (units, > reorder_point),
    [10] lead_time_days (whole days, '' for none)
  Returns {json, replayed}; json is
    {ok, levels, reorder = {reorder_point, rearm_above, lead_time_days, low, low_since}}
    {error = 'store_not_ready' | 'idempotency_conflict'}
  Events: 'expired' per reclaimed hold; 'reorder_set' (no deltas; reorder_point,
    rearm_above, lead_time_days) so the durable record (and a rebuild) knows the setting;
    then the check of includes/alerts.lua: 'stock_low' at once when available is already
    at or below the new point.
  Invariants: rearm_above > reorder_point >= 0 (Python validates, Lua refuses by error);
    a new setting re-arms the alert, so a changed point is judged afresh.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "stock"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = stock_place(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[6])
check_keys(#KEYS, STOCK_KEYS)
local point = tonumber(ARGV[8])
local rearm = tonumber(ARGV[9])
local lead = ARGV[10]
if not point or not rearm or point < 0 or rearm <= point then
  error('earmark: set_reorder needs 0 <= reorder_point < rearm_above')
end

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end
local levels = reclaim_at(ctx, place, ARGV[7])
rcall('HSET', place.stock, 'reorder_point', point, 'rearm_above', rearm)
rcall('HDEL', place.stock, 'alert_low', 'alert_at')
if lead == '' then
  rcall('HDEL', place.stock, 'lead_time_days')
else
  rcall('HSET', place.stock, 'lead_time_days', lead)
end
index_stock(place.index, place.locations, place.sku, place.location)
emit(ctx, 'reorder_set', place.sku, place.location, 0, {},
     {'reorder_point', point, 'rearm_above', rearm, 'lead_time_days', lead})
check_low_stock(ctx, place.stock, place.sku, place.location, levels, 0)
local state = rcall('HMGET', place.stock, 'alert_low', 'alert_at')
local lead_days = cjson.null
if lead ~= '' then
  lead_days = tonumber(lead)
end
return finish(ctx, {ok = true, levels = levels_view(levels, place.sku, place.location),
                    reorder = {reorder_point = point, rearm_above = rearm,
                               lead_time_days = lead_days, low = state[1] == '1',
                               low_since = tonumber(state[2] or '0')}})
