-- The opening and closing every write script shares (include after "common").
--
-- Every write script takes the same prefix:
--   KEYS[1] meta (the partition's generation marker), KEYS[2] events (the partition's
--   stream), KEYS[3] idempotency record of this request;
--   ARGV[1] request fingerprint (32 hex), ARGV[2] actor, ARGV[3] idempotency key as the
--   client sent it ('' for none), ARGV[4] idempotency retention (ms);
-- and names them itself, then calls open_write with them.

--- @include "alerts"

local FINGERPRINT_LENGTH = 32

-- The server's replication id (INFO replication): it changes when a replica is promoted
-- or a Redis restarts without its replication state.
-- '' where the server cannot tell (an in-process fakeredis has no INFO).
-- Asked once per script call (INFO builds a long string): the id cannot change within it.
local function server_replid()
  local replid = call_memo.replid
  if replid == nil then
    local info = redis.pcall('INFO', 'replication')
    replid = ''
    if type(info) == 'string' then
      replid = string.match(info, 'master_replid:(%w+)') or ''
    end
    call_memo.replid = replid
  end
  return replid
end

-- The partition's meta fields a write checks, read once per script call per meta key (a
-- batched call opens many writes on one partition; no write script changes these
-- fields before it opens a write).
local META_FIELDS = {'generation', 'fenced', 'replid', 'backlog_max'}
local function read_meta(meta_key)
  local meta = call_memo.meta[meta_key]
  if not meta then
    local raw = rcall('HMGET', meta_key, unpack(META_FIELDS))
    meta = {generation = raw[1], fenced = raw[2], replid = raw[3],
            backlog_max = tonumber(raw[4] or '0')}
    call_memo.meta[meta_key] = meta
  end
  return meta
end

-- Why the partition cannot be trusted, or nil when it can: it must carry its generation
-- marker, not be fenced (a fence names the reason, e.g. lost writes after a failover),
-- and, where the durable record vouched for a primary (meta 'replid'), still be that
-- primary: a promoted replica answers 'unverified' until the record vouches for it
-- (earmark.durable.service), so no write lands on it unchecked. Reads check this too.
local function store_refusal(meta_key)
  local meta = read_meta(meta_key)
  if not meta.generation then
    return 'no generation marker: its data was lost or never set up'
  end
  if meta.fenced then
    return 'fenced: ' .. meta.fenced
  end
  if meta.replid and meta.replid ~= '' and meta.replid ~= server_replid() then
    return 'unverified: this primary has not been checked against the durable record yet'
  end
  return nil
end

local function not_ready(reason)
  return {cjson.encode({error = 'store_not_ready', reason = reason}), 0}
end

-- nil while the partition's stream holds fewer events than the meta's backlog_max (0 or
-- unset: no bound), else the refusal: the durable record is down or far behind, and
-- new demand must not fill Redis's memory meanwhile.
local function backlog_refusal(meta_key, events_key)
  local limit = read_meta(meta_key).backlog_max
  if limit <= 0 then
    return nil
  end
  local waiting = rcall('XLEN', events_key)
  if waiting < limit then
    return nil
  end
  return {cjson.encode({error = 'durability_backlog', waiting = waiting, limit = limit}), 0}
end

-- Idempotency: nil when the key is new (or no key was given), otherwise the script's
-- return value for the replay or the conflict. A record is the request's fingerprint
-- followed by the reply it got; only successes are recorded (see finish).
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
-- conflict, backlog). `bounded`: the write adds demand and is refused past the durability
-- backlog; writes that finish existing holds (commit, release, ship...) pass false.
local function open_write(meta_key, events_key, idem_key, fingerprint, actor, idem,
                          idem_retention_ms, bounded)
  if idem ~= '' and #fingerprint ~= FINGERPRINT_LENGTH then
    error('earmark: a fingerprint has ' .. FINGERPRINT_LENGTH .. ' characters')
  end
  local refusal = store_refusal(meta_key)
  if refusal then
    return nil, not_ready(refusal)
  end
  local replay = idem_check(idem_key, idem, fingerprint)
  if replay then
    return nil, replay
  end
  if bounded then
    local full = backlog_refusal(meta_key, events_key)
    if full then
      return nil, full
    end
  end
  return {events = events_key, actor = actor, idem = idem, channel = '', now = now_ms(),
          idem_key = idem_key, fingerprint = fingerprint,
          idem_retention_ms = tonumber(idem_retention_ms)}, nil
end

-- Encodes the result once, stores it for replays under the request's key when it is a
-- success, and returns it in the scripts' return shape {json, replayed = 0}. A refusal
-- ({error = ...}) is not stored: the request did not execute, so a retry with the same
-- key is evaluated again (and the key stays free for another request), as Stripe does.
local function finish(ctx, result)
  local encoded = cjson.encode(result)
  if ctx.idem ~= '' and result.ok then
    rcall('SET', ctx.idem_key, ctx.fingerprint .. encoded, 'PX', ctx.idem_retention_ms)
  end
  return {encoded, 0}
end
