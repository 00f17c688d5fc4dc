--[[
  receive_transfer: a transfer arrives at its destination and is counted in.

  KEYS: [1] meta, [2] events, [3] idempotency, [4] transfer record, [5] stock at the
    destination (sku, to), [6] stock index of the partition, [7] locations of the sku,
    [8] on_hand log at the destination
  ARGV: [1] transfer id, [2] fingerprint, [3] actor, [4] idempotency key ('' none),
    [5] idempotency retention (ms), [6] sku, [7] to location (both as in the record: the
    caller built the keys from it), [8] qty received (units, >= 0), [9] reason,
    [10] retention (ms) of the received record
  Returns {json, replayed}; json is
    {ok, transfer}: received now, or already received with this same qty (no change)
    {error = 'already_received', transfer}: already received with another qty
    {error = 'transfer_not_found'} | {error = 'lines_mismatch'}: sku / to differ from
      the record (a stale caller)
    {error = 'not_ready' | 'idempotency_conflict'}
  Events, all at the destination with transfer, from, reason:
    'transfer_received' (in_transit -n, on_hand +n; n = min(received, shipped), if n > 0)
    'transfer_discrepancy' short (in_transit -missing, written_off +missing) when fewer
      arrived than shipped, or surplus (on_hand +extra) when more arrived.
  Invariants: in_transit drops by exactly qty shipped; no unit vanishes: missing units
    are written off by an event that says so; a transfer is received once.
]]
--- @include "common"
--- @include "lifecycle"

local tid, fp, actor, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local idem_retention_ms = tonumber(ARGV[5])
local sku, to, qty, reason = ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local retention_ms = tonumber(ARGV[10])

local ctx, reply = open_write(fp, actor, idem)
if not ctx then
  return reply
end
local function done(result)
  return finish(KEYS[3], idem, fp, idem_retention_ms, result)
end

local record = read_record(KEYS[4])
if not record then
  return done({error = 'transfer_not_found'})
end
record.id = tid
if record.sku ~= sku or record.to ~= to then
  return done({error = 'lines_mismatch'})
end
if record.status == 'received' then
  if tonumber(record.qty_received) == qty then
    return done({ok = true, transfer = record})
  end
  return done({error = 'already_received', transfer = record})
end

local shipped = tonumber(record.qty_shipped)
local at = {stock = KEYS[5], log = KEYS[8], index = KEYS[6], locations = KEYS[7],
            sku = sku, location = to}
local arrived = math.min(shipped, qty)
if arrived > 0 then
  move(ctx, at, 'transfer_received', arrived, {in_transit = -arrived, on_hand = arrived},
       {'transfer', tid, 'from', record.from, 'reason', reason})
end
if qty < shipped then
  local missing = shipped - qty
  move(ctx, at, 'transfer_discrepancy', missing, {in_transit = -missing, written_off = missing},
       {'transfer', tid, 'from', record.from, 'reason', reason, 'discrepancy', 'short'})
elseif qty > shipped then
  local surplus = qty - shipped
  move(ctx, at, 'transfer_discrepancy', surplus, {on_hand = surplus},
       {'transfer', tid, 'from', record.from, 'reason', reason, 'discrepancy', 'surplus'})
end
rcall('HSET', KEYS[4], 'status', 'received', 'qty_received', qty, 'received_at', ctx.now)
rcall('PEXPIRE', KEYS[4], retention_ms)
record = read_record(KEYS[4])
record.id = tid
return done({ok = true, transfer = record})
