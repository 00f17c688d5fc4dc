--[[
  init_partition: stamp a partition with its generation marker, once.

  KEYS: [1] meta of the partition
  ARGV: [1] generation (random id chosen by the caller), [2] partition count,
    [3] 1 to stamp a missing marker, 0 to only read it,
    [4] durability backlog bound of the partition (events; 0: none), kept in the meta of
        a partition that has one (write scripts read it; the last starter's value wins)
  Returns {generation or '', partitions or ''}: the marker now in place (an existing
    marker is never replaced, so concurrent starters agree on one generation).
  Invariants: write scripts refuse to run while the marker is missing: a Redis that lost
    its data is never sold from until stock is rebuilt from the durable record.
]]
--- @include "common"

check_keys(#KEYS, 1)
if ARGV[3] == '1' and rcall('EXISTS', KEYS[1]) == 0 then
  rcall('HSET', KEYS[1], 'generation', ARGV[1], 'partitions', ARGV[2], 'created_at', now_ms())
end
if ARGV[4] and rcall('EXISTS', KEYS[1]) == 1 and rcall('HGET', KEYS[1], 'backlog_max') ~= ARGV[4] then
  rcall('HSET', KEYS[1], 'backlog_max', bounded(ARGV[4], 'backlog bound', 0, 100000000))
end
local meta = rcall('HMGET', KEYS[1], 'generation', 'partitions')
return {meta[1] or '', meta[2] or ''}
