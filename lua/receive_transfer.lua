--[[
  receive_transfer: a transfer arrives at its destination and is counted in.

  KEYS: [1] meta, [2] events, [3] idempotency, [4] transfer record, [5] stock at the
    destination (sku, to), [6] stock index of the partition, [7] locations of the sku,
    [8] on_hand log at the destination, [9] the partition's drop index, [10] its
    reservation expiries, [11] hold expiries and [12] hold qty at the destination, then
    the offer part's KEYS (lua/includes/offers.lua)
  ARGV: [1] fingerprint, [2] actor, [3] idempotency key ('' none), [4] idempotency
    retention (ms), [5] transfer id, [6] sku, [7] to location (both as in the record: the
    caller built the keys from it), [8] qty received (units, >= 0), [9] reason,
    [10] retention (ms) of the received record, [11] reservation retention (ms) of
    offers, [12..] the offer part ('' none)
  Returns {json, replayed}; json is
    {ok, transfer}: received now (and the waitlist offers made at the destination), or
      already received with this same qty (no change)
    {error = 'offer_keys', drop}: the SKU is a drop's and the call did not bring its
      offer keys (or the queue's head moved): nothing written, call again with them
    {error = 'transfer_already_received', transfer}: already received with another qty
    {error = 'transfer_not_found'} | {error = 'lines_mismatch'}: sku / to differ from
      the record (a stale caller)
    {error = 'store_not_ready' | 'durability_backlog' | 'idempotency_conflict'}
  Events, all at the destination with transfer, from, reason:
    'transfer_received' (in_transit -n, on_hand +n; n = min(received, shipped), if n > 0)
    'transfer_discrepancy' short (in_transit -missing, written_off +missing) when fewer
      arrived than shipped, or surplus (on_hand +extra) when more arrived.
    For a drop's SKU with customers waiting, the offers' events at the destination
    (lua/includes/offers.lua): units free there go to the head of the line.
  Invariants: in_transit drops by exactly qty shipped; no unit vanishes: missing units
    are written off by an event that says so; a transfer is received once; offers take
    only units available at the destination (reserved + committed <= on_hand).
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "lifecycle"
--- @include "drops"
--- @include "waitlist"
--- @include "offers"

local meta_key, events_key, idem_key = KEYS[1], KEYS[2], KEYS[3]
local transfer_key, stock_key, index_key, locations_key, log_key = KEYS[4], KEYS[5], KEYS[6],
                                                                   KEYS[7], KEYS[8]
local fingerprint, actor, idem, idem_retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tid, sku, to, qty, reason = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local retention_ms = tonumber(ARGV[10])
local drop_index_key, expiries_key, offer_retention_ms = KEYS[9], KEYS[10], ARGV[11]
local hexp_key, hqty_key = KEYS[11], KEYS[12]
local offer = offer_call_at(KEYS, 13, ARGV, 12)

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
               hexp = hexp_key, hqty = hqty_key, sku = sku, location = to}
local refusal = stock_offer_check(offer, drop_index_key, place)
if refusal then
  return finish(ctx, refusal)
end
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
make_offers(ctx, offer, offer_retention_ms, expiries_key)
return finish(ctx, {ok = true, transfer = record})
