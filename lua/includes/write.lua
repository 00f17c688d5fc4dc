-- The opening and closing every write script shares (include after "common").
--
-- Every write script takes the same prefix:
--   KEYS[1] meta (the partition's generation marker), KEYS[2] events (the partition's
--   stream), KEYS[3] idempotency record of this request;
--   ARGV[1] request fingerprint (32 hex), ARGV[2] actor, ARGV[3] idempotency key as the
--   client sent it ('' for none), ARGV[4] idempotency retention (ms);
-- and names them itself, then calls open_write with them.

local FINGERPRINT_LENGTH = 32

-- True when the partition carries its generation marker and is not fenced.
local function store_ready(meta_key)
  local meta = rcall('HMGET', meta_key, 'generation', 'fenced')
  return meta[1] ~= false and meta[1] ~= nil and not meta[2]
end

-- Idempotency: nil when the key is new (or no key was given), otherwise the script's
-- return value for the replay or the conflict. A record is the request's fingerprint
-- followed by the reply it got.
local function idem_check(idem_key, idem, fingerprint)
  if idem == '' then
    return nil
  end
  local stored = rcall('GET', idem_key)
  if not stored then
    return nil
  end
  if string.sub(stored, 1, FINGERPRINT_LENGTH) ~= fingerprint then
    return reply_error('idempotency_conflict')
  end
  return {string.sub(stored, FINGERPRINT_LENGTH + 1), 1}
end

-- The context of a write, or nil and the reply to return at once (not ready, replay,
-- conflict).
local function open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                          idem_retention_ms)
  if idem ~= '' and #fingerprint ~= FINGERPRINT_LENGTH then
    error('earmark: a fingerprint has ' .. FINGERPRINT_LENGTH .. ' characters')
  end
  if not store_ready(meta_key) then
    return nil, reply_error('store_not_ready')
  end
  local replay = idem_check(idem_key, idem, fingerprint)
  if replay then
    return nil, replay
  end
  return {events = events_key, actor = actor, idem = idem, channel = '', now = now_ms(),
          idem_key = idem_key, fingerprint = fingerprint,
          idem_retention_ms = tonumber(idem_retention_ms)}, nil
end

-- Encodes the result once, stores it for replays under the request's key, and returns
-- it in the scripts' return shape {json, replayed = 0}.
local function finish(ctx, result)
  local encoded = cjson.encode(result)
  if ctx.idem ~= '' then
    rcall('SET', ctx.idem_key, ctx.fingerprint .. encoded, 'PX', ctx.idem_retention_ms)
  end
  return {encoded, 0}
end
