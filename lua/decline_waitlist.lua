--[[
  decline_waitlist: a customer leaves the waitlist of one SKU of a drop.

  KEYS (6): [1] meta, [2] events, [3] idempotency (the write prefix), [4] drop rules,
    [5] the drop's waitlist (entries), [6] the SKU's queue
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), then [5] drop id, [6] customer (normalised), [7] sku (one of the
    drop's)
  Returns {json, replayed}; json is
    {ok, entry = {customer, sku, qty, status, position, joined_at, changed_at}}: status
      'declined'; an entry already finished (declined, converted, expired) is returned
      unchanged (declining twice changes nothing)
    {error = 'drop_not_found'}, {error = 'waitlist_entry_not_found'} (the customer never
    joined for this SKU), {error = 'store_not_ready' | 'idempotency_conflict'}
    {error = 'waitlist_offered', reservation}: the entry holds an offer; declining it is
      releasing that reservation (release_reservation passes its units on), never stored
  Events: 'waitlist_declined' at (sku, default), qty 0 and no deltas, with the drop and
    the customer.
  Invariants: the queue holds exactly the waiting entries.
]]
--- @include "common"
--- @include "write"
--- @include "waitlist"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local rules_key, waitlist_key, queue_key = KEYS[4], KEYS[5], KEYS[6]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local drop_id, customer, sku = ARGV[5], ARGV[6], ARGV[7]
check_keys(#KEYS, 6)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end
if rcall('EXISTS', rules_key) == 0 then
  return finish(ctx, {error = 'drop_not_found'})
end
local entry = waitlist_entry(waitlist_key, sku, customer)
if not entry then
  return finish(ctx, {error = 'waitlist_entry_not_found', customer = customer, sku = sku})
end
if entry.status == 'waiting' then
  rcall('ZREM', queue_key, customer)
  waitlist_queued_add(waitlist_key, sku, -entry.qty)
  entry.status = 'declined'
  entry.changed_at = ctx.now
  waitlist_store(waitlist_key, sku, customer, entry)
  emit(ctx, 'waitlist_declined', sku, 'default', 0, {},
       {'drop', drop_id, 'customer', customer})
elseif entry.status == 'offered' then
  return finish(ctx, {error = 'waitlist_offered', reservation = entry.reservation})
end
return finish(ctx, {ok = true, entry = waitlist_view(queue_key, sku, customer, entry)})
