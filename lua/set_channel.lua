--[[
  set_channel: sets or removes one channel rule in one partition's copy of the channel's
  settings (docs/channels.md). A channel default is written to every partition (one call
  per partition, each atomic and idempotent on its own); a SKU override only to the SKU's
  partition.

  KEYS (4 or 5): [1] meta, [2] events, [3] idempotency (the write prefix), [4] the
    channel's settings in this partition, [5] (setting a SKU's rule only) the SKU's
    locations set: a SKU with no stock record anywhere takes no rule
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), then
    [5] channel
    [6] sku ('' for the channel's default)
    [7] mode: 'set' or 'remove'
    [8] buffer_units (units >= 0), [9] buffer_percent (0..100), [10] floor (units >= 0)
        (set only; '' on remove)
  Returns {json, replayed}; json is
    {ok, channel, sku ('' default), rule = {buffer_units, buffer_percent, floor} | null,
     removed (bool, remove only: whether a rule was there)}
    {error = 'sku_not_found', sku, at}: a SKU rule for a SKU never stocked
    {error = 'channel_rules_full', limit}: the channel keeps CHANNEL_RULES_PER_PARTITION_MAX
      rules in this partition already (remove an override first)
    {error = 'store_not_ready' | 'idempotency_conflict'}
  Events: 'channel_set' or 'channel_removed' (no deltas; channel, scope 'default' or
    'sku', the rule), at sku '' (a default) or the SKU, location '': the rule change and
    its actor are in the ledger.
  Invariants: a rule is three whole numbers, percent within 0..100 (Python validates,
    the script refuses by error); a reserve with the channel reads the SKU's override,
    else the default, else nothing (plain availability).
]]
--- @include "common"
--- @include "write"
--- @include "channels"

local meta_key, events_key, idem_key, settings_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local channel, sku, mode = ARGV[5], ARGV[6], ARGV[7]
if channel == '' or (mode ~= 'set' and mode ~= 'remove') then
  error('earmark: set_channel needs a channel and a mode of set or remove')
end

local field, scope = '*', 'default'
if sku ~= '' then
  field, scope = 'sku:' .. sku, 'sku'
end
local locations_key = nil
if sku ~= '' and mode == 'set' then
  check_keys(#KEYS, 5)
  locations_key = KEYS[5]
else
  check_keys(#KEYS, 4)
end
local rule = cjson.null
local stored = nil
if mode == 'set' then
  local u, p, f = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  if not u or not p or not f or u < 0 or f < 0 or p < 0 or p > 100
     or u ~= math.floor(u) or p ~= math.floor(p) or f ~= math.floor(f) then
    error('earmark: set_channel needs whole buffer_units, floor >= 0 and 0 <= percent <= 100')
  end
  stored = u .. ':' .. p .. ':' .. f
  rule = {buffer_units = u, buffer_percent = p, floor = f}
end

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end
ctx.channel = channel
local result = {ok = true, channel = channel, sku = sku, rule = rule}
if locations_key and rcall('EXISTS', locations_key) == 0 then
  return finish(ctx, {error = 'sku_not_found', sku = sku, at = 'at any location'})
end
if stored then
  if rcall('HEXISTS', settings_key, field) == 0
     and rcall('HLEN', settings_key) >= CHANNEL_RULES_PER_PARTITION_MAX then
    return finish(ctx, {error = 'channel_rules_full', limit = CHANNEL_RULES_PER_PARTITION_MAX})
  end
  rcall('HSET', settings_key, field, stored)
  emit(ctx, 'channel_set', sku, '', 0, {}, {'scope', scope, 'rule', stored})
else
  result.removed = rcall('HDEL', settings_key, field) == 1
  emit(ctx, 'channel_removed', sku, '', 0, {}, {'scope', scope})
end
return finish(ctx, result)
