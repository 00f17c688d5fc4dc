-- Helpers for the scripts that change one (sku, location) outside a reservation.
-- Layout shared by those scripts:
--   KEYS[1] meta, KEYS[2] events, KEYS[3] idempotency, KEYS[4] stock, KEYS[5] stock index,
--   KEYS[6] hold expiries, KEYS[7] hold qty (of the same sku, location),
--   KEYS[8] locations of the sku, KEYS[9] on_hand log of the (sku, location)
--   ARGV[1] sku, ARGV[2] location, ARGV[3] fingerprint, ARGV[4] actor,
--   ARGV[5] idempotency key ('' none), ARGV[6] idempotency retention (ms),
--   ARGV[7] expired holds reclaimed first, at most; then the script's own options from ARGV[8].

local function open_stock()
  if rcall('EXISTS', KEYS[1]) == 0 then
    return nil, not_ready()
  end
  local replay = idem_check(KEYS[3], ARGV[5], ARGV[3])
  if replay then
    return nil, replay
  end
  local ctx = {events = KEYS[2], actor = ARGV[4], idem = ARGV[5], channel = '', now = now_ms()}
  -- Expired holds stop counting before this change is checked against available.
  reclaim_holds(ctx, KEYS[4], KEYS[6], KEYS[7], ARGV[1], ARGV[2], tonumber(ARGV[7]))
  return ctx, nil
end

local function stock_done(result)
  return finish(KEYS[3], ARGV[5], ARGV[3], tonumber(ARGV[6]), result)
end

local function levels_view(stock_key, sku, loc)
  local levels = read_levels(stock_key)
  levels.sku = sku
  levels.location = loc
  return levels
end

-- Applies deltas to a stock key of this script's SKU at `loc` (with its on_hand log),
-- indexes it and records the event.
local function change_location(ctx, stock_key, log_key, loc, etype, qty, deltas, extra)
  apply(stock_key, deltas, log_key)
  index_stock(KEYS[5], KEYS[8], ARGV[1], loc)
  emit(ctx, etype, ARGV[1], loc, qty, deltas, extra)
end

-- Applies deltas to this script's stock key, records the event and indexes the SKU.
local function change_stock(ctx, etype, qty, deltas, extra)
  change_location(ctx, KEYS[4], KEYS[9], ARGV[2], etype, qty, deltas, extra)
  return {ok = true, levels = levels_view(KEYS[4], ARGV[1], ARGV[2])}
end
