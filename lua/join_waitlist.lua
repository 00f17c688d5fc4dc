--[[
  join_waitlist: a customer joins the waitlist of one SKU of a drop.

  KEYS (6): [1] meta, [2] events, [3] idempotency (the write prefix), [4] drop rules,
    [5] the drop's waitlist (entries), [6] the SKU's queue
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), then [5] drop id, [6] customer (normalised), [7] sku (one of the
    drop's), [8] qty (units, 1..the drop's limit), [9] the customer's opening rank for
    this SKU (a number in [0, 1) from the drop's seed, '' for a drop without one)
  Returns {json, replayed}; json is
    {ok, created = true|false, entry = {customer, sku, qty, status, position, joined_at,
      changed_at}}: created false when the customer already waits (or holds an offer) for
      this SKU: that entry, unchanged (joining twice is one entry)
    {error = 'drop_not_found'}, {error = 'sku_not_in_drop', sku, drop},
    {error = 'waitlist_disabled'} (the drop's waitlist is off),
    {error = 'customer_limit_exceeded', drop, limit, used = 0, requested} (more units
    than a customer may ever hold of the drop),
    {error = 'store_not_ready' | 'idempotency_conflict' | 'durability_backlog'}
  Events: 'waitlist_joined' at (sku, default), qty 0 and no deltas, with the drop, the
    customer, the units and the arrival number: a join is in the ledger with its actor.
  Invariants: a customer has at most one live (waiting or offered) entry per SKU of a
    drop; the queue holds exactly the waiting entries: those who joined before opens_at
    (Redis TIME) by their opening rank (score < 1, the fair opening), then the later
    arrivals in arrival order (score = arrival number >= 1).
]]
--- @include "common"
--- @include "write"
--- @include "waitlist"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local rules_key, waitlist_key, queue_key = KEYS[4], KEYS[5], KEYS[6]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local drop_id, customer, sku = ARGV[5], ARGV[6], ARGV[7]
local qty = bounded(ARGV[8], 'qty', 1, DROP_CUSTOMER_LIMIT_MAX)
check_keys(#KEYS, 6)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end

local rules = rcall('HMGET', rules_key, 'skus', 'waitlist', 'limit', 'opens_at')
if not rules[1] then
  return finish(ctx, {error = 'drop_not_found'})
end
local in_drop = false
for _, s in ipairs(cjson.decode(rules[1])) do
  in_drop = in_drop or s == sku
end
if not in_drop then
  return finish(ctx, {error = 'sku_not_in_drop', sku = sku, drop = drop_id})
end
if rules[2] ~= '1' then
  return finish(ctx, {error = 'waitlist_disabled'})
end
local limit = tonumber(rules[3] or '')
if limit and qty > limit then
  return finish(ctx, {error = 'customer_limit_exceeded', drop = drop_id, limit = limit,
                      used = 0, requested = qty})
end

local entry = waitlist_entry(waitlist_key, sku, customer)
if entry and (entry.status == 'waiting' or entry.status == 'offered') then
  return finish(ctx, {ok = true, created = false,
                      entry = waitlist_view(queue_key, sku, customer, entry)})
end
local seq = rcall('HINCRBY', waitlist_key, WAITLIST_SEQ_FIELD, 1)
entry = {qty = qty, seq = seq, status = 'waiting', joined_at = ctx.now, changed_at = ctx.now,
         actor = actor}
local score = seq
if ARGV[9] ~= '' and ctx.now < tonumber(rules[4]) then
  local rank = tonumber(ARGV[9])
  if not rank or rank < 0 or rank >= 1 then
    error('earmark: an opening rank is in [0, 1), got ' .. tostring(ARGV[9]))
  end
  score = ARGV[9] -- as sent: a Lua number would lose digits on its way to ZADD
  entry.early = true
end
waitlist_store(waitlist_key, sku, customer, entry)
rcall('ZADD', queue_key, score, customer)
waitlist_queued_add(waitlist_key, sku, qty)
emit(ctx, 'waitlist_joined', sku, 'default', 0, {},
     {'drop', drop_id, 'customer', customer, 'units', qty, 'arrival', seq})
return finish(ctx, {ok = true, created = true,
                    entry = waitlist_view(queue_key, sku, customer, entry)})
