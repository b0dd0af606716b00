--[[
  Idempotency, second half: store the response of the request that claimed
  the key (replayed to later requests with the same key and body), or release
  the key when the request failed in a way worth retrying (5xx).

  KEYS[1] the idempotency record
  ARGV[1] owner (must match the claim)
  ARGV[2] "store" or "release"
  ARGV[3] status   ARGV[4] body   ARGV[5] headers JSON   ARGV[6] TTL ms

  Returns 1 when the record was updated, 0 when the claim was not the caller's
  (it expired and someone else claimed the key).
]]
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'body', ARGV[4], 'headers', ARGV[5])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
return 1
