--[[
  write_drop: create a drop, or change its times and limits before it opens.

  KEYS (5): [1] meta, [2] events, [3] idempotency (the write prefix), [4] drop rules,
    [5] the partition's drop index (sku -> drop id)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), then
    [5] mode: 'create' or 'update'
    [6] drop id
    [7] opens_at (ms), [8] closes_at (ms, '' none), [9] per-customer limit (units, ''
    none), [10] hold ttl (ms), [11] waitlist ('1' | '0'), [12] offer ttl (ms)
    [13] SKU count k (1..DROP_SKUS_MAX; create only, 0 on update), [14..13+k] the SKUs,
    [14+k] the opening seed (create only: 32 hex drawn by the caller; kept for good)
  Returns {json, replayed}; json is
    {ok, drop = {id, skus, opens_at, closes_at, limit, hold_ttl_ms, waitlist,
                 offer_ttl_ms, created_at, updated_at, actor, seed}}: Python publishes the
      seed only once the drop has opened (docs/drops.md, "Fair opening")
    {error = 'drop_exists'} (create), {error = 'sku_in_drop', sku, drop} (create: a SKU
    belongs to another drop), {error = 'drop_not_found'} (update),
    {error = 'drop_already_open', opens_at} (update at or after opens_at, server clock)
    {error = 'store_not_ready' | 'idempotency_conflict'}
  Events: 'drop_created' or 'drop_changed' per SKU of the drop (at the default location,
    qty 0, no deltas), with the drop id and its rules (json): the rule change and its actor
    are in the ledger.
  Invariants: a SKU belongs to at most one drop; a drop's rules change only before it
    opens (on Redis TIME); every SKU of a drop is in this partition (the caller's keys).
]]
--- @include "common"
--- @include "write"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local rules_key, index_key = KEYS[4], KEYS[5]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local mode, drop_id = ARGV[5], ARGV[6]
local k = bounded(ARGV[13], 'SKU count', 0, DROP_SKUS_MAX)
check_keys(#KEYS, 5)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end

local function view()
  local raw = rcall('HGETALL', rules_key)
  local r = {}
  for i = 1, #raw, 2 do
    r[raw[i]] = raw[i + 1]
  end
  return {id = drop_id, skus = cjson.decode(r.skus), opens_at = tonumber(r.opens_at),
          closes_at = tonumber(r.closes_at or ''), limit = tonumber(r.limit or ''),
          hold_ttl_ms = tonumber(r.hold_ttl_ms), waitlist = r.waitlist == '1',
          offer_ttl_ms = tonumber(r.offer_ttl_ms), created_at = tonumber(r.created_at),
          updated_at = tonumber(r.updated_at), actor = r.actor, seed = r.seed}
end

local exists = rcall('EXISTS', rules_key) == 1
if mode == 'create' then
  if k < 1 then
    error('earmark: a drop has at least one SKU')
  end
  if exists then
    return finish(ctx, {error = 'drop_exists'})
  end
  local skus = {}
  for i = 1, k do
    skus[i] = ARGV[13 + i]
    local owner = rcall('HGET', index_key, skus[i])
    if owner then
      return finish(ctx, {error = 'sku_in_drop', sku = skus[i], drop = owner})
    end
  end
  for _, sku in ipairs(skus) do
    rcall('HSET', index_key, sku, drop_id)
  end
  rcall('HSET', rules_key, 'skus', cjson.encode(skus), 'created_at', ctx.now,
        'seed', ARGV[14 + k])
elseif mode == 'update' then
  if not exists then
    return finish(ctx, {error = 'drop_not_found'})
  end
  local opens_at = tonumber(rcall('HGET', rules_key, 'opens_at'))
  if ctx.now >= opens_at then
    return finish(ctx, {error = 'drop_already_open', opens_at = opens_at})
  end
else
  error('earmark: unknown mode ' .. tostring(mode))
end
rcall('HSET', rules_key, 'opens_at', ARGV[7], 'closes_at', ARGV[8], 'limit', ARGV[9],
      'hold_ttl_ms', ARGV[10], 'waitlist', ARGV[11], 'offer_ttl_ms', ARGV[12],
      'updated_at', ctx.now, 'actor', actor)
local drop = view()
local etype = mode == 'create' and 'drop_created' or 'drop_changed'
local rules = cjson.encode({opens_at = drop.opens_at, closes_at = drop.closes_at,
                            limit = drop.limit, hold_ttl_ms = drop.hold_ttl_ms,
                            waitlist = drop.waitlist, offer_ttl_ms = drop.offer_ttl_ms})
for _, sku in ipairs(drop.skus) do
  emit(ctx, etype, sku, 'default', 0, {}, {'drop', drop_id, 'rules', rules})
end
return finish(ctx, {ok = true, drop = drop})
