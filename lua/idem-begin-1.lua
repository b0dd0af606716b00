--[[
  Idempotency, first half: claim a key for one request, or answer from what
  the key already holds. Atomic, so two concurrent requests with one key can
  never both run.

  KEYS[1] the idempotency record (hash), scoped by route and caller
  ARGV[1] request fingerprint (hash of method, route and body)
  ARGV[2] owner (random per request: only the claimer may complete the record)
  ARGV[3] in-flight TTL ms (a crashed request frees the key after this)

  Returns (status codes: lua/status-codes.json)
          {CLAIMED} run the request;
          {CONFLICT} same key, different request;
          {IN_FLIGHT} the first request has not finished;
          {DONE, status, body, headersJson} replay.
]]
--- @include "includes/status"
local rec = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'body', 'headers')
if not rec[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'inflight', 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return {S.CLAIMED}
end
if rec[1] ~= ARGV[1] then
  return {S.CONFLICT}
end
if rec[2] ~= 'done' then
  return {S.IN_FLIGHT}
end
return {S.DONE, rec[3], rec[4], rec[5] or '{}'}
