-- The stock layout: scripts that change one (sku, location) outside a reservation
-- (include after "common", "write" and "holds"). Their KEYS and ARGV:
--   KEYS[1-3] the write prefix (meta, events, idempotency),
--   KEYS[4] stock of (sku, location), KEYS[5] stock index of the partition,
--   KEYS[6] hold expiries, KEYS[7] hold qty (of the same sku, location),
--   KEYS[8] locations of the sku, KEYS[9] on_hand log of the (sku, location);
--   ARGV[1-4] the write prefix (fingerprint, actor, idempotency key, retention),
--   ARGV[5] sku, ARGV[6] location, ARGV[7] expired holds reclaimed first (at most),
--   then the script's own arguments from ARGV[8].
-- A script names those itself and builds its place with stock_place.

local STOCK_KEYS = 9

-- One (sku, location) and the keys that go with it: what change_stock and the
-- lifecycle helpers take.
local function stock_place(stock_key, index_key, hexp_key, hqty_key, locations_key, log_key,
                           sku, loc)
  return {stock = stock_key, index = index_key, hexp = hexp_key, hqty = hqty_key,
          locations = locations_key, log = log_key, sku = sku, location = loc}
end

-- Gives back the place's expired holds (at most `limit`) and returns its buckets and
-- whether expired holds remain (see reclaim_holds).
local function reclaim_at(ctx, place, limit)
  return reclaim_holds(ctx, place.stock, place.hexp, place.hqty, place.sku, place.location,
                       limit)
end

-- Applies deltas to the place's buckets (`levels`, current), indexes it and records the
-- event; returns the reply {ok, levels}.
local function change_stock(ctx, place, levels, etype, qty, deltas, extra)
  apply(place.stock, levels, deltas, place.log)
  index_stock(place.index, place.locations, place.sku, place.location)
  emit(ctx, etype, place.sku, place.location, qty, deltas, extra)
  check_low_stock(ctx, place.stock, place.sku, place.location, levels, 0)
  return {ok = true, levels = levels_view(levels, place.sku, place.location)}
end
