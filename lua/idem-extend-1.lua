--[[
  Idempotency: keep a claim alive while its request still runs (a slow
  backend call must never let the claim lapse and a duplicate execute).

  KEYS[1] the idempotency record
  ARGV[1] owner (must match the claim)   ARGV[2] in-flight TTL ms

  Returns 1 extended, 0 not the caller's claim (or already done).
]]
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'inflight' then
  return 0
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
