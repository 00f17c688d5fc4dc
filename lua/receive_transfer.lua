--[[
  receive_transfer: a transfer arrives at its destination and is counted in.

  KEYS: [1] meta, [2] events, [3] idempotency, [4] transfer record, [5] stock at the
    destination (sku, to), [6] stock index of the partition, [7] locations of the sku,
    [8] on_hand log at the destination
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] transfer id, [6] sku, [7] to location (both as in the record: the
    caller built the keys from it), [8] qty received (units, >= 0), [9] reason,
    [10] retention (ms) of the received record
  Returns {json, replayed}; json is
    {ok, transfer}: received now, or already received with this same qty (no change)
    {error = 'transfer_already_received', transfer}: already received with another qty
    {error = 'transfer_not_found'} | {error = 'lines_mismatch'}: sku / to differ from
      the record (a stale caller)
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events, all at the destination with transfer, from, reason:
    'transfer_received' (in_transit -n, on_hand +n; n = min(received, shipped), if n > 0)
    'transfer_discrepancy' short (in_transit -missing, written_off +missing) when fewer
      arrived than shipped, or surplus (on_hand +extra) when more arrived.
  Invariants: in_transit drops by exactly qty shipped; no unit vanishes: missing units
    are written off by an event that says so; a transfer is received once.
]]
--- @include "common"
--- @include "write"
--- @include "lifecycle"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local transfer_key, stock_key, index_key, locations_key, log_key = KEYS[4], KEYS[5], KEYS[6],
                                                                   KEYS[7], KEYS[8]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tid, sku, to, qty, reason = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local retention_ms = tonumber(ARGV[10])
check_keys(#KEYS, 8)

local ctx, reply = open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                              idem_retention_ms, true)
if not ctx then
  return reply
end
local record = read_record(transfer_key)
if not record then
  return finish(ctx, {error = 'transfer_not_found'})
end
record.id = tid
if record.sku ~= sku or record.to ~= to then
  return finish(ctx, {error = 'lines_mismatch'})
end
if record.status == 'received' then
  if tonumber(record.qty_received) == qty then
    return finish(ctx, {ok = true, transfer = record})
  end
  return finish(ctx, {error = 'transfer_already_received', transfer = record})
end

local shipped = tonumber(record.qty_shipped)
local place = {stock = stock_key, log = log_key, index = index_key, locations = locations_key,
               sku = sku, location = to}
local arrived = math.min(shipped, qty)
if arrived > 0 then
  move(ctx, place, 'transfer_received', arrived, {in_transit = -arrived, on_hand = arrived},
       {'transfer', tid, 'from', record.from, 'reason', reason})
end
if qty < shipped then
  local missing = shipped - qty
  move(ctx, place, 'transfer_discrepancy', missing,
       {in_transit = -missing, written_off = missing},
       {'transfer', tid, 'from', record.from, 'reason', reason, 'discrepancy', 'short'})
elseif qty > shipped then
  local surplus = qty - shipped
  move(ctx, place, 'transfer_discrepancy', surplus, {on_hand = surplus},
       {'transfer', tid, 'from', record.from, 'reason', reason, 'discrepancy', 'surplus'})
end
rcall('HSET', transfer_key, 'status', 'received', 'qty_received', qty, 'received_at', ctx.now)
rcall('PEXPIRE', transfer_key, retention_ms)
record.status, record.qty_received, record.received_at = 'received', qty, ctx.now
return finish(ctx, {ok = true, transfer = record})
