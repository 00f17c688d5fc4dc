--[[
  note_event: records an event that moves no bucket (a discrepancy case opened, resolved
  or overdue) in the partition stream of its SKU, so the durable record holds it and the
  webhooks announce it like every other recorded change.

  KEYS: [1] meta (generation marker), [2] events (the partition's stream),
    [3] idempotency record of this request
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] event type, [6] sku, [7] location, [8] qty (units),
    [9] n: field/value pairs that follow (at most NOTE_FIELDS_MAX), [10..] the pairs
  Returns {json, replayed}; json is
    {ok, at}: at = the event's time (ms, Redis TIME)
    {error = 'store_not_ready' | 'idempotency_conflict'}
  Events: the given type, deltas {}, with the pairs as fields.
  Invariants: no bucket moves; a retry with the same idempotency key records nothing
    more (the reply is replayed).
]]
--- @include "common"
--- @include "write"

local NOTE_FIELDS_MAX = 16
local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
check_keys(#KEYS, 3)
local n = bounded(ARGV[9], 'note fields', 0, NOTE_FIELDS_MAX)
check_keys(#ARGV, 9 + 2 * n)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, false)
if not ctx then
  return reply
end
local extra = {}
for i = 1, 2 * n do
  extra[i] = ARGV[9 + i]
end
emit(ctx, ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), {}, extra)
return finish(ctx, {ok = true, at = ctx.now})
