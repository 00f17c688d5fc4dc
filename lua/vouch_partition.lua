--[[
  vouch_partition: the durable record vouches for the Redis primary serving a partition:
  it found no write missing (earmark.durable.service). Write and read scripts then serve
  while this server's replication id is the one vouched for; after a failover (a
  promoted replica has a new replication id) they answer store_not_ready 'unverified'
  until the record vouches again.

  KEYS: [1] meta of the partition
  ARGV: none
  Returns the replication id vouched for ('' when the partition has no marker or is
    fenced, or the server cannot tell its id: nothing is vouched for).
  Invariants: only a marked, unfenced partition is vouched for; the id is read here, on
    the server that holds the partition, so a failover between the check and this call
    leaves the new primary unverified.
]]
--- @include "common"
--- @include "write"

check_keys(#KEYS, 1)
local meta = rcall('HMGET', KEYS[1], 'generation', 'fenced')
if not meta[1] or meta[2] then
  return ''
end
local replid = server_replid()
if replid ~= '' then
  rcall('HSET', KEYS[1], 'replid', replid)
end
return replid
