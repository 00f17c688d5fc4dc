--[[
  reserve_batch: many carts' parts of one partition in one call, each all or nothing on
  its own (the concurrent reserves an AsyncEngine coalesced in one event-loop turn;
  earmark.engine.coalesce). Cart i runs exactly as lua/reserve.lua would run it alone,
  in order: a cart's refusal never changes another's answer except through the stock it
  held first, as if the calls had arrived one after the other.

  KEYS: every cart's reserve.lua KEYS, one cart after the other.
  ARGV:
    [1] cart count c (1..CARTS_PER_CALL_MAX)
    [2 .. 1 + 2c] per cart: its KEYS count, its ARGV count
    then every cart's reserve.lua ARGV, one cart after the other.
  Returns a flat list of 2c values: per cart, reserve.lua's {json, replayed}; a cart
    whose script failed (a broken caller, an error Redis raised) gives {message, -1}
    and the carts after it still run.
  Invariants: reserve.lua's, per cart. The partition's meta and the server clock are
    read once for the call (every cart runs at the same instant); the durability
    backlog is checked per cart.
]]
--- @include "common"
--- @include "write"
--- @include "holds"
--- @include "reservation"
--- @include "drops"
--- @include "channels"
--- @include "waitlist"
--- @include "reserve_cart"

local c = bounded(ARGV[1], 'cart count', 1, CARTS_PER_CALL_MAX)
local replies = {}
local key_at, arg_at = 1, 2 + 2 * c
for i = 1, c do
  local nkeys = bounded(ARGV[2 * i], 'cart KEYS count', 1, #KEYS)
  local nargs = bounded(ARGV[2 * i + 1], 'cart ARGV count', 1, #ARGV)
  local cart_keys = {unpack(KEYS, key_at, key_at + nkeys - 1)}
  local cart_args = {unpack(ARGV, arg_at, arg_at + nargs - 1)}
  key_at, arg_at = key_at + nkeys, arg_at + nargs
  local ok, reply = pcall(reserve_cart, cart_keys, cart_args)
  if ok then
    replies[#replies + 1] = reply[1]
    replies[#replies + 1] = reply[2]
  else
    if type(reply) == 'table' and reply.err then
      reply = reply.err
    end
    replies[#replies + 1] = tostring(reply)
    replies[#replies + 1] = -1
  end
end
check_keys(#KEYS, key_at - 1)
return replies
