--[[
  reserve: hold stock for one partition's lines of a cart, all or nothing.

  KEYS (6 + 4 per line), the reservation layout of includes/reservation.lua:
    [1] meta, [2] events, [3] idempotency, [4] reservation part, [5] expiries,
    [6] pins (unused here; the shared layout), then per line: stock, hold expiries,
    hold qty, on_hand log (unused: reserve never changes on_hand).
  ARGV:
    [1] request fingerprint (32 hex), [2] actor, [3] idempotency key as the client sent
    it, [4] idempotency retention (ms)
    [5] reservation id
    [6] ttl (ms)
    [7] channel
    [8] reclaim limit: expired holds reclaimed per line before the check
    [9] reservation retention (ms): how long a finished part stays readable
    [10] line count n (1..LINES_MAX)
    [11..] per line: sku, location, qty (units)
    then, for a reserve with a channel (ARGV[7] not ''), one more KEY: the channel's
    settings in this partition (lua/includes/channels.lua); none for no channel,
    then the drop part (lua/includes/drops.lua, drop_call_at): one more KEY (the
    partition's drop index) and, for a cart that takes a drop's SKU, the drop's keys
    (rules, customer entries, rate, waitlist, pending parts);
    ARGV customer, drop id, attempts per second, pending entries
  Returns {json, replayed (0|1)}; json is one of
    {ok, reservation = {id, status = 'held', expires_at, created_at, channel, lines}}
    {error = 'insufficient_stock', lines = [{sku, location, requested, available}]}: only
      when no short line still counts an expired hold
    {error = 'reclaim_more'}: a short line has more expired holds than ARGV[8]; the ones
      given back stay given back, nothing is held and nothing stored: call again
    {error = 'idempotency_conflict'} (also for a part id that exists already)
    {error = 'store_not_ready' | 'durability_backlog'}
    {error = 'drop_keys', drop, rids}: call again with that drop's keys (never stored)
    {error = 'customer_required' | 'drop_not_open' | 'customer_limit_exceeded' |
     'rate_limited' | 'cart_spans_drops', ...}: the drop's rules (docs/drops.md)
  Events: 'expired' per reclaimed hold; 'reserved' per line (with expires_at, channel;
    with a channel that drew on its allocation, allocation_drawn and allocation after;
    for a drop's SKU, customer and drop).
  Channels (docs/channels.md): a reserve with a channel is refused insufficient_stock
    when the channel's view of a line (its buffer rules over available, plus its
    allocation) is short; it draws its allocation down first. Allocations are counted in
    reserved, so a reserve with no channel reads nothing more.
  Invariants: nothing is held unless every line has enough available (for a drop's SKU
    with a waitlist: free beyond the units its queue waits for, which go to the line as
    offers; the shortfall's `available` says so); reserved
    never exceeds on_hand - committed; an expired hold never blocks a new one
    (expired holds on the cart's lines are reclaimed first, at most ARGV[8] per line per
    call, and a refusal is only given once none is left on a short line).
    Each stock hash is read once; the reply is built from what the script holds.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "reservation"
--- @include "drops"
--- @include "channels"
--- @include "waitlist"
--- @include "reserve_cart"

return reserve_cart(KEYS, ARGV)
